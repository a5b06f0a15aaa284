"""Generate the nuclei demo dataset (COCO + semantic masks) from stardist's bundled image.

Example:
    python tools/dataset_converters/nuclei_to_coco.py            # -> data/nuclei/
    python tools/dataset_converters/nuclei_to_coco.py --upscale 1 --tile-size 0 --force
"""
import argparse
from pathlib import Path

from effdet_plugin.datasets.nuclei import convert_nuclei

REPO_ROOT = Path(__file__).resolve().parents[2]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out-dir', type=Path, default=REPO_ROOT / 'data' / 'nuclei')
    parser.add_argument('--upscale', type=float, default=2.0,
                        help='resize factor after the split (nuclei are ~10 px wide)')
    parser.add_argument('--tile-size', type=int, default=256,
                        help='training tile size in output pixels; 0 = whole region')
    parser.add_argument('--overlap', type=int, default=64, help='training tile overlap (px)')
    parser.add_argument('--val-tiles', action='store_true',
                        help='tile the val strip too (no overlap) instead of one image')
    parser.add_argument('--split-x', type=int, default=384,
                        help='source column where the val strip starts')
    parser.add_argument('--min-visible', type=float, default=0.5,
                        help='fraction of a cut nucleus needed to keep it (else iscrowd=1)')
    parser.add_argument('--seg-format', choices=('rle', 'polygon'), default='rle')
    parser.add_argument('--force', action='store_true', help='rewrite even if up to date')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    summary = convert_nuclei(args.out_dir, upscale=args.upscale,
                             tile_size=args.tile_size or None, overlap=args.overlap,
                             val_tiles=args.val_tiles, split_x=args.split_x,
                             min_visible=args.min_visible, seg_format=args.seg_format,
                             force=args.force)
    state = 'up to date, nothing written (--force to rewrite)' if summary['skipped'] else 'written'
    print(f'nuclei dataset in {args.out_dir}: {state}')
    for split in ('train', 'val'):
        s = summary[split]
        w, h = s['image_size']
        print(f"  {split:5s} source x in [{s['region'][0]}, {s['region'][2]}): {s['images']} "
              f"image(s) of {w}x{h}, {s['instances']} instances ({s['nuclei']} distinct "
              f"nuclei), {s['ignored']} iscrowd fragments")


if __name__ == '__main__':
    main()
