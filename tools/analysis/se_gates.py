"""SE gates as structured sparsity: gate statistics of a trained model, and channel pruning.

Collects each SE block's per-channel gate statistics over a dataset (mean, spread, share of
images below ``--threshold``) into ``OUT/gates.json`` and one heat-map PNG per stage. With
``--prune RATIO ...`` removes that share of every block's hidden channels, ranked by mean gate,
by the L1 norm of the expand filter and at random (the baselines; ``--seeds`` random draws),
writes each smaller model as a config + checkpoint that build on their own, and reports params,
FLOPs, CPU latency and AP (``OUT/prune.csv``, ``prune.md``); ``--finetune N`` also trains each
pruned model N iterations. Reruns skip finished rows. Needs a backbone with SE blocks (the B
series); the Lite variants have none.

Examples:
    python tools/analysis/se_gates.py configs/demo/effdet_d0_nuclei_scratch.py CKPT
    python tools/analysis/se_gates.py CFG CKPT --prune 0.1 0.25 0.5 --finetune 100 --seeds 2
    (fine-tuning runs at --finetune-lr times the config's learning rate, default 0.1)
"""
import argparse
import sys

from mmengine.config import DictAction

import effdet_plugin  # noqa: F401  (registers the models)
from effdet_plugin import cli
from effdet_plugin.cli.data_options import add_data_args
from effdet_plugin.studies import se_gates, se_study


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='trained checkpoint')
    parser.add_argument('--out', default='work_dirs/se_gates', help='output folder')
    parser.add_argument('--split', choices=['train', 'val'], default='train',
                        help='images the gates are collected on (test pipeline, no augmentation)')
    parser.add_argument('--threshold', type=float, default=0.1,
                        help='a gate below it counts as "off" for an image (default: 0.1)')
    parser.add_argument('--max-images', type=int, default=None, help='at most this many images')
    parser.add_argument('--prune', type=float, nargs='+', default=[],
                        help='shares of each block\'s hidden channels to remove, e.g. 0.1 0.25 0.5')
    parser.add_argument('--rankings', nargs='+', choices=se_gates.RANKINGS,
                        default=list(se_gates.RANKINGS), help='channel rankings to compare')
    parser.add_argument('--seeds', type=int, default=1, help='random-ranking draws and '
                        'fine-tuning seeds (default: 1)')
    parser.add_argument('--finetune', type=int, default=0,
                        help='fine-tune each pruned model this many iterations (default: 0)')
    parser.add_argument('--finetune-lr', type=float, default=0.1,
                        help="fine-tuning learning rate as a share of the config's (default: 0.1)")
    parser.add_argument('--shape', type=int, nargs=2, default=(256, 256), metavar=('H', 'W'),
                        help='input for FLOPs and latency (default: 256 256)')
    parser.add_argument('--latency-time', type=float, default=1.0,
                        help='seconds of timing per model; 0 skips latency (default: 1)')
    parser.add_argument('--retime', action='store_true',
                        help='no pruning or training: time every finished model of OUT again, in '
                        'interleaved rounds (for latency taken while the machine was busy)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings')
    add_data_args(parser)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = cli.load_config(args.config, args.cfg_options, args.out, data_args=args)
    cli.exit_if_dataset_missing(cfg, (args.split, 'val'))
    try:
        if not args.prune and not args.retime:
            se_study.collect_gates(cfg, args.checkpoint, args.out, args.split, args.threshold,
                                   args.max_images)
            print(f'gate statistics: {args.out}/gates.json, heat maps: {args.out}/gates_stage*.png')
            return
        if args.retime:
            se_study.retime_study(cfg, args.checkpoint, args.out, args.finetune,
                                  args.finetune_lr, args.split, args.shape)
        else:
            se_study.prune_study(cfg, args.checkpoint, args.out, args.prune, args.rankings,
                                 args.seeds, args.finetune, args.split, args.threshold,
                                 args.max_images, args.shape, args.latency_time,
                                 args.finetune_lr)
    except (se_gates.NoSEBlocksError, ValueError, FileNotFoundError) as e:
        sys.exit(f'error: {e}')
    print(open(f'{args.out}/prune.md').read())


if __name__ == '__main__':
    main()
