from .effdet_multitask import EffDetMultiTask

__all__ = ['EffDetMultiTask']
