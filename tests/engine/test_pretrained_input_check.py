"""Configs feed pretrained weights the input they were trained on; the hook warns otherwise."""
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config

from effdet_plugin.checkpoint import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LITE_MEAN,
    LITE_STD,
    expected_preprocessing,
)
from effdet_plugin.checkpoint.preprocessing import checkpoint_preprocessing
from effdet_plugin.engine.hooks import PretrainedInputCheckHook, pretrained_input_check_hook

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / 'configs').rglob('*.py')
                 if '_base_' not in p.parts)


@pytest.fixture(autouse=True)
def _registries(monkeypatch):
    from mmdet.utils import register_all_modules

    import effdet_plugin  # noqa: F401
    monkeypatch.chdir(REPO)
    register_all_modules()


def _lite_imagenet_configs():
    found = []
    for config in CONFIGS:
        cfg = Config.fromfile(config)
        init = (cfg.get('model', {}).get('backbone') or {}).get('init_cfg') or {}
        if isinstance(init, dict) and 'effnet_lite' in str(init.get('checkpoint', '')):
            found.append((config, cfg))
    return found


def test_every_config_fine_tuning_imagenet_lite_weights_feeds_them_127_128_rgb():
    configs = _lite_imagenet_configs()
    names = {Path(c).name for c, _ in configs}
    assert {'effdet_lite0_nuclei.py', 'effdet-lite0_nuclei.py', 'effdet-lite1_nuclei.py',
            'effdet-lite2_nuclei.py', 'mask-rcnn_effnet-lite0_bifpn-p2_nuclei.py'} <= names
    for config, cfg in configs:
        pre = cfg.model.data_preprocessor
        assert (pre.mean, pre.std, pre.bgr_to_rgb) == (LITE_MEAN, LITE_STD, True), config
        assert cfg.model.backbone.padding == 'tf_same', config
        assert any(h.type == 'PretrainedInputCheckHook' for h in cfg.custom_hooks), config


def test_preprocessing_by_source():
    assert expected_preprocessing('effnet-pytorch', 'lite2')['mean'] == LITE_MEAN
    assert expected_preprocessing('timm', 'lite0', tf_ported=True)['std'] == LITE_STD
    # timm's PyTorch-trained efficientnet_lite0, torchvision and TF B-models: ImageNet
    assert expected_preprocessing('timm', 'lite0')['mean'] == IMAGENET_MEAN
    assert expected_preprocessing('torchvision', 'b3') == dict(
        mean=IMAGENET_MEAN, std=IMAGENET_STD, to_rgb=True, padding='symmetric')
    assert expected_preprocessing('effnet-pytorch', 'b0')['padding'] == 'tf_same'
    assert expected_preprocessing('effnet', 'lite0') == {}
    # conversions written before the meta recorded it: derived from source, arch, padding
    old = dict(source='effnet-pytorch', arch='lite0', backbone_cfg=dict(padding='tf_same'))
    assert checkpoint_preprocessing(old)['mean'] == LITE_MEAN
    assert checkpoint_preprocessing(dict(epoch=3)) == {}


def _model(config: str, **preprocessor):
    from mmdet.registry import MODELS
    cfg = Config.fromfile(config).model
    cfg.backbone.init_cfg = None
    cfg.data_preprocessor.update(preprocessor)
    return MODELS.build(cfg)


def _warnings(monkeypatch):
    logged = []
    monkeypatch.setattr(pretrained_input_check_hook, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    return logged


def test_hook_warns_with_what_to_set_for_init_cfg_and_load_from(tmp_path, monkeypatch):
    from effdet_plugin.checkpoint import convert_efficientnet, save_checkpoint
    from effdet_plugin.models.backbones import EffNet
    net = EffNet('lite0', out_indices=(3, 5, 7), padding='tf_same')
    converted = convert_efficientnet(net.state_dict(), 'effnet', arch='lite0')
    converted.preprocessing = expected_preprocessing('effnet-pytorch', 'lite0')
    path = save_checkpoint(converted.checkpoint(), str(tmp_path / 'lite0.pth'))

    config = 'configs/medical/effdet-lite0_nuclei.py'
    wrong = _model(config, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    wrong.backbone.init_cfg = dict(type='Pretrained', checkpoint=path)
    logged = _warnings(monkeypatch)
    hook = PretrainedInputCheckHook()
    hook.before_train(SimpleNamespace(model=wrong))
    assert len(logged) == 1
    assert 'model.data_preprocessor.mean=[127.0,127.0,127.0]' in logged[0]
    assert 'model.data_preprocessor.std=[128.0,128.0,128.0]' in logged[0]
    assert 'bgr_to_rgb' not in logged[0] and path in logged[0]

    hook.after_load_checkpoint(SimpleNamespace(model=wrong, _load_from=path),
                               torch.load(path, weights_only=True))
    assert len(logged) == 2 and 'load_from' in logged[1]

    right = _model(config)
    right.backbone.init_cfg = dict(type='Pretrained', checkpoint=path)
    hook.before_train(SimpleNamespace(model=right))
    hook.after_load_checkpoint(SimpleNamespace(model=right, _load_from='x'), dict(meta={}))
    assert len(logged) == 2  # as trained, or nothing recorded: silent

    bgr = _model(config, bgr_to_rgb=False, pad_size_divisor=128)
    bgr.backbone.padding = 'symmetric'
    hook.after_load_checkpoint(SimpleNamespace(model=bgr, _load_from=path),
                               torch.load(path, weights_only=True))
    assert 'model.data_preprocessor.bgr_to_rgb=True' in logged[-1]
    assert "model.backbone.padding=tf_same" in logged[-1]
