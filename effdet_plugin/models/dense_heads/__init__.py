from .effdet_head import EffDetHead

__all__ = ['EffDetHead']
