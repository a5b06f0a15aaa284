from .mbconv import MBConv, SqueezeExcite, same_padding_conv_cfg

__all__ = ['MBConv', 'SqueezeExcite', 'same_padding_conv_cfg']
