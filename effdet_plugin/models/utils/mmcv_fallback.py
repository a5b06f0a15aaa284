"""Pure PyTorch stand-ins for the mmcv CUDA kernels that a CPU-built mmcv lacks.

A CPU wheel of mmcv runs on a CUDA machine, but its ``nms`` and ``sigmoid_focal_loss`` raise
on CUDA tensors. :class:`~effdet_plugin.models.dense_heads.EffDetHead` asks
:func:`needs_mmcv_fallback` once and then runs NMS on the CPU and the focal loss in PyTorch
(:class:`OneHotTargets`), with one log line.
"""
import logging
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log


def mmcv_has_cuda_ops() -> bool:
    """Whether mmcv's compiled ops were built with CUDA."""
    from mmcv.ops import get_compiling_cuda_version
    return get_compiling_cuda_version() != 'not available'


def needs_mmcv_fallback(cuda_available: Optional[bool] = None,
                        mmcv_cuda: Optional[bool] = None) -> bool:
    """True on a CUDA machine whose mmcv has no CUDA kernels (arguments: for tests)."""
    cuda_available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if not cuda_available:
        return False
    return not (mmcv_has_cuda_ops() if mmcv_cuda is None else mmcv_cuda)


def log_fallback(owner: str) -> None:
    print_log(f'{owner}: mmcv was built without CUDA ops: NMS runs on the CPU and the sigmoid '
              'focal loss in PyTorch (install an mmcv CUDA wheel for the kernels)',
              logger='current', level=logging.WARNING)


class OneHotTargets(nn.Module):
    """A sigmoid classification loss called with one-hot targets, so that mmdet's
    ``FocalLoss`` takes its PyTorch path instead of mmcv's kernel on CUDA tensors.

    Args:
        loss (nn.Module): The loss; called as ``loss(pred, target_one_hot, ...)``.
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, pred: torch.Tensor, target: torch.Tensor, *args, **kwargs):
        if target.dim() == pred.dim() - 1:  # class indices, num_classes = background
            num_classes = pred.size(-1)
            target = F.one_hot(target, num_classes + 1)[..., :num_classes].to(pred.dtype)
        return self.loss(pred, target, *args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:  # use_sigmoid, loss_weight, ... of the wrapped loss
            return getattr(super().__getattr__('loss'), name)
