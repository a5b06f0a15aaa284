"""Refuse weights that do not fit the model or hold NaN/inf, on every path that loads them.

mmengine loads ``load_from``, ``tools/test.py``'s checkpoint, ``--resume``, a ``Pretrained``
``init_cfg``, the EMA copy (``EMAHook``) and mmdet's ``init_detector`` (tools/infer.py) through
one function, :func:`mmengine.runner.checkpoint.load_state_dict`, which only *warns* about
missing or mismatched keys: a checkpoint of another architecture loads 2 of 696 tensors and
training carries on from random weights. :func:`install_weights_check` wraps that function
(``import effdet_plugin`` installs it) so that, before anything is copied into the model:

- tensors holding NaN/inf raise :class:`NonFiniteWeightsError` naming them;
- fewer than ``min_loaded`` (default 90%) of the model's tensors found in the checkpoint with
  their shape raise :class:`WeightsMismatchError`, listing the first mismatched keys and
  shapes. For a detector the share is counted over the components the checkpoint has keys
  for (``backbone``, ``neck``, ``bbox_head`` ...), so a backbone-only checkpoint still loads
  the backbone; a class predictor re-initialised for another class count
  (:mod:`effdet_plugin.models.utils.checkpoint_classes`) is two tensors of hundreds.

The thresholds come from ``weights_check = dict(min_loaded=0.9, finite=True)`` in the config
(applied by tools/train.py and tools/test.py) or :func:`configure_weights_check`.
"""
import math
from dataclasses import dataclass, replace
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner import checkpoint as mmengine_checkpoint
from torch import nn

# Shown in every error: how to get past a deliberate case.
SETTINGS_HINT = ('weights_check=dict(min_loaded=..., finite=...) in the config, or '
                 '--cfg-options weights_check.min_loaded=...')
_SHOWN = 8  # keys listed in a message


class WeightsMismatchError(RuntimeError):
    """Too few of the model's tensors are in the checkpoint with the right shape."""


class NonFiniteWeightsError(ValueError):
    """Weights to be loaded or written hold NaN or inf."""


@dataclass(frozen=True)
class WeightsCheckSettings:
    """What :func:`check_state_dict` enforces.

    Attributes:
        min_loaded (float): Least share (0-1) of the model's tensors that must be found in the
            checkpoint with their shape; 0 turns the check off. Defaults to 0.9.
        finite (bool): Refuse tensors holding NaN/inf. Defaults to True.
    """
    min_loaded: float = 0.9
    finite: bool = True


_settings = WeightsCheckSettings()
_last_checkpoint: List[Optional[str]] = [None]  # file named in messages (see _remember_file)


def configure_weights_check(min_loaded: Optional[float] = None,
                            finite: Optional[bool] = None) -> WeightsCheckSettings:
    """Change the process-wide settings; arguments left None keep their value.

    Args:
        min_loaded (float, optional): See :class:`WeightsCheckSettings`.
        finite (bool, optional): See :class:`WeightsCheckSettings`.

    Returns:
        WeightsCheckSettings: The settings before the change (to restore them).
    """
    global _settings
    if min_loaded is not None and not 0 <= min_loaded <= 1:
        raise ValueError(f'weights_check.min_loaded must be in [0, 1], got {min_loaded}')
    previous = _settings
    changes = dict(min_loaded=min_loaded, finite=finite)
    _settings = replace(_settings, **{k: v for k, v in changes.items() if v is not None})
    return previous


def apply_weights_check_cfg(cfg: Mapping) -> WeightsCheckSettings:
    """Apply a config's ``weights_check`` dict (absent: the defaults).

    Returns:
        WeightsCheckSettings: The settings now in force.
    """
    options = dict(cfg.get('weights_check') or {})
    unknown = sorted(set(options) - {'min_loaded', 'finite'})
    if unknown:
        raise ValueError(f'unknown weights_check key(s) {unknown}; expected min_loaded, finite')
    defaults = WeightsCheckSettings()
    configure_weights_check(options.get('min_loaded', defaults.min_loaded),
                            options.get('finite', defaults.finite))
    return _settings


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


def _counted_keys(model_keys: Sequence[str], ckpt_keys: Sequence[str],
                  is_detector: bool) -> List[str]:
    """Model keys the share is counted over: for a detector, those of the components
    (first key part) that the checkpoint has keys for; otherwise all."""
    if not is_detector:
        return list(model_keys)
    addressed = {k.split('.', 1)[0] for k in ckpt_keys}
    return [k for k in model_keys if k.split('.', 1)[0] in addressed]


def check_state_dict(model: nn.Module,
                     state_dict: Mapping[str, object],
                     source: Optional[str] = None,
                     settings: Optional[WeightsCheckSettings] = None) -> float:
    """Check what loading ``state_dict`` into ``model`` would do, before it is done.

    Args:
        model (nn.Module): The module about to receive the weights (wrappers are looked
            through, like mmengine does).
        state_dict (Mapping[str, object]): Keys as the module's own ``state_dict()``.
        source (str, optional): The checkpoint, for messages. Defaults to the file mmengine
            read last.
        settings (WeightsCheckSettings, optional): Defaults to the process-wide settings.

    Returns:
        float: The share of the counted model tensors found with their shape.

    Raises:
        NonFiniteWeightsError: Tensors that would load hold NaN/inf.
        WeightsMismatchError: The share is below ``settings.min_loaded``.
    """
    settings = settings or _settings
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    source = source or _last_checkpoint[0] or 'state dict'
    own: Dict[str, torch.Tensor] = {
        k: v for k, v in model.state_dict().items() if not k.endswith('num_batches_tracked')}
    matched = [k for k, v in own.items()
               if isinstance(state_dict.get(k), torch.Tensor)
               and tuple(state_dict[k].shape) == tuple(v.shape)]
    if settings.finite:
        check_finite(state_dict, source, [k for k in state_dict if k in own])
    counted = _counted_keys(list(own), list(state_dict), hasattr(model, 'backbone'))
    if not counted:  # the checkpoint names no component of the model at all
        counted = list(own)
    matched_set = set(matched)
    loaded = sum(1 for k in counted if k in matched_set)
    share = loaded / len(counted) if counted else 1.0
    if share + 1e-12 >= settings.min_loaded:
        skipped = sorted({k.split('.', 1)[0] for k in own} - {k.split('.', 1)[0] for k in counted})
        if skipped and loaded:
            print_log(f'{source}: loaded {loaded}/{len(counted)} tensors of '
                      f'{type(model).__name__}; no weights for {", ".join(skipped)} (kept as '
                      'initialised)', logger='current')
        return share
    raise WeightsMismatchError(_mismatch_message(model, own, state_dict, counted, matched_set,
                                                 source, loaded, settings.min_loaded))


def _mismatch_message(model: nn.Module, own: Mapping[str, torch.Tensor],
                      state_dict: Mapping[str, object], counted: Sequence[str],
                      matched: set, source: str, loaded: int, min_loaded: float) -> str:
    wrong = [f'{k}: model {_shape(own[k])}, checkpoint '
             f'{_shape(state_dict[k]) if k in state_dict else "missing"}'
             for k in counted if k not in matched]
    unused = [f'{k} {_shape(v)}' for k, v in state_dict.items()
              if k not in own and not k.endswith('num_batches_tracked')]
    message = (f'{source} does not fit {type(model).__name__}: only {loaded}/{len(counted)} '
               f'({math.floor(100 * loaded / max(len(counted), 1))}%) of its tensors are in the '
               f'checkpoint with the same shape, {min_loaded:.0%} needed. It is probably a '
               f'checkpoint of another architecture or variant. First mismatches: '
               f'{"; ".join(wrong[:_SHOWN])}')
    if unused:
        message += (f'. Checkpoint keys the model does not have ({len(unused)}): '
                    f'{"; ".join(unused[:_SHOWN])}')
    return (f'{message}. Use weights made for this config (backbone weights: '
            'tools/convert_weights.py; official EfficientDet: tools/convert_effdet_weights.py) '
            f'or, for a deliberate partial load, lower the threshold with {SETTINGS_HINT}')


def _checked_load_state_dict(module, state_dict, strict=False, logger=None):
    """mmengine's ``load_state_dict`` after :func:`check_state_dict`."""
    check_state_dict(module, state_dict)
    return _mmengine_load_state_dict(module, state_dict, strict=strict, logger=logger)


def _remember_file(cls, filename, *args, **kwargs):
    """mmengine's ``CheckpointLoader.load_checkpoint``, noting the file for messages.

    The EMA weights of a checkpoint are checked here: on ``--resume`` ``EMAHook`` loads them
    with torch's own ``load_state_dict``.
    """
    _last_checkpoint[0] = str(filename)
    checkpoint = _mmengine_load_checkpoint.__func__(cls, filename, *args, **kwargs)
    ema = checkpoint.get('ema_state_dict') if isinstance(checkpoint, dict) else None
    if _settings.finite and isinstance(ema, Mapping):
        check_finite(ema, f'{filename} (ema_state_dict)')
    return checkpoint


_mmengine_load_state_dict = mmengine_checkpoint.load_state_dict
_mmengine_load_checkpoint = mmengine_checkpoint.CheckpointLoader.__dict__['load_checkpoint']


def install_weights_check() -> None:
    """Route mmengine's weight loading through :func:`check_state_dict` (idempotent).

    Every caller looks ``load_state_dict`` up in :mod:`mmengine.runner.checkpoint` at call
    time (``_load_checkpoint_to_model``, ``PretrainedInit``, ``EMAHook``), so replacing it
    there covers all of them.
    """
    mmengine_checkpoint.load_state_dict = _checked_load_state_dict
    mmengine_checkpoint.CheckpointLoader.load_checkpoint = classmethod(_remember_file)
