"""Convert a folder of images (PNG/TIFF/JPEG/DICOM) and their instance masks to COCO json.

Masks are matched to images by file stem. Layouts:
  label    one instance-label mask per image: MASKS/<stem>[suffix].png|tif (0 = background)
  folders  one binary mask per instance:      MASKS/<stem>/*.png|tif

Example:
    python tools/dataset_converters/medical_to_coco.py data/mine/images data/mine/masks \
        data/mine/annotations/train.json --layout label --category cell
"""
import argparse

from effdet_plugin.datasets.image_io import IMAGE_EXTS
from effdet_plugin.datasets.medical import convert_masks_to_coco


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n\n'.join(__doc__.split('\n\n')[1:]))
    parser.add_argument('img_dir', help='folder of images')
    parser.add_argument('mask_dir', help='folder of masks')
    parser.add_argument('out_file', help='output COCO json')
    parser.add_argument('--layout', choices=('label', 'folders'), default='label')
    parser.add_argument('--category', default='object', help='name of the single category')
    parser.add_argument('--mask-suffix', default='',
                        help="label masks named <stem><suffix>.png, e.g. '_mask'")
    parser.add_argument('--image-ext', action='append', dest='image_exts',
                        help=f'image extension to collect (repeatable); default {IMAGE_EXTS}')
    parser.add_argument('--recursive', action='store_true', help='search img_dir recursively')
    parser.add_argument('--seg-format', choices=('rle', 'polygon'), default='rle')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    counts = convert_masks_to_coco(args.img_dir, args.mask_dir, args.out_file,
                                   layout=args.layout, category=args.category,
                                   mask_suffix=args.mask_suffix,
                                   image_exts=args.image_exts or IMAGE_EXTS,
                                   recursive=args.recursive, seg_format=args.seg_format)
    print(f"{args.out_file}: {counts['images']} images, {counts['instances']} instances, "
          f"{counts['negatives']} negatives (images without instances)")


if __name__ == '__main__':
    main()
