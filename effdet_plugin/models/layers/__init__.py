from .mbconv import MBConv, SqueezeExcite
from .padding import resolve_padding, same_padding_conv_cfg

__all__ = ['MBConv', 'SqueezeExcite', 'resolve_padding', 'same_padding_conv_cfg']
