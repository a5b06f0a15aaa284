"""Official EfficientDet COCO releases (efficientdet-pytorch) as checkpoints for our configs:
the variant named by an effdet model name, our config of it, the COCO 90-slot -> 80-class
predictor rows, the overrides and the input the weights were trained on (recorded in
``meta``). The key mapping itself is :func:`.efficientdet.convert_effdet_state_dict`.

COCO classes: the official models predict 90 slots, slot ``i`` = category id ``i + 1`` (ten
ids have no annotations). mmdet's 80 labels are the used ids in increasing order
(:data:`COCO80_CATEGORY_IDS`), so by default (80 classes) the class predictor keeps, per
anchor, the rows of slots ``id - 1`` and the checkpoint works with the config as it is; 90
keeps all slots.
"""
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..models.utils.scaling import EFFICIENTDET_SCALES
from .efficientdet import convert_effdet_state_dict, infer_variant
from .efficientnet import IMAGENET_MEAN, IMAGENET_STD

COCO_SLOTS = 90
# The 80 category ids of COCO 2017 detection (1..90 without the ten unused), = mmdet's labels.
COCO80_CATEGORY_IDS: Tuple[int, ...] = tuple(
    i for i in range(1, COCO_SLOTS + 1) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))
# Our config of each official variant (relative to the repository root).
VARIANT_CONFIGS: Dict[str, str] = {
    v: f'configs/effdet_{v.replace("d", "b", 1) if v[0] == "d" else v}_coco.py'
    for v in EFFICIENTDET_SCALES}
# effdet normalises inputs of the Lite and AdvProp (``_ap``) models to [-1, 1], the others
# with the ImageNet mean/std. Our Lite configs already use [-1, 1]; the D configs do not.
HALF_RANGE_NORM = dict(mean=[127.5] * 3, std=[127.5] * 3)
_NAME_RE = re.compile(r'(tf_)?efficientdet_(d\d|d7x|lite\dx?)(_ap)?(?![a-z0-9])')
CLS_PRED = 'bbox_head.cls_pred.pointwise_conv.conv.'
REG_PRED = 'bbox_head.reg_pred.pointwise_conv.conv.weight'


def parse_effdet_name(name: str) -> Tuple[str, bool]:
    """``(variant, advprop)`` of an effdet model or file name (``'tf_efficientdet_d2_ap'`` ->
    ``('d2', True)``).

    Raises:
        ValueError: If the name is no EfficientDet, a PyTorch-trained ``efficientdet_*`` model
            (our configs follow the TF models), or a variant without a config here.
    """
    m = _NAME_RE.search(osp.basename(name))
    if m is None:
        raise ValueError(f'{name!r} names no efficientdet-pytorch model (expected e.g. '
                         f'tf_efficientdet_d0 or tf_efficientdet_d0_34-f153e0cf.pth)')
    tf, variant, ap = m.groups()
    if not tf:
        raise ValueError(f'{name!r} is a PyTorch-trained effdet model; only the TF-ported '
                         f'tf_efficientdet_* weights match configs/effdet_*_coco.py')
    if variant not in VARIANT_CONFIGS:
        raise ValueError(f'no config for effdet variant {variant!r} ({name!r}); supported: '
                         f'{", ".join(VARIANT_CONFIGS)}')
    return variant, bool(ap)


def select_class_rows(state_dict: Mapping[str, Tensor],
                      slots: Sequence[int],
                      num_slots: int = COCO_SLOTS) -> 'OrderedDict[str, Tensor]':
    """Keep the class-predictor rows of ``slots`` (0-based) for every anchor (outputs are
    anchor-major, channel ``a * num_classes + c``, in effdet and mmdet alike)."""
    out = OrderedDict(state_dict)
    index = torch.as_tensor(list(slots), dtype=torch.long)
    for name in ('weight', 'bias'):
        value = out[CLS_PRED + name]
        if value.shape[0] % num_slots:
            raise ValueError(f'{CLS_PRED + name} has {value.shape[0]} rows, not a multiple of '
                             f'{num_slots} classes')
        grouped = value.reshape(value.shape[0] // num_slots, num_slots, *value.shape[1:])
        out[CLS_PRED + name] = grouped[:, index].flatten(0, 1).contiguous()
    return out


def coco_class_names(num_classes: int = 80) -> Tuple[str, ...]:
    """mmdet's COCO class names; for 90 slots, ``'N/A'`` fills the ten unused ids."""
    from mmdet.datasets import CocoDataset
    names = tuple(CocoDataset.METAINFO['classes'])
    if num_classes == len(COCO80_CATEGORY_IDS):
        return names
    by_id = dict(zip(COCO80_CATEGORY_IDS, names))
    return tuple(by_id.get(i, 'N/A') for i in range(1, COCO_SLOTS + 1))


def effdet_preprocessing(variant: str, advprop: bool = False) -> dict:
    """The input an official model was trained on (effdet's ``mean``/``std``, in 0-255 terms
    as :func:`~effdet_plugin.checkpoint.expected_preprocessing` reports them): [-1, 1] for Lite and
    AdvProp models, ImageNet mean/std otherwise; RGB and TF 'SAME' padding for all."""
    half_range = variant.startswith('lite') or advprop
    norm = HALF_RANGE_NORM if half_range else dict(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return dict(norm, to_rgb=True, padding='tf_same')


def config_overrides(variant: str, num_classes: int, advprop: bool = False) -> Dict[str, object]:
    """``--cfg-options`` that make ``VARIANT_CONFIGS[variant]`` match the converted model."""
    overrides: Dict[str, object] = {}
    if num_classes != len(COCO80_CATEGORY_IDS):
        overrides['model.bbox_head.num_classes'] = num_classes
    if advprop and not variant.startswith('lite'):
        overrides['model.data_preprocessor.mean'] = HALF_RANGE_NORM['mean']
        overrides['model.data_preprocessor.std'] = HALF_RANGE_NORM['std']
    return overrides


def convert_effdet_checkpoint(state_dict: Mapping[str, Tensor],
                              name: Optional[str] = None,
                              num_classes: int = 80) -> dict:
    """Convert an effdet COCO model into an mmengine checkpoint for our config.

    Args:
        state_dict (Mapping[str, Tensor]): effdet weights (see
            :func:`~effdet_plugin.checkpoint.convert_effdet_state_dict`).
        name (str, optional): effdet model or file name; the variant is inferred from the
            weights when None (AdvProp weights then need their name). Defaults to None.
        num_classes (int): 80 (mmdet's COCO classes) or 90 (all slots). Defaults to 80.

    Returns:
        dict: ``{'state_dict', 'meta'}`` for :func:`save_checkpoint`; ``meta``
        holds the variant, its config and ``cfg_options``, the class mapping,
        ``dataset_meta`` (for ``init_detector``) and ``preprocessing`` (for
        ``PretrainedInputCheckHook``).
    """
    if num_classes not in (len(COCO80_CATEGORY_IDS), COCO_SLOTS):
        raise ValueError(f'num_classes must be 80 or 90 for COCO weights, got {num_classes}; '
                         f'for another dataset convert with 80 and fine-tune (the class '
                         f'predictor is re-initialised on load)')
    variant, advprop = parse_effdet_name(name) if name else (infer_variant(state_dict), False)
    converted = convert_effdet_state_dict(state_dict, with_backbone=True)
    num_anchors = converted[REG_PRED].shape[0] // 4
    slots = converted[CLS_PRED + 'weight'].shape[0] // num_anchors
    if slots != COCO_SLOTS:
        raise ValueError(f'the class predictor has {slots} classes, not the 90 COCO slots of '
                         f'the official models')
    if num_classes == len(COCO80_CATEGORY_IDS):
        converted = select_class_rows(converted, [i - 1 for i in COCO80_CATEGORY_IDS])
        mapping = 'label j = j-th id of COCO80_CATEGORY_IDS (mmdet CocoDataset order)'
    else:
        mapping = 'label i = COCO category id i + 1'
    meta = dict(
        source='efficientdet-pytorch',
        effdet_name=osp.basename(name) if name else None,
        variant=variant,
        config=VARIANT_CONFIGS[variant],
        cfg_options=config_overrides(variant, num_classes, advprop),
        num_classes=num_classes,
        class_mapping=mapping,
        dataset_meta=dict(classes=coco_class_names(num_classes)),
        preprocessing=effdet_preprocessing(variant, advprop))
    return dict(state_dict=converted, meta=meta)


def load_effdet_weights(name: str) -> dict:
    """State dict of effdet's pretrained ``name`` (downloaded by effdet/timm)."""
    try:
        import effdet
    except ImportError as e:
        raise ImportError('--from-effdet needs efficientdet-pytorch: pip install effdet') from e
    model = effdet.create_model(name, pretrained=True)
    return model.state_dict()
