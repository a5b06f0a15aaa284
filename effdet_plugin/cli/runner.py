"""Steps shared by tools/train.py, tools/test.py and tools/infer.py (mmdet's CLI semantics)."""
import argparse
import os
import os.path as osp
import sys
import warnings
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from torch import nn

from ..checkpoint import WeightsCheckSettings, WeightsError, load_checkpoint
from ..datasets.checks import DatasetNotFoundError, check_config_data
from ..models.utils.mmcv_fallback import enable_mmcv_fallback
from .data_options import add_data_args, apply_data_options
from .dist import setup_cpu_distributed


def parse_runner_args(parser: argparse.ArgumentParser, cfg_example: str) -> argparse.Namespace:
    """Add the options both tools share (``--cfg-options``, ``--launcher``, ``--local-rank``
    and the data flags of :func:`~.data_options.add_data_args`), parse the command line and
    export ``LOCAL_RANK`` as ``torch.distributed.launch`` expects."""
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help=f'override config settings, e.g. {cfg_example}; lists as key="[a,b]", no spaces')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_data_args(parser)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def load_config(config: str,
                cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None,
                launcher: str = 'none',
                data_args: Optional[argparse.Namespace] = None) -> Config:
    """Read ``config``, apply ``--cfg-options``, then the data options (the config's ``data``
    block and the flags of :func:`~.data_options.add_data_args` in ``data_args``), and pick
    the work dir like mmdet's tools.

    Work dir priority: ``work_dir`` > ``work_dir`` in the file > ``./work_dirs/<config name>``.
    """
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    apply_data_options(cfg, data_args)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg


def exit_if_dataset_missing(cfg: Config, splits: Sequence[str]) -> None:
    """Stop the process with the :class:`DatasetNotFoundError` message (or the evaluator /
    dataset ``ann_file`` mismatch), before any model or process group is built, instead of a
    traceback from deep inside the Runner (or a score against other data)."""
    try:
        check_config_data(cfg, splits)
    except (DatasetNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')


@contextmanager
def exit_on_weights_error() -> Iterator[None]:
    """Stop the process with one ``error:`` line for a checkpoint that cannot be read, does
    not fit or holds NaN/inf (:class:`~effdet_plugin.checkpoint.WeightsError`: the message
    names the file and the fix), instead of a traceback."""
    try:
        yield
    except WeightsError as e:
        sys.exit(f'error: {e}')


def build_runner(cfg: Config) -> Runner:
    """Prepare CPU distributed training if needed, then build the config's Runner:
    :class:`~effdet_plugin.engine.CheckedRunner` (weights checked on every load) unless the
    config names another ``runner_type``. The choice is written into ``cfg`` (and so into
    the config the Runner dumps into the work dir)."""
    setup_cpu_distributed(cfg, cfg.get('launcher', 'none'))
    enable_mmcv_fallback()  # a CPU-built mmcv on a GPU machine: one log line, kernels in PyTorch
    if cfg.get('runner_type') is None:
        cfg.runner_type = 'CheckedRunner'
    return RUNNERS.build(cfg)


def init_detector(cfg: Config, checkpoint: Optional[str], device: str = 'cpu') -> nn.Module:
    """mmdet's ``init_detector`` with the checkpoint loaded through the checked path
    (:func:`~effdet_plugin.checkpoint.load_checkpoint`, thresholds from the config's
    ``weights_check``); class names from the checkpoint's ``dataset_meta`` as mmdet does.
    Without a checkpoint: random weights, COCO class names (mmdet's behaviour)."""
    from mmdet.apis import init_detector as mmdet_init_detector

    if checkpoint is None:
        return mmdet_init_detector(cfg, None, device=device)
    with warnings.catch_warnings(record=True) as caught:  # mmdet warns about checkpoint=None
        model = mmdet_init_detector(cfg, None, device=device)
    for warning in caught:
        if 'checkpoint is None' not in str(warning.message):
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    meta = load_checkpoint(model, checkpoint, WeightsCheckSettings.from_cfg(cfg)).get('meta')
    dataset_meta = {k.lower(): v for k, v in ((meta or {}).get('dataset_meta') or {}).items()}
    if dataset_meta:
        palette = model.dataset_meta.get('palette')  # the config's, else 'random'
        if palette != 'random' or 'palette' not in dataset_meta:
            dataset_meta['palette'] = palette
        model.dataset_meta = dataset_meta
    else:
        warnings.warn(f'{checkpoint} has no dataset_meta with class names: COCO class names '
                      'are used')
    return model
