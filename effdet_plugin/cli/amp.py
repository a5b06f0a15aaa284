"""``--amp`` for tools/train.py: fp16 with dynamic loss scaling on CUDA, bfloat16 elsewhere."""
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.logging import print_log

AMP_WRAPPERS = ('AmpOptimWrapper', 'BFloat16AmpOptimWrapper')


def enable_amp(cfg: Config, cuda: Optional[bool] = None) -> str:
    """Switch ``cfg.optim_wrapper`` to mixed precision, in place.

    On CUDA this is mmdet's behaviour (mmengine's ``AmpOptimWrapper``: fp16 autocast with
    dynamic loss scaling). Without CUDA, mmengine's wrapper refuses to build, so
    :class:`BFloat16AmpOptimWrapper` (bf16 autocast, no scaling needed) is used instead.
    A config that already selects a mixed-precision wrapper is left as it is.

    Args:
        cfg (Config): Full config with an ``optim_wrapper`` section.
        cuda (bool, optional): Whether training runs on CUDA. Defaults to
            ``torch.cuda.is_available()``.

    Returns:
        str: The optimizer wrapper type now in the config.
    """
    wrapper = cfg.optim_wrapper
    if wrapper.get('type') in AMP_WRAPPERS:
        print_log(f'optim_wrapper is already {wrapper.type}; --amp changes nothing.',
                  logger='current')
        return wrapper.type
    if cuda is None:
        cuda = torch.cuda.is_available()
    if cuda:
        wrapper.type = 'AmpOptimWrapper'
        wrapper.loss_scale = 'dynamic'
    else:
        wrapper.type = 'BFloat16AmpOptimWrapper'
        wrapper.pop('loss_scale', None)
    return wrapper.type
