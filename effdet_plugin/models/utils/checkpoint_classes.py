"""Load a checkpoint trained with another class count: re-initialise the class predictor only.

Fine-tuning from COCO weights (80 or the official 90 slots) on a dataset with other classes
is the common case. mmengine's ``load_checkpoint`` (``load_from=...``, a ``Pretrained``
``init_cfg``) would report a size mismatch for the class predictor and silently keep whatever
the model held. Instead, a head calls :func:`adapt_class_predictor` from its
``_load_from_state_dict``: the mismatched class-predictor tensors in the incoming state dict
are replaced by freshly initialised ones (normal fan-in weights, prior-probability bias), so
everything loads through the ordinary path and one log line says what happened.

The class predictor's output channels are ``num_anchors * num_classes``; only a change of the
class count is handled here. Any other mismatch (anchors, widths) is left to mmengine's
report, since it means a different architecture.
"""
import math
from collections import OrderedDict
from typing import Dict, MutableMapping, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model import bias_init_with_prob
from torch import Tensor

# COCO in the official 90-slot layout vs mmdet's 80 classes: worth a hint to the converter.
_COCO_SLOTS, _COCO_CLASSES = 90, 80
# Fingerprints of the re-initialisations already reported; see `_first_report`.
_REPORTED: 'OrderedDict[tuple, None]' = OrderedDict()
_MAX_REPORTED = 64


def reset_reports() -> None:
    """Forget which re-initialisations were logged (every one is logged again)."""
    _REPORTED.clear()


def _first_report(key: tuple) -> bool:
    """Whether ``key`` is new in this process.

    mmengine's ``EMAHook`` loads the same checkpoint into the EMA copy of the model right
    before the model itself; both loads re-initialise, and one line is enough. The EMA copy
    takes the model's weights on its first update anyway.
    """
    if key in _REPORTED:
        return False
    _REPORTED[key] = None
    while len(_REPORTED) > _MAX_REPORTED:
        _REPORTED.popitem(last=False)
    return True


def init_class_predictor(weight_shape: Sequence[int],
                         prior_prob: float = 0.01,
                         like: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Fresh ``(weight, bias)`` of a class-predictor conv.

    Weights are normal with std ``1 / sqrt(fan_in)`` (Kaiming, fan-in, linear: the official
    variance scaling), the bias is ``-log((1 - p) / p)`` so that every class starts with
    score ``p``.
    """
    fan_in = math.prod(weight_shape[1:])
    kwargs = dict(dtype=like.dtype, device=like.device) if like is not None else {}
    weight = torch.randn(*weight_shape, **kwargs) / math.sqrt(fan_in)
    bias = torch.full((weight_shape[0], ), bias_init_with_prob(prior_prob), **kwargs)
    return weight, bias


def adapt_class_predictor(module: torch.nn.Module,
                          state_dict: MutableMapping[str, Tensor],
                          prefix: str,
                          weight_key: str,
                          bias_key: Optional[str],
                          num_classes: int,
                          num_anchors: int = 1,
                          prior_prob: float = 0.01,
                          name: Optional[str] = None,
                          logger: str = 'current') -> bool:
    """Replace a class predictor of another class count in ``state_dict`` by a fresh init.

    Call it first thing in ``module._load_from_state_dict(state_dict, prefix, ...)``; the
    state dict there is the loader's own copy, so it may be changed in place.

    Args:
        module (nn.Module): The module being loaded (the head).
        state_dict (MutableMapping[str, Tensor]): The incoming tensors (keys with ``prefix``).
        prefix (str): The module's key prefix, e.g. ``'bbox_head.'``.
        weight_key (str): Class-predictor weight, relative to the module.
        bias_key (str, optional): Its bias, relative to the module.
        num_classes (int): Classes of the module.
        num_anchors (int): Predictions per location (the output channels are
            ``num_anchors * num_classes``). Defaults to 1.
        prior_prob (float): Initial class probability of the new bias. Defaults to 0.01.
        name (str, optional): Name in the log line. Defaults to the module's class name.
        logger (str): mmengine logger. Defaults to ``'current'``.

    Returns:
        bool: Whether the class predictor was re-initialised.
    """
    own: Dict[str, Tensor] = dict(module.named_parameters())
    if weight_key not in own or prefix + weight_key not in state_dict:
        return False
    ours, theirs = own[weight_key], state_dict[prefix + weight_key]
    if tuple(theirs.shape) == tuple(ours.shape):
        return False
    # Only a different class count: same input width and kernel, same anchors per location.
    if (theirs.dim() != ours.dim() or tuple(theirs.shape[1:]) != tuple(ours.shape[1:])
            or theirs.shape[0] % num_anchors):
        return False
    ckpt_classes = theirs.shape[0] // num_anchors
    weight, bias = init_class_predictor(ours.shape, prior_prob, like=ours)
    state_dict[prefix + weight_key] = weight
    replaced = [weight_key]
    if bias_key is not None and bias_key in own:
        state_dict[prefix + bias_key] = bias
        replaced.append(bias_key)
    module_name = name or type(module).__name__
    others = sum(1 for k in state_dict if k.startswith(prefix)) - len(replaced)
    predictor = weight_key.split('.')[0]
    msg = (f'{module_name}: class predictor has {ckpt_classes} classes in the checkpoint, '
           f'{num_classes} in the model: re-initialised {predictor} (prior prob {prior_prob:g}); '
           f'the other {others} {prefix.rstrip(".") or module_name} tensors loaded')
    if ckpt_classes == _COCO_SLOTS and num_classes == _COCO_CLASSES:
        msg += (' (an official 90-slot COCO checkpoint: tools/convert_effdet_weights.py keeps '
                'the 80 COCO classes instead)')
    fingerprint = (prefix, tuple(theirs.shape), tuple(ours.shape),
                   float(theirs.detach().double().sum()))
    if _first_report(fingerprint):
        print_log(msg, logger=logger)
    return True


def prior_prob_from_init_cfg(init_cfg, name: str, default: float = 0.01) -> float:
    """The ``bias_prob`` an ``init_cfg`` gives the layer ``name`` (its ``override``)."""
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    for cfg in cfgs:
        if not isinstance(cfg, dict):
            continue
        overrides = cfg.get('override') or []
        for override in overrides if isinstance(overrides, (list, tuple)) else [overrides]:
            if override.get('name') == name and override.get('bias_prob') is not None:
                return float(override['bias_prob'])
    return default
