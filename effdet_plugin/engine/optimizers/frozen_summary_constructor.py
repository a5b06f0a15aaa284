"""An optimizer constructor that reports frozen parameters in one line, not one per tensor."""
import logging
from typing import List

import torch.nn as nn
from mmengine.logging import MMLogger, print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

_SKIPPED = 'is skipped since its requires_grad=False'


class _CollectSkipped(logging.Filter):
    """Swallow mmengine's per-parameter "skipped" warnings, keeping the parameter names."""

    def __init__(self) -> None:
        super().__init__()
        self.names: List[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _SKIPPED in message:
            self.names.append(message.split(' ', 1)[0])
            return False
        return True


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FrozenSummaryOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor, with frozen parameters summarised in one log line.

    mmengine logs a warning for every parameter tensor with ``requires_grad=False`` (about a
    hundred for a backbone with frozen stages). Freezing is deliberate here
    (``frozen_stages``), so this logs ``N frozen parameter tensors (M values) not optimised:
    <modules>`` once instead. Everything else is mmengine's ``DefaultOptimWrapperConstructor``.
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        logger = MMLogger.get_current_instance()
        collect = _CollectSkipped()
        logger.addFilter(collect)
        try:
            optim_wrapper = super().__call__(model)
        finally:
            logger.removeFilter(collect)
        if collect.names:
            frozen = [p for p in model.parameters() if not p.requires_grad]
            modules = sorted({'.'.join(n.split('.')[:3]) for n in collect.names})
            print_log(f'{len(collect.names)} frozen parameter tensors '
                      f'({sum(p.numel() for p in frozen)} values) not optimised: '
                      f'{", ".join(modules)}', logger='current')
        return optim_wrapper
