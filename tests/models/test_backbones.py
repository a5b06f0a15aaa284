"""EffNet: every arch, compound scaling, layer indexing, freezing, norms, drop path,
activation checkpointing, padding, precision and input validation."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmcv.cnn.bricks import DropPath
from mmdet.registry import MODELS
from mmengine.model import revert_sync_batchnorm
from torch.nn.modules.batchnorm import _BatchNorm

import effdet_plugin  # noqa: F401  (registers the components)
from effdet_plugin.deploy.random_weights import randomize_bn_stats
from effdet_plugin.models.backbones import B0_STAGES, EffNet, list_archs
from effdet_plugin.models.utils import get_net_scale, round_filters, round_repeats

LAYER_STRIDES = (2, 2, 4, 8, 16, 16, 32, 32, 32)
ALL = tuple(range(EffNet.num_layers))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _ceil(size, stride):
    return -(-size // stride)


def _stage_repeats(model):
    return [len(stage) for stage in model.layers[1:EffNet.num_layers - 1]]


# ------------------------------------------------------------------------------ archs, scaling
@pytest.mark.parametrize('arch', list_archs())
def test_every_arch_out_channels_match_outputs(arch):
    # Meta device: shapes of the full forward (l2 has 480M parameters) at no memory cost.
    with torch.device('meta'):
        model = MODELS.build(dict(type='EffNet', arch=arch, out_indices=ALL)).eval()
        outs = model(torch.empty(1, 3, 65, 49))
    assert model.strides == LAYER_STRIDES
    assert tuple(o.shape[1] for o in outs) == model.out_channels == model.layer_channels
    assert [tuple(o.shape[2:]) for o in outs] == [(_ceil(65, s), _ceil(49, s))
                                                 for s in LAYER_STRIDES]


@pytest.mark.parametrize('arch', ['b0', 'lite0'])
def test_real_forward_default_outputs(arch):
    model = EffNet(arch).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 64, 64))
    assert model.out_indices == (3, 5, 7) and model.strides == (8, 16, 32)
    assert [o.shape[1] for o in outs] == list(model.out_channels) == [40, 112, 320]
    assert [o.shape[-1] for o in outs] == [8, 4, 2]


def test_phi_2_5_follows_the_formula():
    model = EffNet(2.5, out_indices=ALL)
    width, depth = 1.1**2.5, 1.2**2.5
    assert _stage_repeats(model) == [round_repeats(s.repeats, depth) for s in B0_STAGES]
    assert model.layer_channels[1:-1] == tuple(
        round_filters(s.out_channels, width) for s in B0_STAGES)
    assert model.resolution == get_net_scale(2.5).resolution
    # Between phi=2 and phi=3 in size (the released b2/b3 use rounded, smaller coefficients).
    phi2, phi3 = (sum(p.numel() for p in EffNet(phi, out_indices=ALL).parameters())
                  for phi in (2, 3))
    assert phi2 < sum(p.numel() for p in model.parameters()) < phi3


def test_scaling_overrides_change_widths_and_depths():
    base = EffNet(2.0, out_indices=ALL)
    wider = EffNet(2.0, out_indices=ALL, scaling=dict(beta=1.3))
    deeper = EffNet(2.0, out_indices=ALL, scaling=dict(alpha=1.5))
    assert all(w > b for w, b in zip(wider.layer_channels, base.layer_channels))
    assert _stage_repeats(wider) == _stage_repeats(base)
    assert sum(_stage_repeats(deeper)) > sum(_stage_repeats(base))
    assert deeper.layer_channels == base.layer_channels
    assert EffNet(2.0, scaling=dict(gamma=1.3)).resolution > base.resolution


def test_round_filters_never_below_90_percent():
    for width in np.linspace(0.25, 4.3, 82):
        for channels in list(range(1, 129)) + [s.out_channels for s in B0_STAGES] + [1280]:
            rounded = round_filters(channels, float(width))
            assert rounded % 8 == 0 and rounded >= 0.9 * channels * width, (channels, width)


# ------------------------------------------------------------------------------ layers
def test_out_indices_all_layers_and_negative():
    model = EffNet('b0', out_indices=ALL).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert model.layer_strides == LAYER_STRIDES
    assert [64 // o.shape[-1] for o in outs] == list(LAYER_STRIDES)
    assert EffNet('b0', out_indices=(-1, -2)).out_indices == (8, 7)


@pytest.mark.parametrize('frozen', [-1, 0, 3, 8])
def test_frozen_stages(frozen):
    model = randomize_bn_stats(EffNet('b0', frozen_stages=frozen, out_indices=ALL))
    model.train()
    for i, layer in enumerate(model.layers):
        is_frozen = i <= frozen
        assert all(p.requires_grad != is_frozen for p in layer.parameters()), i
        assert all(m.training != is_frozen for m in layer.modules()), i
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = sum(o.mean() for o in model(torch.randn(2, 3, 64, 64)))
    assert loss.requires_grad == (frozen < 8)
    if loss.requires_grad:
        loss.backward()
    for key, value in model.state_dict().items():
        layer = int(key.split('.')[1])
        if 'running_mean' in key:  # frozen BN keeps its statistics, the others update
            assert torch.equal(value, before[key]) == (layer <= frozen), key
    grads = [p.grad is not None for p in model.layers[frozen + 1:].parameters()]
    assert all(grads) and not any(p.grad is not None for p in
                                  model.layers[:frozen + 1].parameters())


@pytest.mark.parametrize('norm_cfg', [dict(type='BN'), dict(type='GN', num_groups=8)])
def test_norm_eval(norm_cfg):
    model = EffNet('b0', norm_cfg=norm_cfg, norm_eval=True)
    norms = [m for m in model.modules() if isinstance(m, (_BatchNorm, nn.GroupNorm))]
    assert norms and len(norms) == len([m for m in model.modules()
                                        if isinstance(m, type(norms[0]))])
    model.train()
    assert not any(m.training for m in norms)
    assert all(p.requires_grad for p in model.parameters())  # eval mode, not frozen
    before = [b.clone() for b in model.buffers()]
    model(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(a, b) for a, b in zip(before, model.buffers()))


def test_syncbn_builds_norm_eval_and_reverts_to_bn_on_cpu():
    model = EffNet('b0', norm_cfg=dict(type='SyncBN'), norm_eval=True, out_indices=ALL)
    sync = [m for m in model.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert len(sync) == 2 + 15 * 3 + 2  # stem, head; 15 blocks with expansion, 1 without
    model.train()
    assert not any(m.training for m in sync)  # norm_eval covers SyncBN
    model = revert_sync_batchnorm(model)  # how a CPU / single-process run uses SyncBN cfgs
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    model.train()
    assert not any(m.training for m in model.modules() if isinstance(m, _BatchNorm))
    assert [o.shape[1] for o in model(torch.randn(1, 3, 64, 64))] == list(model.layer_channels)


def test_drop_path_grows_linearly():
    model = EffNet('b0', drop_path_rate=0.2)
    blocks = [b for stage in model.layers[1:8] for b in stage]
    rates = [b.drop_path.drop_prob if isinstance(b.drop_path, DropPath) else 0. for b in blocks]
    assert len(rates) == 16
    np.testing.assert_allclose(rates, [0.2 * i / 16 for i in range(16)])
    model = EffNet('b0', drop_path_rate=0.)
    assert not any(isinstance(m, DropPath) for m in model.modules())


def test_with_cp_equal_gradients_and_bn_stats():
    models = [EffNet('b0', out_indices=ALL, drop_path_rate=0.2, with_cp=cp) for cp in (0, 1)]
    models[1].load_state_dict(models[0].state_dict())
    x = torch.randn(2, 3, 32, 32)
    for model in models:
        model.train()
        torch.manual_seed(1)  # same drop-path draws; checkpointing replays the RNG state
        sum(o.square().mean() for o in model(x.clone().requires_grad_())).backward()
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-6, msg=name)
    # The backward-time recomputation must not count the batch twice in BN statistics.
    for (name, a), b in zip(models[0].named_buffers(), models[1].buffers()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize('size', [(33, 47), (65, 49), (97, 101)])
@pytest.mark.parametrize('padding', ['tf_same', 'symmetric'])
def test_output_sizes_for_odd_inputs(size, padding):
    model = EffNet('b0', padding=padding, out_indices=ALL).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    assert [tuple(o.shape[2:]) for o in outs] == [(_ceil(size[0], s), _ceil(size[1], s))
                                                 for s in LAYER_STRIDES]


def test_tf_same_pads_asymmetrically():
    sym = EffNet('b0', out_indices=(0, ), init_cfg=None).eval()
    tf = EffNet('b0', padding='tf_same', out_indices=(0, ), init_cfg=None).eval()
    tf.load_state_dict(sym.state_dict())
    assert type(tf.layers[0].conv).__name__ == 'Conv2dAdaptivePadding'
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)  # even size: TF pads 0 before, 1 after
        assert not torch.allclose(sym(x)[0], tf(x)[0])
        shifted = nn.functional.pad(x, (-1, 1, -1, 1))
        torch.testing.assert_close(sym(shifted)[0][..., 1:, 1:], tf(x)[0][..., 1:, 1:])


def test_explicit_conv_cfg_keeps_symmetric_padding():
    model = EffNet('b0', conv_cfg=dict(type='Conv2d'), out_indices=ALL).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [64 // o.shape[-1] for o in outs] == list(LAYER_STRIDES)


def test_channels_last_and_bf16_autocast():
    model = randomize_bn_stats(EffNet('b0', out_indices=ALL)).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        cl = model(x.to(memory_format=torch.channels_last))
        with torch.autocast('cpu', dtype=torch.bfloat16):
            bf = model(x)
    for r, c, b in zip(ref, cl, bf):
        torch.testing.assert_close(c, r, rtol=1e-4, atol=1e-5)
        assert b.dtype == torch.bfloat16
        rel = ((b.float() - r).norm() / r.norm()).item()
        assert rel < 0.03, rel


# ------------------------------------------------------------------------------ bad input
def test_unknown_arch_lists_names_and_phi():
    with pytest.raises(KeyError) as e:
        EffNet('b9')
    msg = str(e.value)
    assert all(a in msg for a in list_archs()) and 'phi' in msg and '2.5' in msg
    with pytest.raises(ValueError, match='phi'):
        EffNet(-1.0)


@pytest.mark.parametrize('kwargs,match', [
    (dict(out_indices=(3, 9)), r'out_indices.*\[0, 8\]'),
    (dict(out_indices=(-10, )), 'out_indices'),
    (dict(out_indices=()), 'out_indices'),
    (dict(frozen_stages=9), 'frozen_stages=9'),
    (dict(frozen_stages=-2), 'frozen_stages=-2'),
    (dict(padding='same'), "'symmetric' or 'tf_same'"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EffNet('b0', **kwargs)


@pytest.mark.parametrize('shape,kwargs,match', [
    ((1, 1, 64, 64), {}, r'in_channels=1'),
    ((1, 3, 64, 64), dict(in_channels=4), r'\(N, 4, H, W\)'),
    ((3, 64, 64), {}, r'\(N, 3, H, W\)'),
    ((1, 3, 16, 40), {}, r'smaller than the stride 32'),
    ((1, 3, 8, 16), dict(out_indices=(0, 1, 2, 3, 4)), 'stride 16'),
])
def test_bad_input_raised_before_compute(shape, kwargs, match):
    model = EffNet('b0', **kwargs)
    calls = []
    model.layers[0].register_forward_pre_hook(lambda *_: calls.append(1))
    with pytest.raises(ValueError, match=match):
        model(torch.randn(*shape))
    assert calls == []


def test_small_input_ok_for_shallow_outputs_and_other_in_channels():
    model = EffNet('b0', out_indices=(0, 1, 2, 3), in_channels=1).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 1, 8, 8))
    assert [o.shape[-1] for o in outs] == [4, 4, 2, 1]
    assert math.isclose(model.strides[-1], 8)
