"""Norm layers for every width of the backbone, BiFPN and heads, from one mmcv ``norm_cfg``.

Any mmcv norm config works (``BN``, ``SyncBN``, ``GN`` ...), with mmcv's ``requires_grad``
key. Three rules make one config fit all parts:

- **GroupNorm groups.** EfficientNet and BiFPN widths (16, 24, 40, 88, 112 ...) are not all
  divisible by the 32 groups GroupNorm usually asks for. ``num_groups`` in a ``GN`` config is
  therefore an upper bound: a layer of ``C`` channels gets the largest divisor of ``C`` that is
  ``<= num_groups`` (:func:`group_count`; 32 requested: 40 -> 20, 88 -> 22, 112 -> 28,
  24 -> 24, 64 -> 32). Widths the request divides keep it exactly.
- **Frozen statistics** (``norm_eval``, as mmdet's ResNet): every norm of the part stays in
  eval mode while the model trains, so BatchNorm normalises with its running statistics and
  never updates them; ``requires_grad=False`` in ``norm_cfg`` also freezes the affine
  weight/bias (mmdet's "frozen BN": ``norm_cfg=dict(type='BN', requires_grad=False),
  norm_eval=True``).
- **BatchNorm weights into statistics-free norms.** A part built with GroupNorm loads weights
  trained with BatchNorm: the affine weight/bias are copied (from mmcv's ``bn`` module name to
  its ``gn`` one where they differ) and the running statistics dropped
  (:func:`load_bn_into_statfree_norms`, a load pre-hook the parts register).
"""
import copy
import inspect
from typing import List, Mapping, Optional, Tuple

import torch.nn as nn
from mmcv.cnn import build_norm_layer
from torch.nn.modules.batchnorm import _BatchNorm

#: Buffers of a BatchNorm that a statistics-free norm has no place for.
BN_STATISTICS = ('running_mean', 'running_var', 'num_batches_tracked')
AFFINE = ('weight', 'bias')
# the module name mmcv's ConvModule gives a BatchNorm (its ``norm_name``)
BN_NAME = 'bn'


def group_count(channels: int, requested: int) -> int:
    """GroupNorm groups of a ``channels``-wide layer: the largest divisor of ``channels``
    that is at most ``requested``."""
    if channels < 1 or requested < 1:
        raise ValueError(f'channels and num_groups must be >= 1, got {channels}, {requested}')
    return next(g for g in range(min(channels, requested), 0, -1) if channels % g == 0)


def _is_group_norm(norm_type) -> bool:
    return norm_type == 'GN' or (inspect.isclass(norm_type) and
                                 issubclass(norm_type, nn.GroupNorm))


def norm_cfg_for(norm_cfg: Optional[dict], channels: int) -> Optional[dict]:
    """``norm_cfg`` for a layer of ``channels`` channels: a ``GN`` config gets the group
    count of :func:`group_count`; any other config is returned as it is.

    Args:
        norm_cfg (dict, optional): An mmcv norm config; ``GN`` needs ``num_groups``
            (the most groups a layer gets).
        channels (int): Channels the norm normalises.
    """
    if norm_cfg is None or not _is_group_norm(norm_cfg.get('type')):
        return norm_cfg
    if 'num_groups' not in norm_cfg:
        raise ValueError(f'a GN norm_cfg needs num_groups, got {dict(norm_cfg)}: e.g. '
                         "dict(type='GN', num_groups=32) (the most groups per layer; each layer "
                         'gets the largest divisor of its width up to it)')
    cfg = copy.deepcopy(dict(norm_cfg))
    cfg['num_groups'] = group_count(channels, int(norm_cfg['num_groups']))
    return cfg


def build_norm(norm_cfg: dict, channels: int) -> nn.Module:
    """The norm layer of ``norm_cfg`` for ``channels`` channels (:func:`norm_cfg_for`)."""
    return build_norm_layer(norm_cfg_for(norm_cfg, channels), channels)[1]


def is_norm(module: nn.Module) -> bool:
    """BatchNorm (any, SyncBN included) or GroupNorm."""
    return isinstance(module, (_BatchNorm, nn.GroupNorm))


def set_norm_eval(module: nn.Module) -> None:
    """Put every norm layer under ``module`` in eval mode (the ``norm_eval`` of a part)."""
    for m in module.modules():
        if is_norm(m):
            m.eval()


class NormEvalMixin:
    """``train()`` of a part with a ``norm_eval`` attribute: when set, its norms stay in eval
    mode (mixed in before the module base class)."""
    norm_eval = False

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.norm_eval:
            set_norm_eval(self)
        return self


def _keeps_statistics(module: nn.Module) -> bool:
    return isinstance(module, _BatchNorm) and module.track_running_stats


def bn_state_moves(module: nn.Module, state_dict: Mapping[str, object],
                   prefix: str = '') -> List[Tuple[str, str]]:
    """Where BatchNorm state in ``state_dict`` meets a norm of ``module`` that keeps no
    running statistics (GroupNorm, or BN without ``track_running_stats``).

    Returns:
        list[tuple[str, str]]: ``(source, target)`` key prefixes (with ``prefix``): the
        checkpoint's BatchNorm at ``source`` (the norm's own name, or mmcv's ``bn`` beside it)
        holds running statistics for the norm at ``target``.
    """
    moves = []
    for name, norm in module.named_modules():
        if not is_norm(norm) or _keeps_statistics(norm) or not name:
            continue
        target = f'{prefix}{name}'
        parent, _, _ = target.rpartition('.')
        for source in (target, f'{parent}.{BN_NAME}' if parent else BN_NAME):
            if f'{source}.running_mean' in state_dict or f'{source}.running_var' in state_dict:
                moves.append((source, target))
                break
    return moves


def load_bn_into_statfree_norms(module: nn.Module, state_dict: dict, prefix: str,
                                *args) -> None:
    """Load pre-hook (``module.register_load_state_dict_pre_hook``): BatchNorm weights in
    ``state_dict`` for the norms of ``module`` that keep no running statistics are
    rewritten for them, affine weight/bias kept, running statistics dropped. A checkpoint
    made for the model as built is left as it is."""
    for source, target in bn_state_moves(module, state_dict, prefix):
        for key in AFFINE:
            if f'{source}.{key}' in state_dict and f'{target}.{key}' not in state_dict:
                state_dict[f'{target}.{key}'] = state_dict.pop(f'{source}.{key}')
        for key in BN_STATISTICS:
            state_dict.pop(f'{source}.{key}', None)
