"""Convert efficientdet-pytorch (``effdet``) EfficientDet weights to effdet_plugin keys.

Neck (``fpn.*``) and head (``class_net.*``, ``box_net.*``) keys are mapped here; backbone
keys (``backbone.*``, timm EfficientNet) are handed to a backbone converter so that each
converter knows one model only.
"""
import re
from collections import OrderedDict
from typing import Callable, Dict, List, Mapping, Optional, Set

from torch import Tensor

from ..models.necks.bifpn import bifpn_topology

StateDict = Dict[str, Tensor]
BackboneConverter = Callable[[StateDict], StateDict]

# effdet box outputs are (ty, tx, th, tw) per anchor; DeltaXYWHBBoxCoder wants (dx, dy, dw, dh).
YXYX_TO_XYXY = [1, 0, 3, 2]


def _strip_wrapper(state_dict: Mapping[str, Tensor]) -> StateDict:
    """Drop the ``model.`` prefix and anchor buffers of effdet's train/predict benches."""
    if 'state_dict' in state_dict:  # a full checkpoint dict
        state_dict = state_dict['state_dict']
    out = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith('anchors.'):
            continue
        out[key[len('model.'):] if key.startswith('model.') else key] = value
    return out


def _indices(sd: StateDict, pattern: str) -> Set[int]:
    """The integers that ``pattern``'s first group captures at the start of keys."""
    return {int(m.group(1)) for k in sd if (m := re.match(pattern, k))}


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
            cell, node, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            base = f'cells.{cell}.nodes.{node}'
            if rest == 'combine.edge_weights':
                new = f'{base}.fusion.weight'
            elif r := re.fullmatch(r'combine\.resample\.(\d+)\.conv\.(conv|bn)\.(.+)', rest):
                pos = specs[node].inputs.index(int(r.group(1)))
                new = f'{base}.resample.{pos}.conv.{r.group(2)}.{r.group(3)}'
            elif r := re.fullmatch(r'after_combine\.conv\.conv_dw\.(.+)', rest):
                new = f'{base}.conv.depthwise_conv.conv.{r.group(1)}'
            elif r := re.fullmatch(r'after_combine\.conv\.conv_pw\.(.+)', rest):
                new = f'{base}.conv.pointwise_conv.conv.{r.group(1)}'
            elif r := re.fullmatch(r'after_combine\.conv\.bn\.(.+)', rest):
                new = f'{base}.conv.pointwise_conv.bn.{r.group(1)}'
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
                              backbone_converter: Optional[BackboneConverter] = None,
                              backbone_prefix: str = 'backbone.',
                              neck_prefix: str = 'neck.',
                              head_prefix: str = 'bbox_head.') -> StateDict:
    """Map an effdet ``EfficientDet`` state dict onto ``EffNet``/``EffBiFPN``/``EffDetHead``.

    The result loads into an mmdet ``SingleStageDetector`` whose neck and head were built
    with the same variant settings (``redundant_bias=True`` and ``pool_padding='same'`` for
    the official ``tf_`` models). The box prediction conv is reordered from effdet's
    ``(ty, tx, th, tw)`` to mmdet's ``(dx, dy, dw, dh)``; anchors need no reordering with
    :class:`EffDetAnchorGenerator`.

    Args:
        state_dict (Mapping[str, Tensor]): effdet model state dict; the ``model.`` prefix
            of effdet's benches and a ``{'state_dict': ...}`` wrapper are accepted.
        backbone_converter (Callable, optional): Maps the timm backbone keys (``backbone.``
            stripped) to ours (no prefix). None leaves the backbone out of the result.
        backbone_prefix (str): Prefix of our backbone keys. Defaults to ``'backbone.'``.
        neck_prefix (str): Prefix of our neck keys. Defaults to ``'neck.'``.
        head_prefix (str): Prefix of our head keys. Defaults to ``'bbox_head.'``.

    Returns:
        dict[str, Tensor]: Converted state dict.

    Raises:
        KeyError: If a neck or head key is not understood (e.g. a non-separable variant).
    """
    sd = _strip_wrapper(state_dict)
    out = OrderedDict()
    if backbone_converter is not None:
        backbone = OrderedDict((k[len('backbone.'):], v) for k, v in sd.items()
                               if k.startswith('backbone.'))
        for key, value in backbone_converter(backbone).items():
            out[backbone_prefix + key] = value
    unknown: List[str] = []
    out.update(_convert_fpn(sd, neck_prefix, unknown))
    out.update(_convert_head_net(sd, 'class_net', 'cls', head_prefix, unknown))
    out.update(_convert_head_net(sd, 'box_net', 'reg', head_prefix, unknown))
    if unknown:
        raise KeyError(f'{len(unknown)} effdet neck/head keys could not be converted (only '
                       f'separable-conv BiFPN models are supported), e.g. {unknown[:5]}')
    return out
