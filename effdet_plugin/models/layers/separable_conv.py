"""Convs shared by the BiFPN, the detection head and the segmentation head.

Module attribute names (``depthwise_conv``, ``pointwise_conv`` and mmcv's ``conv`` / ``bn``
inside them) are part of the state dict that the effdet weight converter maps onto.
"""
import warnings

import torch.nn as nn
from mmcv.cnn import ConvModule
from mmdet.utils import OptConfigType
from torch import Tensor

from ..utils.norm import norm_cfg_for
from .padding import resolve_padding


def pointwise_conv(in_channels: int,
                   out_channels: int,
                   bias='auto',
                   conv_cfg: OptConfigType = None,
                   norm_cfg: OptConfigType = None,
                   act_cfg: OptConfigType = None) -> ConvModule:
    """1x1 ``ConvModule``; a bias before the norm is allowed without mmcv's warning.

    The official TF model has those biases (``redundant_bias``): asking for them is
    deliberate. A 1x1 conv needs no padding, so TF "same" padding builds a plain conv.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        bias (bool | str): Conv bias; ``'auto'`` means no bias when a norm follows.
            Defaults to ``'auto'``.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict, optional): Norm after the conv, fitted to ``out_channels``
            (:func:`~effdet_plugin.models.utils.norm.norm_cfg_for`). Defaults to None.
        act_cfg (dict, optional): Activation after the norm. Defaults to None.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Unnecessary conv bias')
        return ConvModule(
            in_channels,
            out_channels,
            1,
            bias=bias,
            conv_cfg=resolve_padding(conv_cfg, 1)[0],
            norm_cfg=norm_cfg_for(norm_cfg, out_channels),
            act_cfg=act_cfg)


class SeparableConvModule(nn.Module):
    """Depthwise conv (no bias) followed by a pointwise ConvModule (optional bias/norm/act).

    mmcv's ``DepthwiseSeparableConvModule`` shares one ``bias`` switch between both convs;
    the official EfficientDet has a bias only on the pointwise conv, which this module
    reproduces so that parameter counts and converted weights match. (A depthwise bias would
    be redundant anyway: the pointwise conv is linear and a norm or bias follows it.)

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Depthwise kernel size. Defaults to 3.
        bias (bool | str): Bias of the pointwise conv; ``'auto'`` means no bias when a norm
            follows. Defaults to ``'auto'``.
        conv_cfg (dict, optional): Conv layer config; TF "same" padding
            (``Conv2dAdaptivePadding``) or None for symmetric padding. Defaults to None.
        norm_cfg (dict, optional): Norm after the pointwise conv. Defaults to None.
        act_cfg (dict, optional): Activation after the norm. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 3,
                 bias='auto',
                 conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = None,
                 act_cfg: OptConfigType = None) -> None:
        super().__init__()
        depthwise_cfg, padding = resolve_padding(conv_cfg, kernel_size)
        self.depthwise_conv = ConvModule(
            in_channels,
            in_channels,
            kernel_size,
            padding=padding,
            groups=in_channels,
            bias=False,
            conv_cfg=depthwise_cfg,
            norm_cfg=None,
            act_cfg=None)
        self.pointwise_conv = pointwise_conv(in_channels, out_channels, bias, conv_cfg, norm_cfg,
                                             act_cfg)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))
