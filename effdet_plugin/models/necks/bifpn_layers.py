"""Building blocks of the BiFPN: edge fusion and level resampling.

Module attribute names are kept stable because the effdet weight converter maps onto them.
The separable convs, shared with the heads, are in :mod:`..layers.separable_conv`.
"""
import math
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.utils import OptConfigType
from torch import Tensor

from ..layers import pointwise_conv

FUSION_MODES = ('fast', 'softmax', 'sum')


class WeightedFusion(nn.Module):
    """Fuse same-shaped feature maps with one learnable scalar per input.

    Args:
        num_inputs (int): Number of fused feature maps.
        mode (str): ``'fast'``: fast normalized fusion
            ``w_i = relu(w_i) / (sum_j relu(w_j) + eps)`` (EfficientDet D0-D5);
            ``'softmax'``: softmax over the weights; ``'sum'``: plain sum without weights
            (D6-D7x). Defaults to ``'fast'``.
        eps (float): Keeps the fast normalized weights finite. Defaults to 1e-4.
    """

    def __init__(self, num_inputs: int, mode: str = 'fast', eps: float = 1e-4) -> None:
        super().__init__()
        if mode not in FUSION_MODES:
            raise ValueError(f'fusion mode must be one of {FUSION_MODES}, got {mode!r}')
        self.mode = mode
        self.eps = eps
        if mode != 'sum':
            self.weight = nn.Parameter(torch.ones(num_inputs))

    def forward(self, inputs: List[Tensor]) -> Tensor:
        # Same operation order as the official model, so converted weights match to rounding.
        if self.mode == 'sum':
            return torch.stack(inputs, dim=-1).sum(dim=-1)
        weight = self.weight.to(inputs[0].dtype)
        if self.mode == 'softmax':
            return (torch.stack(inputs, dim=-1) * weight.softmax(dim=0)).sum(dim=-1)
        weight = F.relu(weight)
        denom = weight.sum() + self.eps
        return torch.stack([x * w / denom for x, w in zip(inputs, weight)], dim=-1).sum(dim=-1)

    def extra_repr(self) -> str:
        return f'mode={self.mode!r}'


class MaxPool2dSame(nn.Module):
    """Max pooling with TensorFlow "SAME" padding (extra pixel at the bottom/right).

    Symmetric padding shifts the pooling windows by one pixel with respect to TensorFlow,
    so weights trained there (the official EfficientDet checkpoints) need this variant.

    Args:
        kernel_size (int): Pooling window. Defaults to 3.
        stride (int): Pooling stride. Defaults to 2.
    """

    def __init__(self, kernel_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad wants the last dim first
            total = max((math.ceil(size / self.stride) - 1) * self.stride + self.kernel_size -
                        size, 0)
            pads += [total // 2, total - total // 2]
        x = F.pad(x, pads, value=float('-inf'))
        return F.max_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f'kernel_size={self.kernel_size}, stride={self.stride}'


def build_downsample(pool_padding: str = 'same') -> nn.Module:
    """3x3 stride-2 max pooling; ``pool_padding`` is ``'same'`` (TF) or ``'symmetric'``."""
    if pool_padding == 'same':
        return MaxPool2dSame(3, 2)
    if pool_padding == 'symmetric':
        return nn.MaxPool2d(3, 2, padding=1)
    raise ValueError(f"pool_padding must be 'same' or 'symmetric', got {pool_padding!r}")


class LevelResample(nn.Module):
    """Bring one feature map to another pyramid level and to the FPN width.

    1x1 conv + norm when the widths differ, then ``level_diff`` stride-2 max pools
    (``level_diff > 0``: to a coarser level) or nearest upsampling to the target size
    (``level_diff < 0``).

    Args:
        in_channels (int): Channels of the input map.
        out_channels (int): FPN width.
        level_diff (int): Target level minus source level.
        bias (bool | str): Bias of the 1x1 conv. Defaults to ``'auto'``.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict, optional): Norm after the 1x1 conv. Defaults to None.
        pool_padding (str): ``'same'`` (TF) or ``'symmetric'``. Defaults to ``'same'``.
    """

    def __init__(self, in_channels: int, out_channels: int, level_diff: int = 0, bias='auto',
                 conv_cfg: OptConfigType = None, norm_cfg: OptConfigType = None,
                 pool_padding: str = 'same') -> None:
        super().__init__()
        self.level_diff = level_diff
        self.conv = None
        if in_channels != out_channels:
            self.conv = pointwise_conv(in_channels, out_channels, bias, conv_cfg, norm_cfg)
        self.pool = nn.Sequential(*[build_downsample(pool_padding) for _ in range(level_diff)])

    def forward(self, x: Tensor, size: Optional[Sequence[int]] = None) -> Tensor:
        if self.conv is not None:
            x = self.conv(x)
        if self.level_diff > 0:
            return self.pool(x)
        if self.level_diff < 0:
            return F.interpolate(x, size=tuple(size), mode='nearest')
        return x
