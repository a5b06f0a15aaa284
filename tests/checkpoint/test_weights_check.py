"""Weights of another architecture, or with NaN/inf, stop every load path with the keys named."""
import json

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules

from effdet_plugin.checkpoint import load_checkpoint
from effdet_plugin.checkpoint.weights_check import (
    NonFiniteWeightsError,
    WeightsCheckSettings,
    WeightsMismatchError,
    check_state_dict,
    non_finite_tensors,
)
from effdet_plugin.models.backbones import EffNet

register_all_modules()


def _model(tiny_det_cfg, base_channels: int = 8):
    cfg = tiny_det_cfg()
    cfg.model.backbone.update(base_channels=base_channels, stem_channels=base_channels)
    cfg.model.neck.in_channels = [base_channels * 2, base_channels * 4, base_channels * 8]
    return cfg, MODELS.build(cfg.model)


@pytest.fixture
def checkpoints(tiny_det_cfg, tmp_path):
    """A model's own checkpoint, one of a wider variant (same keys, other shapes), its
    backbone alone, and a copy of the own one with one NaN written into the file's bytes."""
    cfg, model = _model(tiny_det_cfg)
    _, wide = _model(tiny_det_cfg, base_channels=16)
    own = tmp_path / 'own.pth'
    torch.save(dict(state_dict=model.state_dict()), own)
    wide_file = tmp_path / 'wide.pth'
    torch.save(dict(state_dict=wide.state_dict()), wide_file)
    backbone = tmp_path / 'backbone.pth'
    torch.save(dict(state_dict={k[len('backbone.'):]: v for k, v in wide.state_dict().items()
                                if k.startswith('backbone.')}), backbone)
    # Flipped bytes: the first value of one tensor becomes NaN in the file itself.
    key = 'neck.fpn_convs.1.conv.weight'
    raw = own.read_bytes()
    pattern = model.state_dict()[key].flatten()[:4].numpy().tobytes()
    assert raw.count(pattern) == 1
    at = raw.index(pattern)
    flipped = tmp_path / 'flipped.pth'
    flipped.write_bytes(raw[:at] + b'\xff\xff\xff\x7f' + raw[at + 4:])
    return dict(cfg=cfg, model=model, own=own, wide=wide_file, backbone=backbone,
                flipped=flipped, nan_key=key)


def test_wrong_architecture_lists_first_keys_and_shapes(checkpoints):
    with pytest.raises(WeightsMismatchError) as info:
        load_checkpoint(checkpoints['model'], str(checkpoints['wide']))
    message = str(info.value)
    assert str(checkpoints['wide']) in message and 'does not fit RetinaNet' in message
    assert 'backbone.conv1.weight: model (8, 3, 7, 7), checkpoint (16, 3, 7, 7)' in message
    assert '90% needed' in message and 'weights_check.min_loaded' in message


def test_share_threshold_is_configurable(checkpoints):
    model = checkpoints['model']
    state = torch.load(checkpoints['wide'], weights_only=True)['state_dict']
    with pytest.raises(WeightsMismatchError):
        check_state_dict(model, state, 'wide')
    share = check_state_dict(model, state, 'wide', WeightsCheckSettings(min_loaded=0.0))
    assert 0 < share < 0.5  # the head's convs have the same shapes in both variants
    settings = WeightsCheckSettings.from_cfg(dict(weights_check=dict(min_loaded=0.25)))
    assert settings == WeightsCheckSettings(min_loaded=0.25, finite=True)
    with pytest.raises(ValueError, match='unknown weights_check'):
        WeightsCheckSettings.from_cfg(dict(weights_check=dict(min_load=0.5)))


def test_b_series_weights_do_not_load_into_lite():
    """Every Lite0 tensor is in a B0 checkpoint with its shape; the B0 squeeze-excitation
    tensors have no place in Lite0, so the checkpoint's share that fits is what fails."""
    lite, b0 = EffNet('lite0'), EffNet('b0')
    with pytest.raises(WeightsMismatchError) as info:
        check_state_dict(lite, b0.state_dict(), 'b0.pth')
    message = str(info.value)
    assert "of the model's tensors are in the checkpoint with their shape" in message
    assert "of the checkpoint's tensors fit the model, 90% needed for each" in message
    assert 'Checkpoint keys the model does not have' in message and '.se.' in message
    assert check_state_dict(lite, lite.state_dict(), 'lite0.pth') == 1.0


def test_backbone_only_checkpoint_counts_the_backbone(checkpoints):
    _, model = checkpoints['cfg'], checkpoints['model']
    own = torch.load(checkpoints['own'], weights_only=True)['state_dict']
    only_backbone = {k: v for k, v in own.items() if k.startswith('backbone.')}
    assert check_state_dict(model, only_backbone, 'own') == 1.0  # neck, head: not addressed
    wrong_backbone = torch.load(checkpoints['wide'], weights_only=True)['state_dict']
    wrong_backbone = {k: v for k, v in wrong_backbone.items() if k.startswith('backbone.')}
    with pytest.raises(WeightsMismatchError, match='backbone.conv1.weight'):
        check_state_dict(model, wrong_backbone, 'wide')


def test_nan_from_flipped_bytes_is_named(checkpoints):
    with pytest.raises(NonFiniteWeightsError) as info:
        load_checkpoint(checkpoints['model'], str(checkpoints['flipped']))
    assert f"{checkpoints['nan_key']} (1 NaN, 0 inf of" in str(info.value)
    assert str(checkpoints['flipped']) in str(info.value)


def test_nan_in_ema_weights_is_refused(checkpoints, tmp_path):
    state = torch.load(checkpoints['own'], weights_only=True)['state_dict']
    ema = {f'module.{k}': v.clone() for k, v in state.items()}
    ema['module.bbox_head.retina_reg.bias'][0] = float('inf')
    path = tmp_path / 'ema.pth'
    torch.save(dict(state_dict=state, ema_state_dict=ema), path)
    with pytest.raises(NonFiniteWeightsError, match=r'ema_state_dict.*retina_reg\.bias '
                       r'\(0 NaN, 1 inf'):
        load_checkpoint(checkpoints['model'], str(path))
    assert non_finite_tensors(state) == []


def _dump(cfg, path):
    cfg.dump(str(path))
    return path


@pytest.mark.parametrize('name', ['wide', 'flipped'])
def test_test_cli_stops_on_wrong_or_nan_weights(name, checkpoints, tmp_path, run_tool):
    cfg_file = _dump(checkpoints['cfg'], tmp_path / 'tiny.py')
    words = {'wide': ['does not fit RetinaNet',
                      'backbone.conv1.weight: model (8, 3, 7, 7), checkpoint (16, 3, 7, 7)'],
             'flipped': ['error: ', f"{checkpoints['nan_key']} (1 NaN"]}[name]
    work_dir = tmp_path / 'test'
    proc = run_tool('tools/test.py', cfg_file, checkpoints[name], '--work-dir', work_dir)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert all(w in proc.stderr for w in words), proc.stderr[-2000:]
    assert not list(work_dir.glob('*/*.json'))  # no metrics from random weights


@pytest.mark.slow
def test_test_cli_partial_load_when_configured(checkpoints, tmp_path, run_tool):
    cfg_file = _dump(checkpoints['cfg'], tmp_path / 'tiny.py')
    proc = run_tool('tools/test.py', cfg_file, checkpoints['wide'], '--work-dir',
                    tmp_path / 'test', '--cfg-options', 'weights_check.min_loaded=0')
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads(next((tmp_path / 'test').glob('*/*.json')).read_text())
    assert 'coco/bbox_mAP' in metrics


def test_train_cli_stops_on_wrong_load_from_and_backbone_pretrained(checkpoints, tmp_path,
                                                                    run_tool):
    cfg = checkpoints['cfg']
    cfg.load_from = str(checkpoints['wide'])
    load_from = _dump(cfg, tmp_path / 'load_from.py')
    cfg.load_from = None
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(checkpoints['backbone']))
    pretrained = _dump(cfg, tmp_path / 'pretrained.py')
    for cfg_file, model_name in ((load_from, 'RetinaNet'), (pretrained, 'ResNet')):
        work_dir = tmp_path / cfg_file.stem
        proc = run_tool('tools/train.py', cfg_file, '--work-dir', work_dir)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert f'does not fit {model_name}' in proc.stderr, proc.stderr[-2000:]
        assert 'conv1.weight: model (8, 3, 7, 7), checkpoint (16, 3, 7, 7)' in proc.stderr
        assert not list(work_dir.glob('*.pth'))  # stopped before the first iteration
