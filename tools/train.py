"""Train a detector with mmengine's Runner; the CLI is mmdet's ``tools/train.py``.

Additions: ``import effdet_plugin`` fills the registries; ``--amp`` falls back to bfloat16
autocast without CUDA; a missing dataset stops the run at once with a hint; objects small for
the model's anchors are reported before the model is built (console and the run's log), with
the ``--img-scale-factor`` that fixes it; ``--launcher pytorch`` also works on CPU-only
machines (gloo); checkpoints are written crash-safe (``SafeCheckpointHook`` replaces
``CheckpointHook``) and a work dir in use by another training is refused
(``<work_dir>/train.lock``).
"""
import argparse
import os
import sys

from mmdet.utils import setup_cache_size_limit_of_dynamo
from mmengine.registry import init_default_scope

import effdet_plugin  # noqa: F401  (registers models, hooks, optimizer wrappers)
from effdet_plugin import cli
from effdet_plugin.checkpoint.atomic_io import DiskFullError
from effdet_plugin.cli.lr_scaling import apply_auto_scale_lr
from effdet_plugin.cli.memory_format import set_memory_format
from effdet_plugin.cli.signals import stop_on_signals
from effdet_plugin.cli.size_check import log_to_files, warn_if_objects_small
from effdet_plugin.cli.work_dir_lock import hold_work_dir
from effdet_plugin.engine.hooks.safe_checkpoint_hook import use_safe_checkpoint_hook
from effdet_plugin.models.necks.bifpn import NeckChannelsError


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train a detector', formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp', action='store_true',
        help='mixed precision: fp16 with dynamic loss scaling on CUDA, bfloat16 on CPU')
    parser.add_argument(
        '--auto-scale-lr', action=argparse.BooleanOptionalAction, default=None,
        help='scale the LR by total batch size / auto_scale_lr.base_batch_size; default: on '
        'when the config declares base_batch_size (--no-auto-scale-lr keeps its LR)')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint; without a value, from the latest checkpoint in '
        'the work dir')
    parser.add_argument(
        '--channels-last', action='store_true',
        help='train in channels-last memory format (a CPU training step measured 0.77x of '
        'the default format for Lite0, 0.96x for D0: benchmarks/train_step.py)')
    return cli.parse_runner_args(parser, 'train_dataloader.batch_size=4 model.backbone.arch=b1')


def main() -> None:
    args = parse_args()
    setup_cache_size_limit_of_dynamo()
    cfg = cli.load_config(args.config, args.cfg_options, args.work_dir, args.launcher, args)

    if args.amp:
        cli.enable_amp(cfg)
    try:
        apply_auto_scale_lr(cfg, args.auto_scale_lr)
    except ValueError as e:
        raise SystemExit(f'error: {e}')
    # An explicit checkpoint takes priority over auto-resume from the work dir.
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume

    cli.exit_if_dataset_missing(cfg, ('train', 'val'))
    # the size check builds the training dataset before the Runner sets the registry scope
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    small = warn_if_objects_small(cfg) if int(os.environ.get('RANK', 0)) == 0 else []
    use_safe_checkpoint_hook(cfg)
    with hold_work_dir(cfg.work_dir), cli.exit_on_weights_error():
        runner = cli.build_runner(cfg)
        log_to_files(runner.logger, small)
        if args.channels_last:  # before train() builds the optimizer and resumes
            set_memory_format(runner.model, purpose='training')
        try:
            runner.train()
        except (DiskFullError, NeckChannelsError) as e:  # each names the problem and the fix
            sys.exit(f'error: {e}')
    cli.finish_distributed()


if __name__ == '__main__':
    with stop_on_signals('training stopped'):
        main()
