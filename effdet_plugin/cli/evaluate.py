"""Test (and evaluate) a detector with mmengine's Runner: the command behind ``tools/test.py``
(mmdet's ``tools/test.py`` CLI).

Additions: ``import effdet_plugin`` fills the registries; a missing dataset or checkpoint stops
the run at once with a hint; a checkpoint that cannot be read, does not fit the model or holds
NaN/inf stops it with one ``error:`` line (``CheckedRunner``); ``--launcher pytorch`` also
works on CPU-only machines (gloo); the model runs in channels-last memory format unless
``--no-channels-last``.
"""
import argparse
import os.path as osp
import sys
import warnings
from copy import deepcopy

from mmdet.engine.hooks.utils import trigger_visualization_hook
from mmdet.evaluation import DumpDetResults
from mmdet.utils import setup_cache_size_limit_of_dynamo
from mmengine.config import ConfigDict

from . import runner as cli  # the steps tools/train.py and tools/test.py share
from .dist import finish_distributed
from .memory_format import add_memory_format_arg, set_memory_format


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a detector',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save evaluation metrics')
    parser.add_argument('--out', help='dump predictions to a .pkl file for offline evaluation')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir', help='save painted images to work_dir/<timestamp>/<show_dir>')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation (flip)')
    add_memory_format_arg(parser)
    return cli.parse_runner_args(parser, 'test_dataloader.batch_size=4')


def use_tta(cfg: ConfigDict) -> None:
    """Wrap the model in mmdet's ``DetTTAModel`` with a flip TTA pipeline unless the config
    defines ``tta_model`` / ``tta_pipeline`` itself."""
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:  # the pipeline lives in the innermost wrapped dataset
        dataset = dataset['dataset']
    if 'tta_model' not in cfg:
        warnings.warn('No tta_model in the config: using DetTTAModel with NMS 0.5.')
        cfg.tta_model = dict(
            type='DetTTAModel',
            tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
    if 'tta_pipeline' not in cfg:
        warnings.warn('No tta_pipeline in the config: using the test pipeline with and '
                      'without horizontal flip.')
        cfg.tta_pipeline = deepcopy(dataset.pipeline)
        cfg.tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[
                [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
                [dict(type='PackDetInputs',
                      meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                 'scale_factor', 'flip', 'flip_direction'))],
            ])
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    dataset.pipeline = cfg.tta_pipeline


def main() -> None:
    args = parse_args()
    setup_cache_size_limit_of_dynamo()
    cfg = cli.load_config(args.config, args.cfg_options, args.work_dir, args.launcher, args)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        sys.exit(f'error: --out must be a .pkl/.pickle file, got {args.out}')
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        sys.exit(f'error: checkpoint not found: {args.checkpoint}')
    cfg.load_from = args.checkpoint

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)
    if args.tta:
        use_tta(cfg)

    cli.exit_if_dataset_missing(cfg, ('test', ))
    with cli.exit_on_weights_error():
        runner = cli.build_runner(cfg)
        set_memory_format(runner.model, args.channels_last)
        if args.out is not None:
            runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
        runner.test()
    finish_distributed()

