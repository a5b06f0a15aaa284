"""Load a checkpoint trained with another class count: re-initialise the class predictor only.

mmengine's ``load_checkpoint`` (``load_from=...``, a ``Pretrained`` ``init_cfg``) reports a
size mismatch for the class predictor and keeps whatever the model held. A head calls
:func:`adapt_class_predictor` from its ``_load_from_state_dict`` instead: the incoming
class-predictor tensors are replaced by a fresh init, everything loads through the ordinary
path and one log line says what happened. Any other mismatch (anchors, widths) is another
architecture and left to mmengine's report.

This is the one loading rule that stays in models/ (the rest lives in
``effdet_plugin.checkpoint``, which models may not import): it must run inside the head's own
``_load_from_state_dict`` so that every loader applies it alike (ours, mmengine's, the EMA
copy's), and only the head knows which tensors hold its class rows and how many anchors share
a location.
"""
import math
from typing import MutableMapping, Optional

import torch
from mmengine.logging import print_log
from mmengine.model import bias_init_with_prob
from torch import Tensor

# COCO in the official 90-slot layout vs mmdet's 80 classes: worth a hint to the converter.
_COCO_SLOTS, _COCO_CLASSES = 90, 80
# mmengine's EMAHook loads the same checkpoint into the EMA copy right after the model: both
# loads re-initialise, one line is enough.
_LOGGED = set()


def reset_reports() -> None:
    """Forget which re-initialisations were logged (every one is logged again)."""
    _LOGGED.clear()


def adapt_class_predictor(module: torch.nn.Module,
                          state_dict: MutableMapping[str, Tensor],
                          prefix: str,
                          weight_key: str,
                          bias_key: Optional[str],
                          num_classes: int,
                          num_anchors: int = 1,
                          prior_prob: float = 0.01) -> bool:
    """Replace a class predictor of another class count in ``state_dict`` by a fresh init.

    The new weights are normal with std ``1 / sqrt(fan_in)`` (the official variance
    scaling), the bias gives every class the score ``prior_prob``. Call it first thing in
    ``module._load_from_state_dict`` (the state dict there is the loader's own copy).

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

    Returns:
        bool: Whether the class predictor was re-initialised.
    """
    own = dict(module.named_parameters())
    if weight_key not in own or prefix + weight_key not in state_dict:
        return False
    ours, theirs = own[weight_key], state_dict[prefix + weight_key]
    # only a different class count: same input width and kernel, same anchors per location
    if (theirs.shape == ours.shape or theirs.shape[1:] != ours.shape[1:]
            or theirs.shape[0] % num_anchors):
        return False
    fan_in = math.prod(ours.shape[1:])
    state_dict[prefix + weight_key] = torch.randn_like(ours) / math.sqrt(fan_in)
    replaced = 1
    if bias_key is not None and bias_key in own:
        state_dict[prefix + bias_key] = torch.full_like(own[bias_key],
                                                        bias_init_with_prob(prior_prob))
        replaced += 1
    ckpt_classes = theirs.shape[0] // num_anchors
    others = sum(1 for k in state_dict if k.startswith(prefix)) - replaced
    name = type(module).__name__
    msg = (f'{name}: class predictor has {ckpt_classes} classes in the checkpoint, '
           f'{num_classes} in the model: re-initialised {weight_key.split(".")[0]} (prior prob '
           f'{prior_prob:g}); the other {others} {prefix.rstrip(".") or name} tensors loaded')
    if ckpt_classes == _COCO_SLOTS and num_classes == _COCO_CLASSES:
        msg += (' (an official 90-slot COCO checkpoint: tools/convert_effdet_weights.py keeps '
                'the 80 COCO classes instead)')
    if msg not in _LOGGED:
        _LOGGED.add(msg)
        print_log(msg, logger='current')
    return True


def prior_prob_from_init_cfg(init_cfg, name: str, default: float = 0.01) -> float:
    """The ``bias_prob`` an ``init_cfg`` (or its ``override``) gives the layer ``name``."""
    for cfg in init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]:
        overrides = (cfg.get('override') or []) if isinstance(cfg, dict) else []
        for override in overrides if isinstance(overrides, (list, tuple)) else [overrides]:
            if override.get('name') == name and override.get('bias_prob') is not None:
                return float(override['bias_prob'])
    return default
