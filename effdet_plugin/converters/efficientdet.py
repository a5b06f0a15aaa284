"""Official EfficientDet COCO weights (efficientdet-pytorch, ``effdet``) -> our detector keys.

Neck (``fpn.*``) and head (``class_net.*``, ``box_net.*``) keys are mapped here, the timm
backbone by :func:`.efficientnet.convert_efficientnet`. :func:`convert_effdet_checkpoint`
adds the variant and its config, the COCO class mapping and the input normalisation.

COCO classes. The official models predict 90 slots, slot ``i`` being COCO category id
``i + 1`` (ids 1..90; ten ids, e.g. 12 "street sign", have no annotations). mmdet's
``CocoDataset`` has 80 classes, label ``j`` being the ``j``-th of the 80 used category ids in
increasing order (the order of ``CocoDataset.METAINFO['classes']``). With ``num_classes=80``
the class predictor keeps, for every anchor, the 80 rows of the slots ``id - 1`` for the ids of
:data:`COCO80_CATEGORY_IDS`, so label ``j`` scores exactly what the official model scores for
that category. ``num_classes=90`` keeps all slots (label ``i`` = category id ``i + 1``).
"""
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..models.necks.bifpn import bifpn_topology
from ..models.utils.scaling import EFFICIENTDET_SCALES
from .checkpoint_io import unwrap_state_dict
from .efficientnet import IMAGENET_MEAN, IMAGENET_STD, convert_efficientnet

StateDict = Dict[str, Tensor]
# The 80 category ids of COCO 2017 detection, in increasing order = mmdet's label order.
COCO80_CATEGORY_IDS: Tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27,
    28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53,
    54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80,
    81, 82, 84, 85, 86, 87, 88, 89, 90)
COCO_SLOTS = 90
# Our config of each official variant (configs/ relative to the repository root).
VARIANT_CONFIGS: Dict[str, str] = {
    **{f'd{i}': f'configs/effdet_b{i}_coco.py' for i in range(8)},
    'd7x': 'configs/effdet_b7x_coco.py',
    **{f'lite{i}': f'configs/effdet_lite{i}_coco.py' for i in range(5)},
}
# effdet normalises inputs of the Lite and AdvProp (``_ap``) models to [-1, 1], the others
# with the ImageNet mean/std. Our Lite configs already use [-1, 1]; the D configs do not.
HALF_RANGE_NORM = dict(mean=[127.5] * 3, std=[127.5] * 3)
_NAME_RE = re.compile(r'(tf_)?efficientdet_(d\d|d7x|lite\dx?)(_ap)?(?![a-z0-9])')
CLS_PRED = 'bbox_head.cls_pred.pointwise_conv.conv.'
REG_PRED = 'bbox_head.reg_pred.pointwise_conv.conv.weight'
# effdet box outputs are (ty, tx, th, tw) per anchor; DeltaXYWHBBoxCoder wants (dx, dy, dw, dh).
YXYX_TO_XYXY = [1, 0, 3, 2]


def _unwrap(state_dict: Mapping) -> StateDict:
    return unwrap_state_dict(state_dict, skip=('anchors.',))


def _indices(sd: Mapping, pattern: str) -> set:
    """The integers that ``pattern``'s first group captures at the start of keys."""
    return {int(m.group(1)) for k in sd if (m := re.match(pattern, k))}


def parse_effdet_name(name: str) -> Tuple[str, bool]:
    """``(variant, advprop)`` of an effdet model name or checkpoint file name.

    ``'tf_efficientdet_d0_34-f153e0cf.pth'`` -> ``('d0', False)``, ``'tf_efficientdet_d2_ap'``
    -> ``('d2', True)``, ``'tf_efficientdet_lite0'`` -> ``('lite0', False)``.

    Raises:
        ValueError: If the name is no EfficientDet, a PyTorch-trained ``efficientdet_*`` model
            (symmetric padding, no redundant biases: our configs follow the TF models), or a
            variant without a config here.
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


def infer_variant(state_dict: Mapping[str, Tensor]) -> str:
    """The variant whose BiFPN width/depth, head depth, levels and backbone kind match.

    Raises:
        ValueError: If none or several variants match (D6 and D7 differ only in input size
            and anchor scale: pass the name then).
    """
    sd = _unwrap(state_dict)
    width_key = 'fpn.cell.0.fnode.0.after_combine.conv.conv_pw.weight'
    if width_key not in sd:
        raise ValueError('not an efficientdet-pytorch BiFPN state dict (no fpn.cell.* keys)')
    found = (sd[width_key].shape[0], len(_indices(sd, r'fpn\.cell\.(\d+)\.')),
             len(_indices(sd, r'box_net\.conv_rep\.(\d+)\.')),
             len(_indices(sd, r'fpn\.cell\.0\.fnode\.(\d+)\.')) // 2 + 1,
             not any('.se.' in k for k in sd if k.startswith('backbone.')))
    matches = [name for name, s in EFFICIENTDET_SCALES.items() if name in VARIANT_CONFIGS and (
        s.fpn_channels, s.fpn_repeats, s.head_repeats, s.max_level - s.min_level + 1,
        name.startswith('lite')) == found]
    if len(matches) != 1:
        keys = ('fpn_channels', 'fpn_repeats', 'head_repeats', 'levels', 'lite')
        raise ValueError(f'the checkpoint structure {dict(zip(keys, found))} matches '
                         f'{matches or "no variant"}: give the effdet model name (--name)')
    return matches[0]


def _convert_fpn(sd: StateDict, prefix: str, unknown: List[str]) -> StateDict:
    """``fpn.*`` -> ``EffBiFPN`` keys; the node topology maps effdet's per-offset resample
    modules to our per-input ones. Keys not understood are appended to ``unknown``."""
    extra_ids = sorted(_indices(sd, r'fpn\.resample\.(\d+)\.'))
    node_ids = _indices(sd, r'fpn\.cell\.0\.fnode\.(\d+)\.')
    if not node_ids:
        unknown.extend(k for k in sd if k.startswith('fpn.'))
        return OrderedDict()
    num_levels = len(node_ids) // 2 + 1  # a BiFPN cell has 2 * (levels - 1) nodes
    num_inputs = extra_ids[0] if extra_ids else num_levels  # backbone levels
    specs = bifpn_topology(num_levels)
    out = OrderedDict()
    for key, value in sd.items():
        if m := re.fullmatch(r'fpn\.resample\.(\d+)\.conv\.(conv|bn)\.(.+)', key):
            new = f'extra_levels.{int(m.group(1)) - num_inputs}.conv.{m.group(2)}.{m.group(3)}'
        elif m := re.fullmatch(r'fpn\.cell\.(\d+)\.fnode\.(\d+)\.(.+)', key):
            base, rest = f'cells.{m.group(1)}.nodes.{m.group(2)}', m.group(3)
            if rest == 'combine.edge_weights':
                new = f'{base}.fusion.weight'
            elif r := re.fullmatch(r'combine\.resample\.(\d+)\.conv\.(conv|bn)\.(.+)', rest):
                pos = specs[int(m.group(2))].inputs.index(int(r.group(1)))
                new = f'{base}.resample.{pos}.conv.{r.group(2)}.{r.group(3)}'
            elif r := re.fullmatch(r'after_combine\.conv\.(conv_dw|conv_pw|bn)\.(.+)', rest):
                module = dict(conv_dw='depthwise_conv.conv', conv_pw='pointwise_conv.conv',
                              bn='pointwise_conv.bn')[r.group(1)]
                new = f'{base}.conv.{module}.{r.group(2)}'
            else:
                unknown.append(key)
                continue
        else:
            if key.startswith('fpn.'):
                unknown.append(key)
            continue
        out[prefix + new] = value
    return out


def _convert_head_net(sd: StateDict, net: str, ours: str, prefix: str,
                      unknown: List[str]) -> StateDict:
    """``{net}.*`` (``class_net``/``box_net``) -> ``EffDetHead`` ``{ours}_*`` keys."""
    out = OrderedDict()
    for key, value in sd.items():
        if not key.startswith(net + '.'):
            continue
        rest = key[len(net) + 1:]
        if m := re.fullmatch(r'(conv_rep\.(\d+)|predict)\.conv_(dw|pw)\.(.+)', rest):
            module = f'{ours}_convs.{m.group(2)}' if m.group(2) else f'{ours}_pred'
            conv = 'depthwise_conv' if m.group(3) == 'dw' else 'pointwise_conv'
            new = f'{module}.{conv}.conv.{m.group(4)}'
            if net == 'box_net' and m.group(1) == 'predict' and conv == 'pointwise_conv':
                value = value.reshape(-1, 4, *value.shape[1:])[:, YXYX_TO_XYXY].flatten(0, 1)
        elif m := re.fullmatch(r'bn_rep\.(\d+)\.(\d+)\.bn\.(.+)', rest):  # repeat-first layout
            new = f'{ours}_norms.{m.group(2)}.{m.group(1)}.{m.group(3)}'
        elif m := re.fullmatch(r'bn_rep\.(\d+)\.(\d+)\.(.+)', rest):  # head_bn_level_first
            new = f'{ours}_norms.{m.group(1)}.{m.group(2)}.{m.group(3)}'
        else:
            unknown.append(key)
            continue
        out[prefix + new] = value
    return out


def convert_effdet_state_dict(state_dict: Mapping[str, Tensor],
                              with_backbone: bool = False) -> StateDict:
    """Map an effdet ``EfficientDet`` state dict onto ``EffNet``/``EffBiFPN``/``EffDetHead``
    keys (``backbone.``, ``neck.``, ``bbox_head.``).

    The result loads into an mmdet ``SingleStageDetector`` whose neck and head were built
    with the same variant settings (``redundant_bias=True`` and ``pool_padding='same'`` for
    the official ``tf_`` models). The box prediction conv is reordered from effdet's
    ``(ty, tx, th, tw)`` to mmdet's ``(dx, dy, dw, dh)``; anchors need no reordering with
    :class:`EffDetAnchorGenerator`.

    Args:
        state_dict (Mapping[str, Tensor]): effdet model state dict; the ``model.`` prefix
            of effdet's benches and a ``{'state_dict': ...}`` wrapper are accepted.
        with_backbone (bool): Convert the timm backbone too (the head conv it lacks is left
            out). Defaults to False (neck and head only).

    Raises:
        KeyError: If a neck or head key is not understood (e.g. a non-separable variant).
    """
    sd = _unwrap(state_dict)
    out = OrderedDict()
    if with_backbone:
        backbone = convert_efficientnet(sd, 'timm', prefix='backbone.').state_dict
        out.update((f'backbone.{k}', v) for k, v in backbone.items())
    unknown: List[str] = []
    out.update(_convert_fpn(sd, 'neck.', unknown))
    out.update(_convert_head_net(sd, 'class_net', 'cls', 'bbox_head.', unknown))
    out.update(_convert_head_net(sd, 'box_net', 'reg', 'bbox_head.', unknown))
    if unknown:
        raise KeyError(f'{len(unknown)} effdet neck/head keys could not be converted (only '
                       f'separable-conv BiFPN models are supported), e.g. {unknown[:5]}')
    return out


def select_class_rows(state_dict: Mapping[str, Tensor],
                      slots: Sequence[int],
                      num_slots: int = COCO_SLOTS) -> 'OrderedDict[str, Tensor]':
    """Keep the class-predictor rows of ``slots`` (0-based) for every anchor.

    Outputs are laid out anchor-major (channel ``a * num_classes + c``), as in effdet and
    mmdet's ``AnchorHead``.
    """
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
    as :func:`.efficientnet.expected_preprocessing` reports them): [-1, 1] for Lite and
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
        state_dict (Mapping[str, Tensor]): effdet ``EfficientDet`` weights (a bench's
            ``model.`` prefix and a ``{'state_dict': ...}`` wrapper are accepted).
        name (str, optional): effdet model or file name (``tf_efficientdet_d0``); the variant
            is inferred from the weights when None (AdvProp weights then need their name).
        num_classes (int): 80 (mmdet's COCO classes, see the module docstring) or 90 (all
            official slots). Defaults to 80.

    Returns:
        dict: ``{'state_dict': ..., 'meta': ...}`` for :func:`.checkpoint_io.save_checkpoint`;
        ``meta`` holds the variant, the config and its needed ``cfg_options``, the class
        mapping, ``dataset_meta`` (class names, read by mmdet's ``init_detector``) and
        ``preprocessing`` (read by ``PretrainedInputCheckHook``).
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
