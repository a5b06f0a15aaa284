"""Every config under configs/ builds; EfficientDet configs fit together and match the paper.

Checks on the built models (not on the config text): the neck takes what the backbone gives,
the head reads the neck's levels at the neck's width and strides, inputs are padded to
``2 ** max_level``, and parameter counts are within 1% of the EfficientDet paper.
"""
import glob
from pathlib import Path

import effdet
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config

from effdet_plugin.models.utils.scaling import get_det_scale

register_all_modules()

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(
    str(Path(p).relative_to(REPO))
    for p in glob.glob(str(REPO / 'configs' / '**' / '*.py'), recursive=True)
    if '_base_' not in Path(p).parts)
EFFDET_CONFIGS = [c for c in CONFIGS if Path(c).name.startswith('effdet_')]

# EfficientDet paper, Table 2 (millions of parameters).
PAPER_PARAMS = {
    'effdet_b0_coco.py': 3.9, 'effdet_b1_coco.py': 6.6, 'effdet_b2_coco.py': 8.1,
    'effdet_b3_coco.py': 12.0, 'effdet_b4_coco.py': 20.7, 'effdet_b5_coco.py': 33.7,
    'effdet_b6_coco.py': 51.9, 'effdet_b7_coco.py': 51.9, 'effdet_b7x_coco.py': 77.0,
}
# Forward passes at a small input; the rest of the family runs under `make test-slow`.
FAST_FORWARD = {'effdet_b0_coco.py': 128, 'effdet_b3_coco.py': 128, 'effdet_b7x_coco.py': 256,
                'effdet_lite0_coco.py': 128}


def load(config: str) -> Config:
    return Config.fromfile(str(REPO / config))


def build(cfg: Config) -> torch.nn.Module:
    return MODELS.build(cfg.model)


def test_configs_found():
    names = {Path(c).name for c in EFFDET_CONFIGS}
    assert set(PAPER_PARAMS) <= names
    assert {f'effdet_lite{i}_coco.py' for i in range(5)} <= names
    assert any(c.startswith('configs/swap/') for c in CONFIGS)
    assert any(c.startswith('configs/demo/') for c in CONFIGS)


@pytest.mark.parametrize('config', CONFIGS)
def test_config_builds(config):
    cfg = load(config)
    model = build(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0
    if (cfg.model.get('bbox_head') or {}).get('type') == 'EffDetHead':
        check_effdet_fits(cfg, model)


def check_effdet_fits(cfg: Config, model: torch.nn.Module) -> None:
    backbone, neck, head = model.backbone, model.neck, model.bbox_head
    assert list(neck.in_channels) == list(backbone.out_channels)
    assert tuple(backbone.strides) == tuple(2**lvl for lvl in range(
        neck.min_level, neck.min_level + len(backbone.strides)))
    assert head.in_channels == head.feat_channels == neck.out_channels
    assert head.num_levels == neck.num_outs
    assert [s[0] for s in head.prior_generator.strides] == list(neck.strides)
    assert cfg.model.data_preprocessor.pad_size_divisor == 2**neck.max_level
    scale = get_det_scale(cfg.model.bbox_head.arch)
    assert (neck.out_channels, neck.num_repeats, head.stacked_convs) == (
        scale.fpn_channels, scale.fpn_repeats, scale.head_repeats)
    assert neck.fusion == scale.fusion
    assert head.prior_generator.octave_base_scale == scale.anchor_scale
    if Path(cfg.filename).parent == REPO / 'configs':  # the COCO family: official input size
        resize = [t for t in cfg.test_pipeline if t['type'] == 'Resize']
        assert tuple(resize[0]['scale']) == (scale.input_size, ) * 2


@pytest.mark.parametrize('name', sorted(PAPER_PARAMS))
def test_params_match_paper(name):
    model = build(load(f'configs/{name}'))
    params = sum(p.numel() for p in model.parameters())
    assert params / 1e6 == pytest.approx(PAPER_PARAMS[name], rel=0.01)


def test_d0_with_90_classes_equals_effdet():
    """With the official 90 COCO slots our D0 has exactly tf_efficientdet_d0's parameters."""
    cfg = load('configs/effdet_b0_coco.py')
    cfg.model.bbox_head.num_classes = 90
    ours = sum(p.numel() for p in build(cfg).parameters())
    assert ours == 3_880_067
    ref = effdet.create_model('tf_efficientdet_d0', pretrained=False, pretrained_backbone=False)
    assert ours == sum(p.numel() for p in ref.parameters())


def check_forward(config: str, size: int) -> None:
    cfg = load(config)
    model = build(cfg).eval()
    neck, head = model.neck, model.bbox_head
    with torch.no_grad():
        cls_scores, bbox_preds = model(torch.randn(1, 3, size, size), mode='tensor')
    assert len(cls_scores) == len(bbox_preds) == neck.num_outs
    anchors = head.num_base_priors
    for stride, cls, box in zip(neck.strides, cls_scores, bbox_preds):
        side = -(-size // stride)
        assert cls.shape == (1, anchors * head.num_classes, side, side)
        assert box.shape == (1, anchors * 4, side, side)
        assert torch.isfinite(cls).all() and torch.isfinite(box).all()


@pytest.mark.parametrize('name', sorted(FAST_FORWARD))
def test_forward_small_input(name):
    check_forward(f'configs/{name}', FAST_FORWARD[name])


@pytest.mark.slow
@pytest.mark.parametrize('config', [c for c in EFFDET_CONFIGS if Path(c).name not in FAST_FORWARD])
def test_forward_small_input_all(config):
    size = 256 if get_det_scale(load(config).model.bbox_head.arch).max_level > 7 else 128
    check_forward(config, size)
