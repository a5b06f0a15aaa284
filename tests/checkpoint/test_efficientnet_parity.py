"""Converted weights reproduce the source network at every EffNet layer (0 stem .. 8 head).

Sources are randomly initialised (pretrained=False, nothing downloads) with random BN running
statistics, so a swapped or dropped tensor anywhere shows up as a difference.
"""
import pytest
import timm
import torch
import torchvision

from benchmarks.parity import converted_pair, layer_diffs, reference_layers
from effdet_plugin.checkpoint import convert_efficientnet
from effdet_plugin.models.backbones import EffNet

TOL = 1e-5


def _check(name, diffs):
    print(f'\n{name}: max abs diff per layer 0..8: ' + ' '.join(f'{d:.1e}' for d in diffs))
    assert len(diffs) == EffNet.num_layers
    assert max(diffs) <= TOL, f'{name}: layer {diffs.index(max(diffs))} differs by {max(diffs)}'


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _torchvision_parity(arch, size):
    net = getattr(torchvision.models, f'efficientnet_{arch}')()
    ours = converted_pair(net, 'torchvision')
    return layer_diffs(ours, reference_layers(net, 'torchvision'), torch.randn(1, 3, *size))


def test_torchvision_b0_parity():
    _check('torchvision b0', _torchvision_parity('b0', (64, 80)))


@pytest.mark.slow
@pytest.mark.parametrize('arch', ['b1', 'b2', 'b3', 'b4', 'b5', 'b6', 'b7'])
def test_torchvision_parity(arch):
    # Tiny, odd-sized input: the deepest layer is 1x2 pixels; odd sizes exercise the padding.
    _check(f'torchvision {arch}', _torchvision_parity(arch, (33, 47)))


@pytest.mark.parametrize('name,tf_ported', [('efficientnet_b0', False),
                                            ('tf_efficientnet_b0', True),
                                            ('tf_efficientnet_lite0', True)])
def test_timm_parity(name, tf_ported):
    net = timm.create_model(name, pretrained=False)
    ours = converted_pair(net, 'timm', tf_ported=tf_ported)
    assert ours.layers[0].conv.__class__.__name__ == (
        'Conv2dAdaptivePadding' if tf_ported else 'Conv2d')
    # Odd sizes: TF 'SAME' pads asymmetrically there, so a padding mix-up cannot hide.
    diffs = layer_diffs(ours, reference_layers(net, 'timm'), torch.randn(1, 3, 65, 49))
    _check(f'timm {name}', diffs)


def test_parity_detects_wrong_padding_and_eps():
    """The parity check is sensitive: TF weights with symmetric padding or the wrong BN eps
    give visible differences (so the zero diffs above are not vacuous)."""
    net = timm.create_model('tf_efficientnet_b0', pretrained=False)
    converted_pair(net, 'timm', tf_ported=True)  # randomises BN stats
    result = convert_efficientnet(net.state_dict(), 'timm', tf_ported=True)
    ref = reference_layers(net, 'timm')
    x = torch.randn(1, 3, 65, 49)
    for wrong in (dict(padding='symmetric', norm_cfg=dict(type='BN', eps=1e-3)),
                  dict(padding='tf_same', norm_cfg=dict(type='BN', eps=1e-5))):
        ours = EffNet('b0', out_indices=tuple(range(9)), **wrong).eval()
        ours.load_state_dict(result.state_dict)
        diffs = layer_diffs(ours, ref, x)
        print(f'\ntf_efficientnet_b0 with {wrong}: max diff {max(diffs):.1e}')
        assert max(diffs) > 1e-4


def test_detector_backbone_with_prefix():
    """efficientdet-pytorch's backbone: timm blocks under ``backbone.``, no head conv, next to
    neck/head keys. The head conv is reported missing; other modules are out of scope."""
    net = timm.create_model('tf_efficientnet_b0', pretrained=False, features_only=True)
    sd = {f'backbone.{k}': v for k, v in net.state_dict().items()}
    sd['fpn.cell.0.fnode.0.weight'] = torch.zeros(2)
    result = convert_efficientnet(sd, tf_ported=True)
    assert (result.source, result.prefix, result.arch) == ('timm', 'backbone.', 'b0')
    assert result.unexpected == [] and result.ignored == []
    assert result.missing and all(k.startswith('layers.8.') for k in result.missing)
