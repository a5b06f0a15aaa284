from .effdet_seg_head import EffDetSegHead

__all__ = ['EffDetSegHead']
