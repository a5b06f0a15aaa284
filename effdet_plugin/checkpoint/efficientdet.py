"""Official EfficientDet weights (efficientdet-pytorch, ``effdet``) -> our detector keys.

Neck (``fpn.*``) and head (``class_net.*``, ``box_net.*``) keys are mapped here, the timm
backbone by :func:`.efficientnet.convert_efficientnet`. ``tools/convert_effdet_weights.py``
makes a checkpoint for our COCO configs of them (variant, class mapping, input normalisation).
"""
import re
from collections import OrderedDict
from typing import Dict, List, Mapping

from torch import Tensor

from ..models.necks.bifpn import bifpn_topology
from ..models.utils.scaling import EFFICIENTDET_SCALES
from .checkpoint_io import unwrap_state_dict
from .efficientnet import convert_efficientnet

StateDict = Dict[str, Tensor]
# effdet box outputs are (ty, tx, th, tw) per anchor; DeltaXYWHBBoxCoder wants (dx, dy, dw, dh).
YXYX_TO_XYXY = [1, 0, 3, 2]


def _unwrap(state_dict: Mapping) -> StateDict:
    return unwrap_state_dict(state_dict, skip=('anchors.', ))  # anchors of effdet's benches


def _indices(sd: Mapping, pattern: str) -> set:
    """The integers that ``pattern``'s first group captures at the start of keys."""
    return {int(m.group(1)) for k in sd if (m := re.match(pattern, k))}


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
    matches = [name for name, s in EFFICIENTDET_SCALES.items() if (
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
    """Map an effdet ``EfficientDet`` state dict onto our ``backbone.``/``neck.``/
    ``bbox_head.`` keys, for a detector built with the same variant settings. The box
    prediction conv is reordered from effdet's ``(ty, tx, th, tw)`` to ``(dx, dy, dw, dh)``.

    Args:
        state_dict (Mapping[str, Tensor]): effdet weights; a bench's ``model.`` prefix and a
            ``{'state_dict': ...}`` wrapper are accepted.
        with_backbone (bool): Convert the timm backbone too. Defaults to False.

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
