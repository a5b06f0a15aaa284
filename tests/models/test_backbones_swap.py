"""configs/swap: stock mmdet detectors with EffNet as the backbone build, train a step and
predict on the CPU; the ImageNet weights load through the backbone's init_cfg."""
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.registry import init_default_scope

from effdet_plugin.checkpoint import convert_efficientnet, save_checkpoint

SWAP = Path(__file__).resolve().parents[2] / 'configs' / 'swap'
CONFIGS = sorted(p.name for p in SWAP.glob('*.py'))


@pytest.fixture(autouse=True)
def _scope():
    init_default_scope('mmdet')
    torch.manual_seed(0)


def test_all_four_detectors_present():
    assert {c.split('_')[0] for c in CONFIGS} == {'retinanet', 'fcos', 'faster-rcnn',
                                                  'mask-rcnn'}


@pytest.mark.parametrize('name', CONFIGS)
def test_swap_config_trains_and_predicts(name):
    cfg = Config.fromfile(str(SWAP / name))
    assert cfg.model.backbone.type == 'EffNet' and 'depth' not in cfg.model.backbone
    cfg.model.backbone.init_cfg = None  # random init: no ImageNet weights needed here
    model = MODELS.build(cfg.model)
    model.init_weights()
    backbone = model.backbone
    assert list(backbone.out_channels) == list(cfg.model.neck.in_channels)
    assert backbone.strides == (4, 8, 16, 32)

    with_mask = 'mask' in name
    packed = demo_mm_inputs(batch_size=1, image_shapes=[(3, 128, 128)], num_items=[2],
                            num_classes=cfg.model.get('bbox_head', cfg.model.get('roi_head', {}))
                            .get('num_classes', 80), with_mask=with_mask)
    model.train()
    data = model.data_preprocessor(packed, True)
    losses = model(**data, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads[:5])
    print(f'\n{name}: ' + ', '.join(f'{k}={v:.3f}' for k, v in log_vars.items()))

    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False), mode='predict')
    pred = results[0].pred_instances
    assert pred.bboxes.shape[-1] == 4 and len(pred.scores) == len(pred.labels)
    if with_mask:
        assert 'masks' in pred


def test_checkpoint_loads_through_init_cfg(tmp_path, monkeypatch):
    name = 'retinanet_effnet-b0_fpn_1x_coco.py'
    monkeypatch.chdir(tmp_path)  # the config's checkpoint path is relative to the cwd
    with pytest.raises(FileNotFoundError, match='efficientnet_b0_torchvision.pth'):
        MODELS.build(Config.fromfile(str(SWAP / name)).model).init_weights()

    import torchvision
    result = convert_efficientnet(torchvision.models.efficientnet_b0().state_dict())
    save_checkpoint(result.checkpoint(), 'checkpoints/efficientnet_b0_torchvision.pth')
    cfg = Config.fromfile(str(SWAP / name))
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    model = MODELS.build(cfg.model)
    model.init_weights()
    weights = model.backbone.state_dict()
    assert all(torch.equal(v, result.state_dict[k]) for k, v in weights.items())
