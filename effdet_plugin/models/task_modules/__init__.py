from .anchor_generator import EffDetAnchorGenerator

__all__ = ['EffDetAnchorGenerator']
