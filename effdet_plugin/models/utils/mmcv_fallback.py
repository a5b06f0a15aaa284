"""Pure PyTorch stand-ins for the mmcv CUDA kernels that a CPU-built mmcv lacks.

A CPU wheel of mmcv runs on a CUDA machine, but its ``nms``, ``roi_align`` and
``sigmoid_focal_loss`` raise on CUDA tensors. Two levels of fallback:

- :class:`~effdet_plugin.models.dense_heads.EffDetHead` asks :func:`needs_mmcv_fallback` once
  and then runs NMS on the CPU and the focal loss in PyTorch (:class:`OneHotTargets`);
- :func:`enable_mmcv_fallback`, called by the tools (and the GPU check), gives every mmdet
  model the kernels our configs reach (docs/gpu.md lists them per config): CUDA tensors go to
  torchvision's CUDA ``nms`` / ``roi_align`` and a PyTorch sigmoid focal loss, CPU tensors to
  mmcv's own kernels. It logs one line saying so.
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


def sigmoid_focal_loss_elementwise(pred: torch.Tensor, target: torch.Tensor,
                                   weight: torch.Tensor, gamma: float,
                                   alpha: float) -> torch.Tensor:
    """What mmcv's ``sigmoid_focal_loss_forward`` kernel writes: the loss of every logit of
    ``pred`` (N, C) for class-index targets (C = background), times ``weight[target]`` when
    ``weight`` is not empty."""
    pred = pred.float()
    one_hot = F.one_hot(target.long(), pred.size(1) + 1)[:, :pred.size(1)].to(pred.dtype)
    p = pred.sigmoid()
    positive = -alpha * (1 - p).pow(gamma) * F.logsigmoid(pred)
    negative = -(1 - alpha) * p.pow(gamma) * F.logsigmoid(-pred)
    loss = one_hot * positive + (1 - one_hot) * negative
    if weight.numel() > 0:
        loss = loss * weight[target.long()].unsqueeze(1)
    return loss


class FallbackExt:
    """mmcv's compiled extension module, with the ops our configs reach answered in PyTorch
    for tensors on ``device_type``; everything else, and other devices, go to mmcv.

    Args:
        ext: mmcv's ``_ext`` module.
        device_type (str): Tensors on this device take the fallback. Defaults to 'cuda'.
    """

    def __init__(self, ext, device_type: str = 'cuda') -> None:
        self._ext = ext
        self._device_type = device_type

    def __getattr__(self, name: str):
        return getattr(self._ext, name)

    def _takes(self, tensor: torch.Tensor) -> bool:
        return tensor.device.type == self._device_type

    def nms(self, boxes, scores, iou_threshold, offset):
        if not self._takes(boxes):
            return self._ext.nms(boxes, scores, iou_threshold=iou_threshold, offset=offset)
        if offset == 0:
            from torchvision.ops import nms
            return nms(boxes.float(), scores.float(), float(iou_threshold))
        keep = self._ext.nms(boxes.float().cpu(), scores.float().cpu(),
                             iou_threshold=iou_threshold, offset=offset)
        return keep.to(boxes.device)

    def roi_align_forward(self, input, rois, output, argmax_y, argmax_x, aligned_height,
                          aligned_width, spatial_scale, sampling_ratio, pool_mode, aligned):
        if not self._takes(input):
            return self._ext.roi_align_forward(
                input, rois, output, argmax_y, argmax_x, aligned_height=aligned_height,
                aligned_width=aligned_width, spatial_scale=spatial_scale,
                sampling_ratio=sampling_ratio, pool_mode=pool_mode, aligned=aligned)
        output.copy_(self._tv_roi_align(input, rois, aligned_height, aligned_width,
                                        spatial_scale, sampling_ratio, pool_mode, aligned))

    def roi_align_backward(self, grad_output, rois, argmax_y, argmax_x, grad_input,
                           aligned_height, aligned_width, spatial_scale, sampling_ratio,
                           pool_mode, aligned):
        if not self._takes(grad_output):
            return self._ext.roi_align_backward(
                grad_output, rois, argmax_y, argmax_x, grad_input,
                aligned_height=aligned_height, aligned_width=aligned_width,
                spatial_scale=spatial_scale, sampling_ratio=sampling_ratio,
                pool_mode=pool_mode, aligned=aligned)
        # RoIAlign is linear in its input: the gradient of <output, grad> at any input
        with torch.enable_grad():
            x = torch.zeros_like(grad_input, requires_grad=True)
            out = self._tv_roi_align(x, rois, aligned_height, aligned_width, spatial_scale,
                                     sampling_ratio, pool_mode, aligned)
            grad_input.copy_(torch.autograd.grad(out, x, grad_output)[0])

    @staticmethod
    def _tv_roi_align(input, rois, height, width, spatial_scale, sampling_ratio, pool_mode,
                      aligned):
        if pool_mode != 1:  # mmcv: 0 = max, 1 = avg; torchvision averages
            raise NotImplementedError(
                "RoIAlign(pool_mode='max') has no fallback: build mmcv with its CUDA ops")
        from torchvision.ops import roi_align
        return roi_align(input, rois.to(input.dtype), (height, width), spatial_scale,
                         sampling_ratio, aligned)

    def sigmoid_focal_loss_forward(self, input, target, weight, output, gamma, alpha):
        if not self._takes(input):
            return self._ext.sigmoid_focal_loss_forward(
                input, target, weight, output, gamma=gamma, alpha=alpha)
        output.copy_(sigmoid_focal_loss_elementwise(input, target, weight, gamma, alpha))

    def sigmoid_focal_loss_backward(self, input, target, weight, grad_input, gamma, alpha):
        if not self._takes(input):
            return self._ext.sigmoid_focal_loss_backward(
                input, target, weight, grad_input, gamma=gamma, alpha=alpha)
        with torch.enable_grad():
            x = input.detach().requires_grad_()
            loss = sigmoid_focal_loss_elementwise(x, target, weight, gamma, alpha).sum()
            grad_input.copy_(torch.autograd.grad(loss, x)[0])


# the mmcv.ops modules whose kernels our configs reach, each holding its own ext_module
FALLBACK_MODULES = ('mmcv.ops.nms', 'mmcv.ops.roi_align', 'mmcv.ops.focal_loss')


def enable_mmcv_fallback(force: bool = False, device_type: str = 'cuda') -> str:
    """On a CUDA machine whose mmcv has no CUDA kernels, route mmcv's ``nms``, ``roi_align``
    and ``sigmoid_focal_loss`` for CUDA tensors to :class:`FallbackExt`. Idempotent.

    Args:
        force (bool): Install it whatever the machine (tests). Defaults to False.
        device_type (str): The device whose tensors take the fallback. Defaults to 'cuda'.

    Returns:
        str: What was routed, for a log line; empty when nothing was needed.
    """
    if not (force or needs_mmcv_fallback()):
        return ''
    import importlib
    for name in FALLBACK_MODULES:
        module = importlib.import_module(name)
        ext = module.ext_module
        if isinstance(ext, FallbackExt):
            ext = ext._ext
        module.ext_module = FallbackExt(ext, device_type)
    routed = (f'mmcv has no {device_type.upper()} kernels: nms and roi_align run in '
              'torchvision, the sigmoid focal loss in PyTorch (soft-NMS runs on the CPU in mmcv '
              'itself)')
    print_log(routed, logger='current', level=logging.WARNING)
    return routed


def disable_mmcv_fallback() -> None:
    """Undo :func:`enable_mmcv_fallback`."""
    import importlib
    for name in FALLBACK_MODULES:
        module = importlib.import_module(name)
        if isinstance(module.ext_module, FallbackExt):
            module.ext_module = module.ext_module._ext
