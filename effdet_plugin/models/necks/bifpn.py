"""BiFPN neck of EfficientDet, built from a generated node list (no level is hard-coded)."""
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch.nn as nn
from mmcv.cnn import build_activation_layer
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor

from ..layers import SeparableConvModule
from ..utils.norm import NormEvalMixin, load_bn_into_statfree_norms
from ..utils.scaling import get_det_scale, level_strides
from .bifpn_layers import LevelResample, WeightedFusion


class NeckChannelsError(ValueError):
    """The neck's ``in_channels`` differ from the widths of the backbone's outputs."""


class FusionNodeSpec(NamedTuple):
    """One BiFPN node: it fuses the features ``inputs`` into a map at pyramid ``level``.

    ``level`` counts from the finest level (0). ``inputs`` index the list of features
    available in a cell: first the cell's ``num_levels`` inputs, then the outputs of the
    nodes in order, so node ``i`` produces feature ``num_levels + i``.
    """
    level: int
    inputs: Tuple[int, ...]


def bifpn_topology(num_levels: int) -> List[FusionNodeSpec]:
    """Nodes of one BiFPN cell for any number of levels (EfficientDet paper, Fig. 2d).

    A top-down pass fuses each level with the level above, then a bottom-up pass fuses
    every feature of a level (its input, its top-down node) with the level below.
    """
    if num_levels < 2:
        raise ValueError(f'a BiFPN needs at least 2 levels, got {num_levels}')
    level_ids = [[level] for level in range(num_levels)]
    nodes: List[FusionNodeSpec] = []

    def add(level: int, inputs: Sequence[int]) -> None:
        nodes.append(FusionNodeSpec(level, tuple(inputs)))
        level_ids[level].append(num_levels + len(nodes) - 1)

    for level in reversed(range(num_levels - 1)):
        add(level, [level_ids[level][-1], level_ids[level + 1][-1]])
    for level in range(1, num_levels):
        add(level, level_ids[level] + [level_ids[level - 1][-1]])
    return nodes


class FusionNode(nn.Module):
    """Resample the inputs, fuse them, then activation + separable conv + norm."""

    def __init__(self, spec: FusionNodeSpec, in_channels: Sequence[int], in_levels: Sequence[int],
                 out_channels: int, fusion: str, redundant_bias: bool, conv_cfg: OptConfigType,
                 norm_cfg: ConfigType, act_cfg: ConfigType, pool_padding: str) -> None:
        super().__init__()
        self.level = spec.level
        self.inputs = spec.inputs
        bias = True if redundant_bias else 'auto'
        self.resample = nn.ModuleList([
            LevelResample(
                in_channels[i],
                out_channels,
                level_diff=spec.level - in_levels[i],
                bias=bias,
                conv_cfg=conv_cfg,
                norm_cfg=norm_cfg,
                pool_padding=pool_padding) for i in spec.inputs
        ])
        self.fusion = WeightedFusion(len(spec.inputs), mode=fusion)
        # The official model activates *before* the conv (pre-activation) and ends on the norm.
        self.act = build_activation_layer(act_cfg)
        self.conv = SeparableConvModule(
            out_channels,
            out_channels,
            3,
            bias=bias,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg,
            act_cfg=None)

    def forward(self, feats: List[Tensor], size: Sequence[int]) -> Tensor:
        inputs = [resample(feats[i], size) for i, resample in zip(self.inputs, self.resample)]
        return self.conv(self.act(self.fusion(inputs)))


class BiFPNCell(nn.Module):
    """One BiFPN repeat: maps ``num_levels`` features to ``num_levels`` features."""

    def __init__(self, in_channels: Sequence[int], out_channels: int, **node_kwargs) -> None:
        super().__init__()
        num_levels = len(in_channels)
        specs = bifpn_topology(num_levels)
        channels = list(in_channels)
        levels = list(range(num_levels))
        self.nodes = nn.ModuleList()
        for spec in specs:
            self.nodes.append(FusionNode(spec, channels, levels, out_channels, **node_kwargs))
            channels.append(out_channels)
            levels.append(spec.level)
        # each level's output is the last feature produced at that level
        self.out_ids = [max(i for i, lvl in enumerate(levels) if lvl == level)
                        for level in range(num_levels)]

    def forward(self, feats: Sequence[Tensor]) -> List[Tensor]:
        sizes = [feat.shape[-2:] for feat in feats]
        feats = list(feats)
        for node in self.nodes:
            feats.append(node(feats, sizes[node.level]))
        return [feats[i] for i in self.out_ids]


@MODELS.register_module()
class EffBiFPN(NormEvalMixin, BaseModule):
    """Bidirectional weighted feature pyramid of EfficientDet.

    The backbone outputs are the finest levels; extra coarser levels (up to ``max_level``)
    come from the last backbone output by a 1x1 conv + norm (when widths differ) and
    stride-2 max pooling. ``num_repeats`` identical cells follow; the first one also
    brings backbone features to ``out_channels`` with a 1x1 conv + norm on every edge,
    as the official model does.

    Inputs must have sizes divisible by ``2 ** max_level`` to match the official model
    exactly (set ``pad_size_divisor`` in the data preprocessor); other sizes work too.

    Args:
        in_channels (Sequence[int]): Channels of the backbone outputs used, finest first.
        out_channels (int, optional): BiFPN width. Defaults to the ``arch`` value.
        num_repeats (int, optional): Number of BiFPN cells. Defaults to the ``arch`` value.
        arch (str | float): EfficientDet variant (``'d0'`` ... ``'d7x'``) or phi, giving
            the defaults of the arguments left None. Defaults to ``'d0'``.
        min_level (int, optional): Pyramid level of the first input. Defaults to the
            ``arch`` value (3).
        max_level (int, optional): Coarsest output level. Defaults to the ``arch`` value
            (7, or 8 for D7x).
        fusion (str, optional): ``'fast'``, ``'softmax'`` or ``'sum'``. Defaults to the
            ``arch`` value.
        redundant_bias (bool): Keep the conv biases before each norm that the official
            TF model has (needed to load its weights and to match its parameter count).
            Defaults to True.
        pool_padding (str): ``'same'`` (TF, needed for the official weights) or
            ``'symmetric'``. Defaults to ``'same'``.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Any mmcv norm config (BN, SyncBN, GN ..., ``requires_grad``);
            GN's ``num_groups`` is the most groups a layer gets (the largest divisor of its
            width up to it, :mod:`effdet_plugin.models.utils.norm`). Defaults to BN with
            the TF momentum/eps.
        norm_eval (bool): Keep every norm in eval mode during training (frozen
            statistics), as the backbone's ``norm_eval``. Defaults to False.
        act_cfg (dict): Activation after every fusion. Defaults to Swish
            (``SiLU``, the fused kernel the official PyTorch port uses).
        init_cfg (dict or list[dict], optional): Initialization config.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: Optional[int] = None,
                 num_repeats: Optional[int] = None,
                 arch: Union[str, float] = 'd0',
                 min_level: Optional[int] = None,
                 max_level: Optional[int] = None,
                 fusion: Optional[str] = None,
                 redundant_bias: bool = True,
                 pool_padding: str = 'same',
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', momentum=0.01, eps=1e-3),
                 norm_eval: bool = False,
                 act_cfg: ConfigType = dict(type='SiLU'),
                 init_cfg: OptMultiConfig = dict(
                     type='Xavier', layer='Conv2d', distribution='uniform')) -> None:
        super().__init__(init_cfg=init_cfg)
        self.norm_eval = norm_eval
        scale = get_det_scale(arch)
        self.in_channels = list(in_channels)
        self.out_channels = scale.fpn_channels if out_channels is None else out_channels
        self.num_repeats = scale.fpn_repeats if num_repeats is None else num_repeats
        self.min_level = scale.min_level if min_level is None else min_level
        self.max_level = scale.max_level if max_level is None else max_level
        self.fusion = scale.fusion if fusion is None else fusion
        self.num_outs = self.max_level - self.min_level + 1
        num_extra = self.num_outs - len(self.in_channels)
        if num_extra < 0:
            raise ValueError(f'{len(self.in_channels)} inputs exceed the {self.num_outs} '
                             f'levels {self.min_level}..{self.max_level}')
        self.strides = level_strides(self.min_level, self.max_level)

        conv_kwargs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        bias = True if redundant_bias else 'auto'
        self.extra_levels = nn.ModuleList()
        channels = self.in_channels[-1]
        for _ in range(num_extra):
            self.extra_levels.append(
                LevelResample(channels, self.out_channels, 1, bias, pool_padding=pool_padding,
                              **conv_kwargs))
            channels = self.out_channels

        cell_in = self.in_channels + [self.out_channels] * num_extra
        self.cells = nn.ModuleList()
        for _ in range(self.num_repeats):
            self.cells.append(
                BiFPNCell(
                    cell_in,
                    self.out_channels,
                    fusion=self.fusion,
                    redundant_bias=redundant_bias,
                    act_cfg=act_cfg,
                    pool_padding=pool_padding,
                    **conv_kwargs))
            cell_in = [self.out_channels] * self.num_outs
        self.register_load_state_dict_pre_hook(load_bn_into_statfree_norms)

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Map backbone features (finest first) to ``num_outs`` FPN features."""
        got = [x.shape[1] for x in inputs]
        if got != self.in_channels:  # else a conv fails with a RuntimeError naming no config
            raise NeckChannelsError(
                f'neck in_channels={self.in_channels} do not match the backbone, whose outputs '
                f'have {got} channels: set neck.in_channels={got} (the backbone\'s '
                'out_channels), or choose the backbone outputs (out_indices) for this neck')
        feats = list(inputs)
        for extra in self.extra_levels:
            feats.append(extra(feats[-1]))
        for cell in self.cells:
            feats = cell(feats)
        return tuple(feats)
