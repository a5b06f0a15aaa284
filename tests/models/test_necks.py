"""EffBiFPN: topology, shapes for several variants, fusion modes, padding, parameter count."""
import effdet
import pytest
import torch
import torch.nn as nn
from effdet.config import fpn_config
from mmdet.registry import MODELS
from timm import layers as timm_layers

import effdet_plugin  # noqa: F401  (registers the components)
from effdet_plugin.models.necks import EffBiFPN, MaxPool2dSame, WeightedFusion, bifpn_topology
from effdet_plugin.models.necks.bifpn import NeckChannelsError
from effdet_plugin.models.utils import get_det_scale

B0_CHANNELS = [40, 112, 320]
B7_CHANNELS = [80, 224, 640]


def _feats(channels, height, width, batch=2, strides=(8, 16, 32)):
    """Backbone-like features: ceil division like TF-"same" stride-2 convs."""
    return [torch.randn(batch, c, -(-height // s), -(-width // s))
            for c, s in zip(channels, strides)]


@pytest.mark.parametrize('num_levels', [3, 4, 5, 6, 7])
def test_topology_matches_effdet(num_levels):
    ref = fpn_config.bifpn_config(min_level=3, max_level=3 + num_levels - 1).nodes
    ours = bifpn_topology(num_levels)
    assert [(n.level + 3, list(n.inputs)) for n in ours] == \
        [(n['feat_level'], list(n['inputs_offsets'])) for n in ref]


@pytest.mark.parametrize('num_levels', [2, 5, 9])
def test_topology_is_bidirectional(num_levels):
    nodes = bifpn_topology(num_levels)
    assert len(nodes) == 2 * (num_levels - 1)
    levels = list(range(num_levels)) + [n.level for n in nodes]
    for i, node in enumerate(nodes):
        assert all(inp < num_levels + i for inp in node.inputs)  # only earlier features
        # same-level features, then one from the neighbouring level
        assert all(levels[j] == node.level for j in node.inputs[:-1])
        assert abs(levels[node.inputs[-1]] - node.level) == 1
    # top-down then bottom-up: coarsest-1 .. finest, then finest+1 .. coarsest
    assert [n.level for n in nodes] == (list(reversed(range(num_levels - 1))) +
                                        list(range(1, num_levels)))
    with pytest.raises(ValueError):
        bifpn_topology(1)


@pytest.mark.parametrize('arch,channels,size', [
    ('d0', B0_CHANNELS, (128, 256)),
    ('d3', [48, 136, 384], (256, 128)),
    ('d7x', B7_CHANNELS, (256, 256)),
])
def test_shapes_per_arch(arch, channels, size):
    scale = get_det_scale(arch)
    neck = MODELS.build(dict(type='EffBiFPN', in_channels=channels, arch=arch)).eval()
    assert neck.out_channels == scale.fpn_channels
    assert neck.num_outs == scale.max_level - scale.min_level + 1
    assert len(neck.cells) == scale.fpn_repeats
    assert neck.fusion == scale.fusion
    with torch.no_grad():
        outs = neck(_feats(channels, *size, batch=1))
    assert len(outs) == neck.num_outs
    for out, stride in zip(outs, neck.strides):
        assert out.shape == (1, scale.fpn_channels, size[0] // stride, size[1] // stride)


def test_overrides_and_unpadded_input():
    neck = EffBiFPN(B0_CHANNELS, out_channels=24, num_repeats=2, max_level=6, fusion='softmax')
    assert (neck.out_channels, len(neck.cells), neck.num_outs) == (24, 2, 4)
    # 100x140 is not a multiple of 2^6: levels are ceil-halved and still line up
    outs = neck(_feats(B0_CHANNELS, 100, 140))
    assert [tuple(o.shape[-2:]) for o in outs] == [(13, 18), (7, 9), (4, 5), (2, 3)]
    assert all(o.shape[:2] == (2, 24) for o in outs)


def test_backward_reaches_every_parameter():
    neck = EffBiFPN(B0_CHANNELS, out_channels=16, num_repeats=2)
    outs = neck(_feats(B0_CHANNELS, 128, 128))
    sum(o.mean() for o in outs).backward()
    missing = [n for n, p in neck.named_parameters() if p.grad is None]
    assert not missing
    assert neck.cells[0].nodes[0].fusion.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('fusion,num_params', [('fast', 2), ('softmax', 2), ('sum', 0)])
def test_fusion_mode_selects_module(fusion, num_params):
    neck = EffBiFPN(B0_CHANNELS, out_channels=16, num_repeats=1, fusion=fusion)
    node = neck.cells[0].nodes[0]
    assert isinstance(node.fusion, WeightedFusion) and node.fusion.mode == fusion
    assert sum(p.numel() for p in node.fusion.parameters()) == num_params


def test_weighted_fusion_math():
    xs = [torch.full((1, 1, 2, 2), v) for v in (1.0, 2.0, 4.0)]
    fast = WeightedFusion(3, 'fast')
    fast.weight.data = torch.tensor([1.0, -1.0, 3.0])  # relu drops the negative weight
    assert torch.allclose(fast(xs), torch.full((1, 1, 2, 2), (1 + 12) / (4 + 1e-4)))
    soft = WeightedFusion(3, 'softmax')
    soft.weight.data = torch.tensor([0.0, 0.0, 0.0])
    assert torch.allclose(soft(xs), torch.full((1, 1, 2, 2), 7 / 3))
    assert torch.equal(WeightedFusion(3, 'sum')(xs), torch.full((1, 1, 2, 2), 7.0))
    with pytest.raises(ValueError):
        WeightedFusion(2, 'attention')


@pytest.mark.parametrize('size', [(8, 8), (7, 9), (1, 2)])
def test_same_max_pool_matches_timm(size):
    x = torch.randn(2, 3, *size)
    ref = timm_layers.create_pool2d('max', kernel_size=3, stride=2, padding='same')(x)
    assert torch.equal(MaxPool2dSame(3, 2)(x), ref)


def test_pool_padding_option():
    x = torch.arange(16.).reshape(1, 1, 4, 4)
    same = EffBiFPN(B0_CHANNELS, num_repeats=1, pool_padding='same').extra_levels[1].pool
    sym = EffBiFPN(B0_CHANNELS, num_repeats=1, pool_padding='symmetric').extra_levels[1].pool
    # TF "same" pads bottom/right only: windows start at 0 and see rows/cols 0..2
    assert same(x).flatten().tolist() == [10., 11., 14., 15.]
    assert sym(x).flatten().tolist() == [5., 7., 13., 15.]
    with pytest.raises(ValueError):
        EffBiFPN(B0_CHANNELS, pool_padding='reflect')


def test_extra_levels_and_input_resampling():
    neck = EffBiFPN(B0_CHANNELS, arch='d0')
    # P6: 1x1 conv+BN (320 -> 64) and pool; P7: pool only
    assert neck.extra_levels[0].conv is not None and neck.extra_levels[1].conv is None
    assert isinstance(neck.extra_levels[0].pool[0], MaxPool2dSame)
    # first cell resamples backbone inputs on every edge; later cells never do
    first = [r.conv is not None for node in neck.cells[0].nodes for r in node.resample]
    later = [r.conv is not None for node in neck.cells[1].nodes for r in node.resample]
    assert sum(first) == 5 and not any(later)
    # pre-activation: Swish (SiLU) before the separable conv, which ends on a norm
    node = neck.cells[0].nodes[0]
    assert isinstance(node.act, nn.SiLU)
    assert node.conv.pointwise_conv.with_norm and not node.conv.pointwise_conv.with_activation


def test_input_count_checked():
    neck = EffBiFPN(B0_CHANNELS, num_repeats=1)
    with pytest.raises(ValueError):
        neck(_feats(B0_CHANNELS, 128, 128)[:2])
    with pytest.raises(ValueError):
        EffBiFPN([8] * 6, max_level=7)


def test_in_channels_not_fitting_the_backbone_name_both_and_the_fix():
    """A B2 backbone under a neck configured for B0: a clear error at the first forward (was a
    conv RuntimeError naming no config key)."""
    backbone = MODELS.build(dict(type='EffNet', arch='b2', init_cfg=None)).eval()
    neck = EffBiFPN([40, 112, 320], num_repeats=1)
    assert list(backbone.out_channels) != [40, 112, 320]
    with torch.no_grad(), pytest.raises(NeckChannelsError) as error:
        neck(backbone(torch.randn(1, 3, 64, 64)))
    widths = list(backbone.out_channels)
    assert str(error.value) == (
        f'neck in_channels=[40, 112, 320] do not match the backbone, whose outputs have '
        f"{widths} channels: set neck.in_channels={widths} (the backbone's out_channels), or "
        'choose the backbone outputs (out_indices) for this neck')


def test_d0_param_count_matches_effdet():
    ref = effdet.create_model('tf_efficientdet_d0', pretrained=False, pretrained_backbone=False)
    neck = EffBiFPN(ref.backbone.feature_info.channels(), arch='d0')
    count = sum(p.numel() for p in neck.parameters())
    assert count == sum(p.numel() for p in ref.fpn.parameters()) == 196281
    # without the TF model's redundant conv biases the neck is slimmer
    slim = EffBiFPN(B0_CHANNELS, arch='d0', redundant_bias=False)
    assert sum(p.numel() for p in slim.parameters()) < count
