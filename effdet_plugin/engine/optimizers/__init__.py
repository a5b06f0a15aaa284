from .bf16_amp_optimizer_wrapper import BFloat16AmpOptimWrapper
from .frozen_summary_constructor import FrozenSummaryOptimWrapperConstructor

__all__ = ['BFloat16AmpOptimWrapper', 'FrozenSummaryOptimWrapperConstructor']
