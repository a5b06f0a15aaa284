"""Convert torchvision / timm / efficientnet-pytorch EfficientNet weights into ``EffNet`` keys.

Weights are paired by structure, never by rewriting key strings: the stem, every block and
the head conv of ``EffNet`` (read through its own layout) are matched, role by role, with the
modules the checkpoint's layout names (:mod:`.layouts`), and shapes are checked as tensors are
paired, so a wrong architecture fails at its first differing key.
"""
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import List, Optional

import torch

from ..models.backbones import EffNet
from ..models.utils.norm import AFFINE, BN_NAME, is_norm
from .layouts import (
    LAYOUTS,
    NUM_STAGES,
    ROLES,
    ArchMismatchError,
    Layout,
    StateDict,
    detect_format,
    infer_arch,
    strip_prefix,
)

IMAGENET_MEAN = [123.675, 116.28, 103.53]  # RGB, 0-255
IMAGENET_STD = [58.395, 57.12, 57.375]
# TF EfficientNet-Lite training (official model zoo): (x - 127) / 128 on RGB pixels.
LITE_MEAN, LITE_STD = [127.0] * 3, [128.0] * 3
_OURS = LAYOUTS['effnet']


@dataclass
class ConversionResult:
    """A checkpoint converted to ``EffNet`` keys (``state_dict``), from ``source`` (one of
    :data:`.layouts.SOURCES`) for ``arch``; ``prefix`` was stripped from the source keys.
    ``missing``: model keys without a value (a detector backbone has no head conv);
    ``unexpected``: source keys nothing consumed; ``ignored``: keys dropped on purpose (the
    classifier, layers the model does not build); ``backbone_cfg``: the ``EffNet`` config
    that reproduces the source numerics; ``preprocessing``: see :func:`expected_preprocessing`.
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

    def checkpoint(self, prefix: str = '') -> dict:
        """``{'state_dict', 'meta'}`` for :func:`.checkpoint_io.save_checkpoint`; keys get
        ``prefix`` (``'backbone.'`` for a detector's ``load_from``). ``PretrainedInputCheckHook``
        reads ``meta['preprocessing']``."""
        meta = dict(source=self.source, arch=self.arch, prefix=prefix,
                    backbone_cfg=self.backbone_cfg, preprocessing=self.preprocessing,
                    ignored=list(self.ignored))
        return dict(state_dict=OrderedDict((prefix + k, v) for k, v in self.state_dict.items()),
                    meta=meta)


def recommended_backbone_cfg(source: str, arch: str, tf_ported: Optional[bool] = None) -> dict:
    """``EffNet`` settings that reproduce the source network's numerics: TF-ported weights
    need TF 'SAME' padding and BN eps 1e-3; torchvision and timm's PyTorch-trained models use
    symmetric padding and eps 1e-5 (torchvision's b5-b7: 1e-3). Our own checkpoints do not
    record them: only the arch."""
    if source == 'effnet':
        return dict(type='EffNet', arch=arch)
    if tf_ported is None:
        tf_ported = source == 'effnet-pytorch'
    eps = 1e-3 if (arch in ('b5', 'b6', 'b7') if source == 'torchvision' else tf_ported) else 1e-5
    return dict(type='EffNet', arch=arch, padding='tf_same' if tf_ported else 'symmetric',
                norm_cfg=dict(type='BN', eps=eps, momentum=0.01))


def expected_preprocessing(source: str, arch: str, tf_ported: Optional[bool] = None) -> dict:
    """The input the source weights were trained on, in ``DetDataPreprocessor`` terms
    (``mean``/``std`` on 0-255 pixels, ``to_rgb`` = ``bgr_to_rgb``), and their conv padding.

    TF EfficientNet-Lite weights (the Lite packages, timm's ``tf_efficientnet_lite*``) expect
    ``(x - 127) / 128``, every other release ImageNet mean/std; all RGB. Our own checkpoints
    do not say where they came from: empty dict.
    """
    if source == 'effnet':
        return {}
    padding = recommended_backbone_cfg(source, arch, tf_ported)['padding']
    lite_tf = arch.startswith('lite') and padding == 'tf_same'
    return dict(mean=LITE_MEAN if lite_tf else IMAGENET_MEAN,
                std=LITE_STD if lite_tf else IMAGENET_STD, to_rgb=True, padding=padding)


def bn_layout(model: EffNet) -> 'OrderedDict[str, torch.Tensor]':
    """``model.state_dict()`` as the same model built with BatchNorm names it: a norm without
    running statistics (GroupNorm) appears under mmcv's ``bn`` name with BN's statistics (meta
    tensors), so BN checkpoints pair with it. Loading the result into ``model`` then copies the
    affine weight/bias and drops the statistics
    (:func:`~effdet_plugin.models.utils.norm.load_bn_into_statfree_norms`)."""
    target = OrderedDict(model.state_dict())
    for name, norm in model.named_modules():
        if not is_norm(norm) or getattr(norm, 'track_running_stats', False):
            continue
        parent = name.rpartition('.')[0]
        bn = f'{parent}.{BN_NAME}' if parent else BN_NAME
        channels = target[f'{name}.weight'].shape
        for key in AFFINE:
            target[f'{bn}.{key}'] = target.pop(f'{name}.{key}')
        for key in ('running_mean', 'running_var'):
            target[f'{bn}.{key}'] = torch.empty(channels, device='meta')
        target[f'{bn}.num_batches_tracked'] = torch.empty((), dtype=torch.long, device='meta')
    return target


def _shape(key: str, sd: StateDict) -> tuple:
    return tuple(sd[key].shape)


class _Pairer:
    """Copies checkpoint tensors to model keys module by module, checking shapes."""

    def __init__(self, target: StateDict, sd: StateDict, source: str, prefix: str):
        self.target, self.sd, self.source, self.prefix = target, sd, source, prefix
        self.out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
        self.consumed = set()

    def unpaired(self, context: str, module: str, in_model: bool) -> ArchMismatchError:
        """The error naming the first key under ``module`` (of the model or the checkpoint)
        that has no counterpart on the other side."""
        keys = self.target if in_model else self.sd
        key = next(k for k in keys if k == module or k.startswith(module + '.'))
        name = f'model key {key!r}' if in_model else (f'{self.source} checkpoint key '
                                                      f'{self.prefix + key!r}')
        return ArchMismatchError(f'{context}: {name} (shape {_shape(key, keys)}) has no '
                                 f'counterpart in the {"checkpoint" if in_model else "model"}.')

    def module(self, ours: str, theirs: str) -> None:
        for key in [k for k in self.target if k.startswith(ours + '.')]:
            src = theirs + key[len(ours):]
            if src not in self.sd:
                if key.endswith('num_batches_tracked'):
                    continue  # bookkeeping only; absent from some exports
                raise self.unpaired(f'Expected {self.prefix + src!r}, absent', key, True)
            if _shape(src, self.sd) != _shape(key, self.target):
                raise ArchMismatchError(
                    f'Shape mismatch at model key {key!r}: the model has shape '
                    f'{_shape(key, self.target)}, the {self.source} checkpoint key '
                    f'{self.prefix + src!r} has shape {_shape(src, self.sd)}.')
            self.out[key] = self.sd[src]
            self.consumed.add(src)

    def block(self, ours: str, theirs: str, layout: Layout) -> None:
        mine, other = _OURS.roles(self.target, ours), layout.roles(self.sd, theirs)
        context = (f'Block {ours!r} ({", ".join(mine)}) differs from checkpoint block '
                   f'{self.prefix + theirs!r} ({", ".join(other)})')
        for role in ROLES:
            if role in mine and role in other:
                for a, b in zip(mine[role], other[role]):
                    self.module(a, b)
            elif role in mine or role in other:
                raise self.unpaired(context, (mine if role in mine else other)[role][0],
                                    role in mine)
        left = [k for k in self.sd if k.startswith(theirs + '.') and k not in self.consumed]
        if left:  # e.g. SE weights in the checkpoint for a Lite model without SE
            raise self.unpaired(context, left[0], False)


def _pair(target: StateDict, sd: StateDict, layout: Layout, source: str, prefix: str):
    """Pair the stem, every block and the head conv in forward order. Returns the pairer and
    the checkpoint modules of layers the model does not build (``EffNet`` stops at its
    deepest ``out_indices`` entry)."""
    pair = _Pairer(target, sd, source, prefix)
    for a, b in zip(_OURS.stem, layout.stem):
        pair.module(a, b)
    ours, theirs = _OURS.stages(target), layout.stages(sd)
    if len(theirs) != NUM_STAGES:
        raise ArchMismatchError(f'The {source} checkpoint has {len(theirs)} stages of blocks, '
                                f'EffNet {NUM_STAGES}.')
    for stage, (mine, other) in enumerate(zip(ours, theirs), start=1):
        for a, b in zip(mine, other):
            pair.block(a, b, layout)
        if len(mine) != len(other):
            n = min(len(mine), len(other))
            raise pair.unpaired(f'Stage {stage} has {len(mine)} blocks in the model but '
                                f'{len(other)} in the {source} checkpoint',
                                mine[n] if len(mine) > n else other[n],
                                len(mine) > n)
    skipped = [block for blocks in theirs[len(ours):] for block in blocks]
    if any(k.startswith(layout.head[0] + '.') for k in sd):  # detector backbones have none
        if _OURS.head[0] + '.weight' in target:
            for a, b in zip(_OURS.head, layout.head):
                pair.module(a, b)
        else:
            skipped += layout.head
    return pair, skipped


def convert_efficientnet(state_dict: StateDict,
                         source: str = 'auto',
                         arch: Optional[str] = None,
                         model: Optional[EffNet] = None,
                         prefix: Optional[str] = None,
                         tf_ported: Optional[bool] = None) -> ConversionResult:
    """Convert a torchvision / timm / efficientnet-pytorch / ``EffNet`` state dict to
    ``EffNet`` keys.

    Args:
        state_dict (Mapping[str, Tensor]): Source weights (already unwrapped from any
            ``{'state_dict': ...}`` container, see :func:`.checkpoint_io.unwrap_state_dict`).
        source (str): One of ``'auto'``, ``'torchvision'``, ``'timm'``, ``'effnet-pytorch'``,
            ``'effnet'``. Defaults to ``'auto'`` (detected from the keys).
        arch (str, optional): Target ``EffNet`` arch; inferred from the checkpoint when neither
            ``arch`` nor ``model`` is given. Defaults to None.
        model (EffNet, optional): Model to convert for; its structure (SE/expansion presence,
            depths, layers built) drives the pairing. One built with GroupNorm gets the BN
            layout (:func:`bn_layout`), which loads into it as affine only. Defaults to None.
        prefix (str, optional): Prefix of the backbone keys (``'backbone.'`` for a detector);
            detected when None. Defaults to None.
        tf_ported (bool, optional): Whether the weights come from TF (for ``backbone_cfg``:
            'SAME' padding, eps 1e-3); timm's ``tf_*`` models need True. Defaults to None.

    Returns:
        ConversionResult: The converted state dict and what did not map.

    Raises:
        ArchMismatchError: Naming the first key whose shape or presence differs.
    """
    source, found_prefix = detect_format(state_dict, source)
    prefix = found_prefix if prefix is None else prefix
    sd, layout = strip_prefix(state_dict, prefix), LAYOUTS[source]
    if model is None:
        with torch.device('meta'):  # structure and shapes only: no memory or init cost
            model = EffNet(arch=arch or infer_arch(state_dict, source),
                           out_indices=(EffNet.num_layers - 1, ), norm_cfg=dict(type='BN'))
    arch, target = str(model.arch), bn_layout(model)
    try:
        pair, skipped = _pair(target, sd, layout, source, prefix)
    except ArchMismatchError as e:
        try:
            guess = f'It looks like arch {infer_arch(state_dict, source)!r}, the model is {arch!r}.'
        except ArchMismatchError:
            guess = f'The model is {arch!r}; the checkpoint matches no released arch.'
        raise ArchMismatchError(f'{e} The checkpoint was made for a different architecture. '
                                f'{guess}') from None
    dropped = tuple(f'{m}.' for m in [layout.classifier, *skipped] if m)
    left = [prefix + k for k in sd if k not in pair.consumed]
    return ConversionResult(
        pair.out, source, arch, prefix,
        missing=[k for k in target if k not in pair.out and not k.endswith('num_batches_tracked')],
        unexpected=[k for k in left if not k[len(prefix):].startswith(dropped)],
        ignored=[k for k in left if k[len(prefix):].startswith(dropped)],
        backbone_cfg=recommended_backbone_cfg(source, arch, tf_ported),
        preprocessing=expected_preprocessing(source, arch, tf_ported))

