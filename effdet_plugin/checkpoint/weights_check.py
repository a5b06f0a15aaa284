"""Refuse weights that do not fit the model or hold NaN/inf, before they are copied.

mmengine's :func:`~mmengine.runner.checkpoint.load_state_dict` only *warns* about missing or
mismatched keys: a checkpoint of another architecture loads 2 of 696 tensors and training
carries on from random weights. :func:`check_state_dict` looks at what a load would do first:

- tensors that would load and hold NaN/inf raise :class:`NonFiniteWeightsError` naming them;
- the share is counted in both directions: the model's tensors found in the checkpoint with
  their shape, and the checkpoint's tensors that find a place in the model. Either below
  ``min_loaded`` (default 90%) raises :class:`WeightsMismatchError`, listing the first
  mismatched keys and shapes. So B-series weights (with squeeze-excitation layers) do not
  load into a Lite model just because every Lite tensor is among them. For a detector the
  model's share is counted over the components the checkpoint has keys for (``backbone``,
  ``neck``, ``bbox_head`` ...), so a backbone-only checkpoint still loads the backbone; a
  class predictor re-initialised for another class count
  (:mod:`effdet_plugin.models.utils.checkpoint_classes`) is two tensors of hundreds.
- BatchNorm weights loading into a part built with GroupNorm (the parts' load pre-hook
  :func:`~effdet_plugin.models.utils.norm.load_bn_into_statfree_norms` copies the affine
  weight/bias and drops the running statistics) are counted as loaded, and said in one line.
- :func:`check_optimizer_state` does the same for the optimizer state of a resumed run (a
  1-class checkpoint resumed with 3 classes would otherwise fail inside AdamW's step).

Nothing here changes mmengine: the checks run where :mod:`.loading` and
:class:`effdet_plugin.engine.CheckedRunner` call them, with the thresholds of the config's
``weights_check = dict(min_loaded=0.9, finite=True)`` (:meth:`WeightsCheckSettings.from_cfg`).
"""
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from torch import nn

from ..models.utils.norm import BN_STATISTICS, bn_state_moves, load_bn_into_statfree_norms

# Shown in every mismatch: how to get past a deliberate case.
SETTINGS_HINT = ('weights_check=dict(min_loaded=..., finite=...) in the config, or '
                 '--cfg-options weights_check.min_loaded=...')
_SHOWN = 8  # keys listed in a message


class WeightsError(RuntimeError):
    """Weights that cannot be read, loaded or written as asked (tools print it as one
    ``error:`` line)."""


class WeightsMismatchError(WeightsError):
    """A checkpoint (or its optimizer state) does not fit the model."""


class NonFiniteWeightsError(WeightsError, ValueError):
    """Weights to be loaded or written hold NaN or inf."""


@dataclass(frozen=True)
class WeightsCheckSettings:
    """What :func:`check_state_dict` enforces.

    Attributes:
        min_loaded (float): Least share (0-1) of the model's tensors that must be found in the
            checkpoint with their shape, and of the checkpoint's tensors that must fit the
            model; 0 turns the check off. Defaults to 0.9.
        finite (bool): Refuse tensors holding NaN/inf. Defaults to True.
    """
    min_loaded: float = 0.9
    finite: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.min_loaded <= 1:
            raise ValueError(
                f'weights_check.min_loaded must be in [0, 1], got {self.min_loaded}')

    @classmethod
    def from_cfg(cls, cfg: Mapping) -> 'WeightsCheckSettings':
        """The settings of a config's ``weights_check`` dict (absent: the defaults)."""
        options = dict(cfg.get('weights_check') or {})
        unknown = sorted(set(options) - {'min_loaded', 'finite'})
        if unknown:
            raise ValueError(
                f'unknown weights_check key(s) {unknown}; expected min_loaded, finite')
        return cls(**options)


def non_finite_tensors(state_dict: Mapping[str, object],
                       keys: Optional[Sequence[str]] = None) -> List[Tuple[str, int, int, int]]:
    """``(key, NaN count, inf count, numel)`` of each floating tensor holding NaN or inf.

    Args:
        state_dict (Mapping[str, object]): Tensors by name; other values are skipped.
        keys (Sequence[str], optional): Only these keys. Defaults to all.
    """
    found = []
    for key in state_dict if keys is None else keys:
        value = state_dict[key]
        if not (isinstance(value, torch.Tensor) and value.is_floating_point()):
            continue
        finite = torch.isfinite(value)
        if bool(finite.all()):
            continue
        nan = int(torch.isnan(value).sum())
        found.append((key, nan, value.numel() - int(finite.sum()) - nan, value.numel()))
    return found


def check_finite(state_dict: Mapping[str, object], source: str,
                 keys: Optional[Sequence[str]] = None) -> None:
    """Raise :class:`NonFiniteWeightsError` naming the tensors of ``state_dict`` with NaN/inf.

    Args:
        state_dict (Mapping[str, object]): Tensors by name.
        source (str): What the tensors are (a file name), for the message.
        keys (Sequence[str], optional): Only these keys. Defaults to all.
    """
    bad = non_finite_tensors(state_dict, keys)
    if bad:
        raise NonFiniteWeightsError(
            f'{source}: {describe_non_finite(bad)}. The file is corrupt (flipped bytes) or was '
            'written by a diverged run: use an earlier or freshly downloaded/converted '
            'checkpoint')


def describe_non_finite(bad: Sequence[Tuple[str, int, int, int]]) -> str:
    """``'N tensor(s) hold NaN/inf values: key (a NaN, b inf of n), ...'`` for the first
    tensors of a :func:`non_finite_tensors` result."""
    listed = ', '.join(f'{k} ({nan} NaN, {inf} inf of {n})' for k, nan, inf, n in bad[:_SHOWN])
    more = f' and {len(bad) - _SHOWN} more' if len(bad) > _SHOWN else ''
    return f'{len(bad)} tensor(s) hold NaN/inf values: {listed}{more}'


def _shape(t: object) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def _percent(part: int, whole: int) -> str:
    return f'{part}/{whole} ({math.floor(100 * part / max(whole, 1))}%)'


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module that receives the weights: wrappers and TTA models looked through, as
    mmengine's ``load_state_dict`` does."""
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def _counted_keys(model_keys: Sequence[str], ckpt_keys: Sequence[str],
                  is_detector: bool) -> List[str]:
    """Model keys the model's share is counted over: for a detector, those of the
    components (first key part) that the checkpoint has keys for; otherwise all."""
    if not is_detector:
        return list(model_keys)
    addressed = {k.split('.', 1)[0] for k in ckpt_keys}
    return [k for k in model_keys if k.split('.', 1)[0] in addressed] or list(model_keys)


def _as_loaded(model: nn.Module, state_dict: Mapping[str, object]) -> Dict[str, object]:
    """A copy of ``state_dict`` as the model's modules will see it: their load pre-hooks
    applied (e.g. ``EffNet`` drops the layers it does not build, so an ImageNet checkpoint's
    deeper layers are not counted as unused)."""
    state = OrderedDict(state_dict)
    for name, module in model.named_modules():
        for hook in module._load_state_dict_pre_hooks.values():
            hook(state, f'{name}.' if name else '', {}, True, [], [], [])
    return state


def _is_counted(key: str, value: object) -> bool:
    return isinstance(value, torch.Tensor) and not key.endswith('num_batches_tracked')


def check_state_dict(model: nn.Module,
                     state_dict: Mapping[str, object],
                     source: str,
                     settings: Optional[WeightsCheckSettings] = None) -> float:
    """Check what loading ``state_dict`` into ``model`` would do, before it is done.

    Args:
        model (nn.Module): The module about to receive the weights (wrappers are looked
            through, like mmengine does).
        state_dict (Mapping[str, object]): Keys as the module's own ``state_dict()``.
        source (str): The checkpoint, for messages.
        settings (WeightsCheckSettings, optional): Defaults to ``WeightsCheckSettings()``.

    Returns:
        float: The share of the counted model tensors found with their shape.

    Raises:
        NonFiniteWeightsError: Tensors that would load hold NaN/inf.
        WeightsMismatchError: A share is below ``settings.min_loaded``.
    """
    settings = settings or WeightsCheckSettings()
    model = unwrap_model(model)
    own: Dict[str, torch.Tensor] = {k: v for k, v in model.state_dict().items()
                                    if _is_counted(k, v)}
    theirs = {k: v for k, v in _as_loaded(model, state_dict).items() if _is_counted(k, v)}
    matched = {k for k, v in own.items()
               if k in theirs and tuple(theirs[k].shape) == tuple(v.shape)}
    if settings.finite:
        check_finite(state_dict, source, [k for k in state_dict if k in own])
    counted = _counted_keys(list(own), list(theirs), hasattr(model, 'backbone'))
    loaded = sum(1 for k in counted if k in matched)
    share = loaded / len(counted) if counted else 1.0
    used = len(matched) / len(theirs) if theirs else 1.0
    if min(share, used) + 1e-12 < settings.min_loaded:
        raise WeightsMismatchError(_mismatch_message(model, own, theirs, counted, matched,
                                                     source, settings.min_loaded))
    log_norm_adaptation(model, state_dict, source)
    skipped = sorted({k.split('.', 1)[0] for k in own} - {k.split('.', 1)[0] for k in counted})
    if skipped and loaded:
        print_log(f'{source}: loaded {loaded}/{len(counted)} tensors of '
                  f'{type(model).__name__}; no weights for {", ".join(skipped)} (kept as '
                  'initialised)', logger='current')
    return share


def _adapts_bn_state(module: nn.Module) -> bool:
    return any(getattr(hook, 'hook', None) is load_bn_into_statfree_norms
               for hook in module._load_state_dict_pre_hooks.values())


def log_norm_adaptation(model: nn.Module, state_dict: Mapping[str, object],
                        source: str) -> int:
    """Log, in one line, how many BatchNorm layers of ``state_dict`` load into norms of
    ``model`` that keep no running statistics (GroupNorm): affine copied, statistics dropped.

    Returns:
        int: The number of such layers (0: nothing logged).
    """
    moves = []
    for name, module in model.named_modules():
        if _adapts_bn_state(module):
            moves += bn_state_moves(module, state_dict, f'{name}.' if name else '')
    if not moves:
        return 0
    dropped = sum(f'{source_}.{key}' in state_dict for source_, _ in moves
                  for key in BN_STATISTICS)
    kinds = sorted({type(model.get_submodule(target)).__name__ for _, target in moves})
    print_log(f'{source}: {len(moves)} BatchNorm layers load into {"/".join(kinds)} layers of '
              f'{type(model).__name__}: affine weight/bias copied, {dropped} running-statistics '
              'tensors dropped', logger='current')
    return len(moves)


def _mismatch_message(model: nn.Module, own: Mapping[str, torch.Tensor],
                      theirs: Mapping[str, torch.Tensor], counted: Sequence[str],
                      matched: set, source: str, min_loaded: float) -> str:
    wrong = [f'{k}: model {_shape(own[k])}, checkpoint '
             f'{_shape(theirs[k]) if k in theirs else "missing"}'
             for k in counted if k not in matched]
    unused = [f'{k} {_shape(v)}' for k, v in theirs.items() if k not in own]
    loaded = sum(1 for k in counted if k in matched)
    message = (f'{source} does not fit {type(model).__name__}: '
               f'{_percent(loaded, len(counted))} of the model\'s tensors are in the '
               f'checkpoint with their shape and {_percent(len(matched), len(theirs))} of the '
               f'checkpoint\'s tensors fit the model, {min_loaded:.0%} needed for each. It is '
               'probably a checkpoint of another architecture or variant.')
    if wrong:
        message += f' First mismatches: {"; ".join(wrong[:_SHOWN])}.'
    if unused:
        message += (f' Checkpoint keys the model does not have ({len(unused)}): '
                    f'{"; ".join(unused[:_SHOWN])}.')
    return (f'{message} Use weights made for this config (backbone weights: '
            'tools/convert_weights.py; official EfficientDet: tools/convert_effdet_weights.py) '
            f'or, for a deliberate partial load, lower the threshold with {SETTINGS_HINT}')


def check_optimizer_state(optimizer: torch.optim.Optimizer, model: nn.Module,
                          source: str) -> None:
    """Raise :class:`WeightsMismatchError` if the state an optimizer has loaded does not fit
    its parameters (a momentum of another shape fails only at the next step, deep inside
    the optimizer).

    Args:
        optimizer (torch.optim.Optimizer): An optimizer after ``load_state_dict``.
        model (nn.Module): The model whose parameters it updates (for their names).
        source (str): The checkpoint, for messages.
    """
    names = {id(p): name for name, p in unwrap_model(model).named_parameters()}
    wrong = []
    for group in optimizer.param_groups:
        for param in group['params']:
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() and \
                        value.shape != param.shape:
                    wrong.append(f'{names.get(id(param), "?")}: model {_shape(param)}, '
                                 f'optimizer {key} {_shape(value)}')
    if wrong:
        raise WeightsMismatchError(optimizer_mismatch_message(
            source, model, f'the state of {len(wrong)} parameter(s) has another shape: '
            f'{"; ".join(wrong[:_SHOWN])}'))


def optimizer_mismatch_message(source: str, model: nn.Module, what: str) -> str:
    """The message of an optimizer state that does not fit ``model``."""
    return (f'{source} does not fit {type(unwrap_model(model)).__name__}: its optimizer '
            f'state was written for another model, {what}. Resume only from a checkpoint of '
            'this config (same classes, variant and optimizer); to start a new run from its '
            'weights, train with --cfg-options load_from=CHECKPOINT instead of --resume')
