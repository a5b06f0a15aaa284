"""``--auto-scale-lr`` for tools/train.py: on by default, so a run whose total batch differs
from the one the config's learning rate was set for (one GPU instead of eight, a smaller batch)
trains at the matching rate. mmengine's Runner does the scaling (linear in the total batch,
``world size x train_dataloader.batch_size / auto_scale_lr.base_batch_size``) and logs it.
"""
from typing import Optional

from mmengine.config import Config


def apply_auto_scale_lr(cfg: Config, requested: Optional[bool] = None) -> bool:
    """Switch mmengine's LR scaling on or off in ``cfg``, in place.

    Args:
        cfg (Config): Full training config.
        requested (bool, optional): ``--auto-scale-lr`` (True), ``--no-auto-scale-lr``
            (False) or neither (None: on when the config declares
            ``auto_scale_lr.base_batch_size``). Defaults to None.

    Returns:
        bool: Whether the Runner will scale the learning rate.
    """
    scale_cfg = cfg.get('auto_scale_lr')
    declared = scale_cfg is not None and 'base_batch_size' in scale_cfg
    if requested and not declared:
        raise ValueError('--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=...) in the '
                         'config: the total batch its learning rate was set for')
    if scale_cfg is not None:
        scale_cfg.enable = bool(declared and requested is not False)
    return bool(scale_cfg and scale_cfg.enable)
