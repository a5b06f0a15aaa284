from .mbconv import MBConv, SqueezeExcite
from .padding import resolve_padding, same_padding_conv_cfg
from .separable_conv import SeparableConvModule, pointwise_conv

__all__ = [
    'MBConv', 'SqueezeExcite', 'SeparableConvModule', 'pointwise_conv', 'resolve_padding',
    'same_padding_conv_cfg'
]
