"""Padding resolution (static padding only where it equals TF 'SAME'); the separable conv
shared by the BiFPN, the detection head and the segmentation head."""
import pytest
import torch
from mmcv.cnn import build_conv_layer

from effdet_plugin.models.layers import (
    SeparableConvModule,
    resolve_padding,
    same_padding_conv_cfg,
)

TF_SAME = same_padding_conv_cfg(None, 'tf_same')


@pytest.mark.parametrize('kernel_size', [1, 3, 5])
@pytest.mark.parametrize('size', [(17, 24), (32, 31)])
def test_stride_one_static_padding_equals_tf_same(kernel_size, size):
    cfg, padding = resolve_padding(TF_SAME, kernel_size)
    assert cfg is None and padding == kernel_size // 2
    adaptive = build_conv_layer(TF_SAME, 4, 6, kernel_size)
    static = build_conv_layer(cfg, 4, 6, kernel_size, padding=padding)
    static.load_state_dict(adaptive.state_dict())
    x = torch.randn(1, 4, *size)
    assert torch.equal(static(x), adaptive(x))


def test_strided_and_even_kernels_stay_adaptive():
    assert resolve_padding(TF_SAME, 3, stride=2) == (TF_SAME, 0)
    assert resolve_padding(TF_SAME, 2) == (TF_SAME, 0)
    assert resolve_padding(None, 5, stride=2) == (None, 2)
    with pytest.raises(ValueError, match="'symmetric' or 'tf_same'"):
        same_padding_conv_cfg(None, 'same')


@pytest.mark.parametrize('conv_cfg', [None, TF_SAME])
def test_separable_conv_bias_only_on_pointwise(conv_cfg):
    conv = SeparableConvModule(4, 6, 3, bias=True, conv_cfg=conv_cfg,
                               norm_cfg=dict(type='BN'), act_cfg=dict(type='SiLU'))
    # the key names the effdet converter maps onto; no depthwise bias (official layout)
    assert sorted(k for k in conv.state_dict() if 'bn' not in k) == [
        'depthwise_conv.conv.weight', 'pointwise_conv.conv.bias', 'pointwise_conv.conv.weight']
    assert conv(torch.randn(2, 4, 7, 10)).shape == (2, 6, 7, 10)
    no_norm_bias = SeparableConvModule(4, 6, norm_cfg=dict(type='BN'))
    assert no_norm_bias.pointwise_conv.conv.bias is None  # 'auto': the norm carries it
