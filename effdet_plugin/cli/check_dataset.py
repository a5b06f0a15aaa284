"""Check a dataset before training: counts per split and object sizes after the pipelines.

Prints, per split: images, instances per class, images without instances, and object size
percentiles (sqrt(w*h), px) as annotated and after the split's pipeline (train pipeline for
train, test pipeline for val/test), and how the training objects fit the model's smallest
anchors: the share no anchor matches at the assigner's positive IoU, per class. Warns when
objects are small for the model (naming the --img-scale-factor that fixes it), when train-time
objects are more than 2x larger or smaller than test-time objects, when a class has no
instances and when images have none.

Example:
    python tools/analysis/check_dataset.py configs/demo/effdet_lite0_nuclei.py \
        --data-root data/shapes/ --train-ann train.json --val-ann val.json \
        --img-prefix images/ --classes from-json
"""
import argparse
import sys
from typing import Optional, Sequence

from mmengine.config import DictAction

from .data_options import SPLITS, add_data_args


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('config', help='config file')
    parser.add_argument('--splits', nargs='+', choices=SPLITS, default=list(SPLITS),
                        help='splits to check')
    parser.add_argument('--samples', type=int, default=20,
                        help='images per split sent through the pipeline')
    parser.add_argument('--strict', action='store_true',
                        help='exit with status 1 when there is a warning')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings')
    add_data_args(parser)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from mmdet.utils import register_all_modules

    from ..datasets.checks import dataset_stats, format_stats, stats_warnings
    from .runner import exit_if_dataset_missing, load_config
    from .size_check import size_check
    register_all_modules(init_default_scope=True)

    # bad input stops with one `error:` line, as in tools/train.py
    try:
        cfg = load_config(args.config, args.cfg_options, data_args=args)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    exit_if_dataset_missing(cfg, args.splits)
    stats = dataset_stats(cfg, args.splits, samples=args.samples)
    fit_report, small = size_check(cfg, stats)
    print(format_stats(stats))
    if fit_report:
        print(fit_report)
    problems = small + stats_warnings(stats)
    for problem in problems:
        print(f'WARNING: {problem}')
    if not problems:
        print('OK: every class has instances; train and test object sizes agree within 2x'
              + ('; the anchors match the training objects' if fit_report else ''))
    return 1 if problems and args.strict else 0

