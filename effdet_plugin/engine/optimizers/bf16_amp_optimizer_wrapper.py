"""Mixed precision in bfloat16, for devices where mmengine's fp16 ``AmpOptimWrapper`` is not
available (it asserts a GPU/NPU/MLU), CPUs above all."""
from contextlib import contextmanager

import torch
import torch.nn as nn
from mmengine.device import get_device
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from mmengine.runner.amp import autocast


@OPTIM_WRAPPERS.register_module()
class BFloat16AmpOptimWrapper(OptimWrapper):
    """Run forward passes under ``torch.autocast(dtype=torch.bfloat16)`` on the current device.

    bfloat16 keeps float32's exponent range, so unlike fp16 it needs no loss scaling and this
    wrapper updates parameters exactly like :class:`OptimWrapper`. ``tools/train.py --amp``
    selects it when no CUDA device is present; on CUDA it keeps mmengine's fp16
    ``AmpOptimWrapper`` with dynamic loss scaling.

    Args:
        **kwargs: Passed to :class:`OptimWrapper` (``optimizer``, ``clip_grad``,
            ``accumulative_counts``).
    """

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Gradient-accumulation context of :class:`OptimWrapper` plus bf16 autocast."""
        with super().optim_context(model), autocast(device_type=get_device(),
                                                    dtype=torch.bfloat16):
            yield
