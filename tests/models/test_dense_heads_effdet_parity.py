"""Converted efficientdet-pytorch weights give the same raw outputs in EffBiFPN + EffDetHead.

effdet models are random (``pretrained=False``); every weight, norm affine and running
statistic is randomised so that a mis-mapped key cannot go unnoticed.
"""
import effdet
import pytest
import torch
import torch.nn as nn
from mmdet.registry import MODELS

import effdet_plugin  # noqa: F401  (registers the components)
from effdet_plugin.checkpoint import convert_effdet_state_dict
from tests.models.head_settings import official_settings

TOL = 1e-4


def _randomize(model: nn.Module, feats) -> None:
    """Random neck/head weights; norm statistics measured on ``feats`` (realistic scale)."""
    g = torch.Generator().manual_seed(1)
    for name, p in model.named_parameters():
        if name.startswith('backbone'):
            continue
        if p.dim() > 1:
            p.data = torch.randn(p.shape, generator=g) / p[0].numel()**0.5
        elif name.endswith('edge_weights'):
            p.data = torch.randn(p.shape, generator=g) + 0.5  # some < 0: the ReLU matters
        elif name.endswith('weight'):
            p.data = torch.rand(p.shape, generator=g) + 0.5
        else:
            p.data = torch.randn(p.shape, generator=g) * 0.1
    norms = [m for n, m in model.named_modules()
             if isinstance(m, nn.BatchNorm2d) and not n.startswith('backbone')]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over one batch = that batch's statistics
    model.train()
    with torch.no_grad():
        x = model.fpn(list(feats))
        model.class_net(x)
        model.box_net(x)
    model.eval()


def _box_to_xy(box: torch.Tensor) -> torch.Tensor:
    """effdet (ty, tx, th, tw) per anchor -> mmdet (dx, dy, dw, dh)."""
    return box.reshape(box.shape[0], -1, 4, *box.shape[2:])[:, :, [1, 0, 3, 2]].flatten(1, 2)


def _max_diffs(ours, ref):
    (cls, box), (ref_cls, ref_box) = ours, ref
    assert len(cls) == len(ref_cls) and len(box) == len(ref_box)
    d_cls = max((a - b).abs().max().item() for a, b in zip(cls, ref_cls))
    d_box = max((a - _box_to_xy(b)).abs().max().item() for a, b in zip(box, ref_box))
    return d_cls, d_box


def _check_neck_head_parity(name, arch, size, fusion=None, act_cfg=dict(type='SiLU'),
                            **overrides):
    config = effdet.get_efficientdet_config(name)
    config.image_size = size  # effdet resamples to sizes fixed at construction
    for key, value in overrides.items():
        setattr(config, key, value)
    ref = effdet.EfficientDet(config, pretrained_backbone=False)
    channels = ref.backbone.feature_info.channels()
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, c, size[0] // s, size[1] // s, generator=g)
             for c, s in zip(channels, (8, 16, 32))]
    _randomize(ref, feats)
    with torch.no_grad():
        fpn = ref.fpn(list(feats))
        ref_out = (ref.class_net(fpn), ref.box_net(fpn))

    det = nn.Module()
    det.neck = MODELS.build(dict(
        type='EffBiFPN', in_channels=channels, arch=arch, out_channels=config.fpn_channels,
        num_repeats=config.fpn_cell_repeats, max_level=config.max_level, fusion=fusion,
        act_cfg=act_cfg))
    det.bbox_head = MODELS.build(dict(
        type='EffDetHead', num_classes=config.num_classes, arch=arch,
        in_channels=config.fpn_channels, stacked_convs=config.box_class_repeats,
        act_cfg=act_cfg, **official_settings()))
    det.load_state_dict(convert_effdet_state_dict(ref.state_dict()), strict=True)
    det.eval()
    with torch.no_grad():
        ours = det.bbox_head(det.neck(feats))
    assert len(ours[0]) == config.max_level - config.min_level + 1
    d_cls, d_box = _max_diffs(ours, ref_out)
    assert d_cls < TOL and d_box < TOL, (d_cls, d_box)
    # a real check: outputs are far from zero and differ per level
    assert max(t.abs().max().item() for t in ref_out[0]) > 1.0


def test_d0_parity_non_square():
    _check_neck_head_parity('tf_efficientdet_d0', 'd0', (128, 256))


def test_softmax_fusion_parity():
    _check_neck_head_parity('tf_efficientdet_d0', 'd0', (128, 128), fusion='softmax',
                            fpn_name='bifpn_attn', fpn_cell_repeats=2, box_class_repeats=2)


def test_lite0_parity():
    """EfficientDet-Lite: ReLU6 and plain sum fusion (effdet's tf_efficientdet_lite*)."""
    _check_neck_head_parity('tf_efficientdet_lite0', 'lite0', (128, 128), fusion='sum',
                            act_cfg=dict(type='ReLU6'))


def test_d7x_style_parity():
    """D7x topology (6 levels P3-P8, plain sum fusion) at a reduced width and depth."""
    _check_neck_head_parity('tf_efficientdet_d7x', 'd7x', (256, 512),
                            backbone_name='tf_efficientnet_b0', fpn_channels=32,
                            fpn_cell_repeats=2, box_class_repeats=2)


@pytest.mark.slow
@pytest.mark.parametrize('name,arch', [('tf_efficientdet_d7x', 'd7x'),
                                       ('tf_efficientdet_d3', 'd3')])
def test_full_size_parity(name, arch):
    _check_neck_head_parity(name, arch, (256, 256))


def test_whole_d0_detector_parity_with_effnet_backbone():
    """Image in, raw outputs out: EffNet (TF padding) + neck + head vs tf_efficientdet_d0."""
    height, width = 128, 256
    ref = effdet.create_model('tf_efficientdet_d0', pretrained=False, pretrained_backbone=False,
                              image_size=(height, width)).eval()
    g = torch.Generator().manual_seed(1)
    for m in ref.modules():  # non-trivial norms everywhere, backbone included
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.1
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=g) * 0.1
    img = torch.randn(2, 3, height, width, generator=g)
    with torch.no_grad():
        ref_out = ref(img)

    det = nn.Module()
    det.backbone = MODELS.build(dict(type='EffNet', arch='b0', padding='tf_same'))
    det.neck = MODELS.build(
        dict(type='EffBiFPN', in_channels=det.backbone.out_channels, arch='d0'))
    det.bbox_head = MODELS.build(
        dict(type='EffDetHead', num_classes=90, arch='d0', **official_settings()))
    state = convert_effdet_state_dict(ref.state_dict(), with_backbone=True)
    result = det.load_state_dict(state, strict=False)
    assert not result.unexpected_keys
    # a detector backbone stops at the last stage: only EffNet's 1x1 head conv is left
    assert all(k.startswith('backbone.layers.8.') for k in result.missing_keys)
    det.eval()
    with torch.no_grad():
        ours = det.bbox_head(det.neck(det.backbone(img)))
    d_cls, d_box = _max_diffs(ours, ref_out)
    assert d_cls < TOL and d_box < TOL, (d_cls, d_box)


def test_converter_accepts_bench_checkpoints_and_rejects_unknown_layouts():
    config = effdet.get_efficientdet_config('tf_efficientdet_d0')
    config.image_size = (128, 128)
    ref = effdet.EfficientDet(config, pretrained_backbone=False)
    plain = convert_effdet_state_dict(ref.state_dict())
    bench = {f'model.{k}': v for k, v in ref.state_dict().items()}
    bench['anchors.boxes'] = torch.zeros(1, 4)
    wrapped = convert_effdet_state_dict({'state_dict': bench})
    assert list(wrapped) == list(plain)
    assert all(k.startswith(('neck.', 'bbox_head.')) for k in plain)
    # non-separable heads (separable_conv=False) have keys we do not know
    odd = dict(ref.state_dict())
    odd['class_net.conv_rep.0.conv.weight'] = torch.zeros(1)
    with pytest.raises(KeyError):
        convert_effdet_state_dict(odd)
