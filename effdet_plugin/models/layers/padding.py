"""Padding styles: PyTorch's symmetric padding and TensorFlow's 'SAME'."""
from typing import Tuple

from mmdet.utils import OptConfigType

ADAPTIVE_CONV = 'Conv2dAdaptivePadding'


def same_padding_conv_cfg(conv_cfg: OptConfigType, padding: str) -> OptConfigType:
    """Conv config for a padding style: ``'symmetric'`` (PyTorch) or ``'tf_same'`` (TF 'SAME')."""
    if padding == 'tf_same':
        return dict(type=ADAPTIVE_CONV)
    if padding != 'symmetric':
        raise ValueError(f"padding must be 'symmetric' or 'tf_same', got {padding!r}")
    return conv_cfg


def resolve_padding(conv_cfg: OptConfigType, kernel_size: int,
                    stride: int = 1) -> Tuple[OptConfigType, int]:
    """Conv config and explicit padding of one conv.

    TF 'SAME' padding depends on the input size only for strided convs; with stride 1 and an
    odd kernel it is the symmetric ``kernel_size // 2``. Those convs become plain convs with
    static padding, identical in output and state dict, which saves an ``F.pad`` copy of the
    input per conv (the stride-1 depthwise convs of every MBConv). Strided convs keep mmcv's
    ``Conv2dAdaptivePadding``, which pads at run time.

    Args:
        conv_cfg (dict, optional): Conv config as given to the layer.
        kernel_size (int): Kernel size.
        stride (int): Stride. Defaults to 1.

    Returns:
        tuple[dict | None, int]: The conv config to build and its ``padding`` argument.
    """
    if conv_cfg is not None and conv_cfg.get('type') == ADAPTIVE_CONV:
        if stride == 1 and kernel_size % 2 == 1:
            return None, kernel_size // 2
        return conv_cfg, 0
    return conv_cfg, kernel_size // 2
