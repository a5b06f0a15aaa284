"""Mobile inverted bottleneck (MBConv) block with squeeze-and-excitation and drop path."""
import contextlib
from typing import Optional

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule
from mmcv.cnn.bricks import DropPath
from mmdet.utils import ConfigType, OptConfigType
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from ..utils.norm import norm_cfg_for
from .padding import resolve_padding


class SqueezeExcite(BaseModule):
    """Channel attention: global pool, reduce, activation, expand, sigmoid gate.

    Args:
        channels (int): Channels of the features being gated (the expanded width).
        squeeze_channels (int): Bottleneck width; EfficientNet uses 1/4 of the block's
            *input* channels, not of the expanded width.
        act_cfg (dict): Activation between the two 1x1 convs. Defaults to SiLU.
    """

    def __init__(self, channels: int, squeeze_channels: int,
                 act_cfg: ConfigType = dict(type='SiLU'), init_cfg: OptConfigType = None):
        super().__init__(init_cfg)
        self.reduce = ConvModule(channels, squeeze_channels, 1, act_cfg=act_cfg)
        self.expand = ConvModule(squeeze_channels, channels, 1, act_cfg=dict(type='Sigmoid'))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        return x * self.expand(self.reduce(scale))


class MBConv(BaseModule):
    """EfficientNet's MBConv: 1x1 expansion, kxk depthwise, SE, linear 1x1 projection.

    With ``expand_ratio == 1`` the expansion conv is omitted (the depthwise-separable block of the
    first stage). The residual is used only when stride is 1 and channels match.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Depthwise kernel size.
        stride (int): Depthwise stride.
        expand_ratio (float): Expansion of the hidden width.
        se_ratio (float): SE bottleneck relative to ``in_channels``; 0 disables SE.
        drop_path_rate (float): Stochastic depth rate of this block. Defaults to 0.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config, fitted to each conv's width
            (:func:`~effdet_plugin.models.utils.norm.norm_cfg_for`). Defaults to BN with TF's
            eps 1e-3.
        act_cfg (dict): Activation config. Defaults to SiLU (Swish).
        with_cp (bool): Use activation checkpointing in training. Defaults to False.
        mid_channels (int, optional): Hidden width instead of ``in_channels * expand_ratio``
            (a block whose hidden channels were pruned). Needs ``expand_ratio != 1``.
            Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int,
                 stride: int,
                 expand_ratio: float,
                 se_ratio: float = 0.25,
                 drop_path_rate: float = 0.,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', eps=1e-3, momentum=0.01),
                 act_cfg: ConfigType = dict(type='SiLU'),
                 with_cp: bool = False,
                 mid_channels: Optional[int] = None,
                 init_cfg: OptConfigType = None):
        super().__init__(init_cfg)
        self.with_cp = with_cp
        self.with_residual = stride == 1 and in_channels == out_channels
        if mid_channels is None:
            mid_channels = int(in_channels * expand_ratio)
        elif expand_ratio == 1 or mid_channels < 1:
            raise ValueError(f'mid_channels={mid_channels} needs a block with an expansion conv '
                             f'(expand_ratio != 1, got {expand_ratio}) and at least 1 channel')
        self.mid_channels = mid_channels
        pointwise_cfg, _ = resolve_padding(conv_cfg, 1)
        depthwise_cfg, padding = resolve_padding(conv_cfg, kernel_size, stride)
        mid_norm_cfg = norm_cfg_for(norm_cfg, mid_channels)
        self.expand_conv = (
            ConvModule(in_channels, mid_channels, 1, act_cfg=act_cfg, conv_cfg=pointwise_cfg,
                       norm_cfg=mid_norm_cfg)
            if expand_ratio != 1 else nn.Identity())
        self.depthwise_conv = ConvModule(
            mid_channels, mid_channels, kernel_size, stride=stride, padding=padding,
            groups=mid_channels, act_cfg=act_cfg, conv_cfg=depthwise_cfg, norm_cfg=mid_norm_cfg)
        self.se = (
            SqueezeExcite(mid_channels, max(1, int(in_channels * se_ratio)), act_cfg)
            if se_ratio > 0 else nn.Identity())
        self.project_conv = ConvModule(mid_channels, out_channels, 1, act_cfg=None,
                                       conv_cfg=pointwise_cfg,
                                       norm_cfg=norm_cfg_for(norm_cfg, out_channels))
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project_conv(self.se(self.depthwise_conv(self.expand_conv(x))))
        if self.with_residual:
            out = x + self.drop_path(out)
        return out

    @contextlib.contextmanager
    def _keep_norm_stats(self):
        """Undo the running-stat update of the backward-time recomputation, which would
        otherwise count every batch twice in BN statistics."""
        norms = [m for m in self.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
        saved = [[b.clone() for b in m.buffers()] for m in norms]
        try:
            yield
        finally:  # the recomputation may stop early by raising once it has what it needs
            with torch.no_grad():
                for m, buffers in zip(norms, saved):
                    for b, old in zip(m.buffers(), buffers):
                        b.copy_(old)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad and self.training:
            return cp.checkpoint(self._forward, x, use_reentrant=False,
                                 context_fn=lambda: (contextlib.nullcontext(),
                                                     self._keep_norm_stats()))
        return self._forward(x)
