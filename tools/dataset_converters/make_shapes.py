"""Write a small synthetic COCO dataset (discs and squares, 600x400 images, 40-80 px objects,
category ids 5 and 9) to try docs/own_data.md on before using your own data.

Example:
    python tools/dataset_converters/make_shapes.py data/shapes
    # crowded 8-20 px objects, small for EfficientDet's anchors (docs/own_data.md)
    python tools/dataset_converters/make_shapes.py data/small_shapes --size 320 320 \
        --object-size 8 20 --max-objects 30
"""
import argparse

from effdet_plugin.datasets.shapes import write_shapes_coco


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('out_dir', help='output folder (images/ and annotations/ inside)')
    parser.add_argument('--num-train', type=int, default=16, help='training images')
    parser.add_argument('--num-val', type=int, default=4, help='validation / test images')
    parser.add_argument('--size', nargs=2, type=int, default=(600, 400), metavar=('W', 'H'),
                        help='image size')
    parser.add_argument('--object-size', nargs=2, type=int, default=(40, 80),
                        metavar=('MIN', 'MAX'), help='object side range (px)')
    parser.add_argument('--max-objects', type=int, default=6, help='objects per image at most')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    args = parser.parse_args()
    counts = write_shapes_coco(args.out_dir, args.num_train, args.num_val, tuple(args.size),
                               tuple(args.object_size), args.max_objects, seed=args.seed)
    print(f'{args.out_dir}: annotations/train.json ({counts["train"]} objects), '
          f'annotations/val.json ({counts["val"]} objects), images/')


if __name__ == '__main__':
    main()
