"""EfficientNet backbone family (B0-B8, L2, Lite0-4, any compound coefficient phi).

All variants are one B0 stage table scaled by :mod:`effdet_plugin.models.utils.scaling`.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.model import BaseModule

from ..layers import MBConv, resolve_padding, same_padding_conv_cfg
from ..utils.norm import load_bn_into_statfree_norms, norm_cfg_for, set_norm_eval
from ..utils.scaling import (
    EFFICIENTNET_SCALES,
    NetScale,
    get_net_scale,
    round_filters,
    round_repeats,
)


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks; input channels are derived from the previous stage."""
    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: int
    out_channels: int
    se_ratio: float = 0.25


# EfficientNet-B0 (paper Table 1). Every other variant is this table, scaled.
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
B0_STAGES: Tuple[StageSpec, ...] = (
    StageSpec(repeats=1, kernel_size=3, stride=1, expand_ratio=1, out_channels=16),
    StageSpec(repeats=2, kernel_size=3, stride=2, expand_ratio=6, out_channels=24),
    StageSpec(repeats=2, kernel_size=5, stride=2, expand_ratio=6, out_channels=40),
    StageSpec(repeats=3, kernel_size=3, stride=2, expand_ratio=6, out_channels=80),
    StageSpec(repeats=3, kernel_size=5, stride=1, expand_ratio=6, out_channels=112),
    StageSpec(repeats=4, kernel_size=5, stride=2, expand_ratio=6, out_channels=192),
    StageSpec(repeats=1, kernel_size=3, stride=1, expand_ratio=6, out_channels=320),
)


def scale_stages(scale: NetScale, stages: Sequence[StageSpec] = B0_STAGES) -> List[StageSpec]:
    """Apply width/depth multipliers to a stage table.

    Lite variants keep the depth of the first and last stage fixed and drop SE, as released.
    """
    scaled = []
    for i, spec in enumerate(stages):
        fixed_depth = scale.lite and i in (0, len(stages) - 1)
        scaled.append(
            StageSpec(
                repeats=spec.repeats if fixed_depth else round_repeats(spec.repeats, scale.depth),
                kernel_size=spec.kernel_size,
                stride=spec.stride,
                expand_ratio=spec.expand_ratio,
                out_channels=round_filters(spec.out_channels, scale.width),
                se_ratio=0. if scale.lite else spec.se_ratio))
    return scaled


@MODELS.register_module()
class EffNet(BaseModule):
    """EfficientNet backbone with multi-scale outputs.

    Layers are indexed for ``out_indices`` and ``frozen_stages`` as: 0 the stem (stride 2),
    1-7 the seven MBConv stages (strides 2, 4, 8, 16, 16, 32, 32), 8 the 1x1 head conv
    (1280 channels for B0). The default ``(3, 5, 7)`` gives the stride 8/16/32 features an
    FPN or BiFPN expects; layers deeper than the deepest requested output are not built.
    ``layer_channels``/``layer_strides`` describe all nine layers, ``out_channels``/``strides``
    the requested outputs.

    Args:
        arch (str | float): Variant name (``'b0'``-``'b8'``, ``'l2'``, ``'lite0'``-``'lite4'``)
            or a compound coefficient phi (e.g. ``2.5``) scaled by the paper's rule.
            Defaults to ``'b0'``.
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (Sequence[int]): Layers whose outputs are returned. Defaults to (3, 5, 7).
        frozen_stages (int): Layers ``0..frozen_stages`` are frozen (eval mode, no grad);
            -1 freezes nothing. Defaults to -1.
        norm_eval (bool): Keep every norm layer (BN, SyncBN, GN) in eval mode during
            training: BN normalises with its running statistics and never updates them
            (with ``requires_grad=False`` in ``norm_cfg``: mmdet's frozen BN). Defaults to
            False.
        drop_path_rate (float): Stochastic depth rate of the last block; it grows linearly
            from 0 over blocks. Defaults to 0.2.
        padding (str): ``'symmetric'`` (PyTorch) or ``'tf_same'`` (TensorFlow 'SAME', needed
            for TF-ported weights). Defaults to ``'symmetric'``.
        conv_cfg (dict, optional): Conv config; overridden by ``padding='tf_same'``.
        norm_cfg (dict): Any mmcv norm config (BN, SyncBN, GN ..., ``requires_grad``).
            GN's ``num_groups`` is the most groups a layer gets: each gets the largest
            divisor of its width up to it (:mod:`effdet_plugin.models.utils.norm`).
            Defaults to BN with TF's eps 1e-3 and momentum 0.01.
        act_cfg (dict, optional): Activation; defaults to SiLU (Swish), ReLU6 for Lite.
        scaling (dict, optional): Overrides of the formula bases ``alpha``/``beta``/``gamma``
            when ``arch`` is a number. Defaults to None.
        with_cp (bool): Activation checkpointing of every block. Defaults to False.
        hidden_channels (Sequence[Sequence[int | None]], optional): Per stage (7 entries), per
            block, the hidden width of each MBConv; ``None`` keeps the scaled width. Written by
            channel pruning (``tools/analysis/se_gates.py --prune``). Defaults to None.
        init_cfg (dict | list[dict], optional): Initialization config.
    """
    num_layers = len(B0_STAGES) + 2  # stem + stages + head conv

    def __init__(self,
                 arch: Union[str, float] = 'b0',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (3, 5, 7),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 drop_path_rate: float = 0.2,
                 padding: str = 'symmetric',
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', eps=1e-3, momentum=0.01),
                 act_cfg: OptConfigType = None,
                 scaling: Optional[dict] = None,
                 with_cp: bool = False,
                 hidden_channels: Optional[Sequence[Sequence[Optional[int]]]] = None,
                 init_cfg: OptMultiConfig = [
                     dict(type='Kaiming', layer='Conv2d', mode='fan_out'),
                     dict(type='Constant', layer=['_BatchNorm', 'GroupNorm'], val=1)
                 ]):
        super().__init__(init_cfg)
        self.arch = arch
        self.scale = get_net_scale(arch, **(scaling or {}))
        out_indices = tuple(out_indices)
        bad = [i for i in out_indices if not -self.num_layers <= i < self.num_layers]
        if not out_indices or bad:
            raise ValueError(
                f'out_indices {out_indices} out of range: use layer indices in '
                f'[0, {self.num_layers - 1}] (0 stem, 1-7 stages, 8 head conv), e.g. (3, 5, 7).')
        self.out_indices = tuple(i % self.num_layers for i in out_indices)
        if not -1 <= frozen_stages <= max(self.out_indices):
            raise ValueError(f'frozen_stages={frozen_stages} out of range: use -1 (nothing '
                             f'frozen) up to {max(self.out_indices)} (the deepest layer of '
                             f'out_indices={self.out_indices}, everything frozen).')
        self.in_channels = in_channels
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.padding = padding  # compared with pretrained weights' meta (PretrainedInputCheckHook)
        self.resolution = self.scale.resolution
        if act_cfg is None:
            act_cfg = dict(type='ReLU6') if self.scale.lite else dict(type='SiLU')
        conv_cfg = same_padding_conv_cfg(conv_cfg, padding)
        stem_cfg, stem_pad = resolve_padding(conv_cfg, 3, stride=2)

        stages = scale_stages(self.scale)
        width = 1.0 if self.scale.lite else self.scale.width  # Lite fixes stem and head
        stem_channels = round_filters(STEM_CHANNELS, width)
        head_channels = round_filters(HEAD_CHANNELS, width)
        total_blocks = sum(s.repeats for s in stages)
        hidden = self._check_hidden_channels(hidden_channels, stages)

        self.layers = nn.ModuleList(
            [ConvModule(in_channels, stem_channels, 3, stride=2, padding=stem_pad,
                        conv_cfg=stem_cfg, norm_cfg=norm_cfg_for(norm_cfg, stem_channels),
                        act_cfg=act_cfg)])
        channels, strides, stride, block_id = [stem_channels], [2], 2, 0
        for spec in stages:
            blocks = []
            for i in range(spec.repeats):
                blocks.append(
                    MBConv(channels[-1] if i == 0 else spec.out_channels, spec.out_channels,
                           spec.kernel_size, spec.stride if i == 0 else 1, spec.expand_ratio,
                           se_ratio=spec.se_ratio,
                           drop_path_rate=drop_path_rate * block_id / total_blocks,
                           with_cp=with_cp, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                           act_cfg=act_cfg, mid_channels=hidden[len(self.layers) - 1][i]))
                block_id += 1
            stride *= spec.stride
            self.layers.append(nn.Sequential(*blocks))
            channels.append(spec.out_channels)
            strides.append(stride)
        self.layers.append(
            ConvModule(channels[-1], head_channels, 1, conv_cfg=resolve_padding(conv_cfg, 1)[0],
                       norm_cfg=norm_cfg_for(norm_cfg, head_channels), act_cfg=act_cfg))
        channels.append(head_channels)
        strides.append(stride)
        # Layers past the deepest requested output would hold unused parameters (the 1x1
        # head conv alone is 412k of B0's 4.0M): build only what the outputs need.
        del self.layers[max(self.out_indices) + 1:]
        # ImageNet checkpoints hold all nine layers: the unbuilt ones are not "unexpected"
        self._register_load_state_dict_pre_hook(self._drop_unbuilt_layers)
        # BatchNorm-trained weights (ImageNet) load into a GroupNorm backbone: affine only
        self.register_load_state_dict_pre_hook(load_bn_into_statfree_norms)

        self.layer_channels = tuple(channels)
        self.layer_strides = tuple(strides)
        self.out_channels = tuple(channels[i] for i in self.out_indices)
        self.strides = tuple(strides[i] for i in self.out_indices)
        self._freeze_stages()

    @staticmethod
    def _check_hidden_channels(hidden_channels, stages: Sequence[StageSpec]) -> list:
        """``hidden_channels`` as one list per stage with one entry per block."""
        if hidden_channels is None:
            return [[None] * spec.repeats for spec in stages]
        shape = [spec.repeats for spec in stages]
        if len(hidden_channels) != len(stages) or any(
                len(widths) != n for widths, n in zip(hidden_channels, shape)):
            got = [len(widths) for widths in hidden_channels]
            raise ValueError(f'hidden_channels must give one width (or None) per block: blocks '
                             f'per stage {shape}, got {got}. It was written for another arch?')
        return [list(widths) for widths in hidden_channels]

    def _drop_unbuilt_layers(self, state_dict: dict, prefix: str, *args) -> None:
        """Remove the weights of layers past the deepest output from a state dict to load."""
        layers = f'{prefix}layers.'
        for key in list(state_dict):
            index = key[len(layers):].split('.', 1)[0] if key.startswith(layers) else ''
            if index.isdigit() and int(index) >= len(self.layers):
                del state_dict[key]

    def _freeze_stages(self) -> None:
        for layer in self.layers[:self.frozen_stages + 1]:
            layer.eval()
            for param in layer.parameters():
                param.requires_grad = False

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'EffNet expects an (N, {self.in_channels}, H, W) tensor, got shape '
                f'{tuple(x.shape)}. Set in_channels={x.shape[1] if x.dim() == 4 else "?"} in the '
                f'backbone config, or convert the images (e.g. gray -> 3 channels) when loading.')
        min_size = max(self.strides)
        if min(x.shape[-2:]) < min_size:
            raise ValueError(
                f'Input {tuple(x.shape[-2:])} is smaller than the stride {min_size} of the '
                f'deepest requested output (out_indices={self.out_indices}); resize or pad the '
                f'input to at least {min_size}x{min_size}.')

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self._check_input(x)
        outs = []
        last = max(self.out_indices)
        for i, layer in enumerate(self.layers[:last + 1]):
            x = layer(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True) -> 'EffNet':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            set_norm_eval(self)
        return self


def list_archs() -> List[str]:
    """Names of the released variants ``EffNet(arch=...)`` accepts."""
    return list(EFFICIENTNET_SCALES)
