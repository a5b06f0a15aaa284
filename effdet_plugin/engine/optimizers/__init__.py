from .bf16_amp_optimizer_wrapper import BFloat16AmpOptimWrapper

__all__ = ['BFloat16AmpOptimWrapper']
