"""The EfficientDet variant configs resolve to what the scaling table says (no model built).

``configs/effdet_b3_coco.py`` only names its variant; these tests read the resolved config and
check every derived setting against :func:`get_det_scale`, and check that the derivation
(:mod:`effdet_plugin.engine.variant_config`) finds pipeline steps by type.
"""
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config

import effdet_plugin  # noqa: F401
from effdet_plugin.engine.variant_config import (
    SIZED_STEPS,
    effdet_variant,
    sized_pipeline,
    stretched_schedule,
)
from effdet_plugin.models.utils.scaling import get_det_scale

REPO = Path(__file__).resolve().parents[2]
# file name -> variant: what users type and what the scaling table calls it
VARIANTS = {f'effdet_b{i}_coco.py': f'd{i}' for i in range(8)}
VARIANTS.update({'effdet_b7x_coco.py': 'd7x'})
VARIANTS.update({f'effdet_lite{i}_coco.py': f'lite{i}' for i in range(5)})
LONG_SCHEDULE = {'d7': 600, 'd7x': 600}  # the official D7 / D7x recipe


def sized_steps(pipeline) -> list:
    return [step[SIZED_STEPS[step['type']]] for step in pipeline if step['type'] in SIZED_STEPS]


def test_every_variant_config_listed():
    on_disk = {p.name for p in (REPO / 'configs').glob('effdet_*_coco.py')}
    assert on_disk == set(VARIANTS)


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_variant_config_follows_scaling_table(name):
    path = REPO / 'configs' / name
    assert len(path.read_text().splitlines()) <= 6, f'{name}: a variant config names its variant'
    cfg = Config.fromfile(str(path))
    variant = VARIANTS[name]
    scale = get_det_scale(variant)
    model = cfg.model
    assert model.backbone.arch == scale.backbone
    assert model.neck.arch == model.bbox_head.arch == variant
    assert model.data_preprocessor.pad_size_divisor == 2**scale.max_level
    with torch.device('meta'):
        backbone = MODELS.build(dict(type='EffNet', arch=scale.backbone,
                                     out_indices=model.backbone.out_indices))
    assert list(model.neck.in_channels) == list(backbone.out_channels)
    size = (scale.input_size, ) * 2
    assert cfg.image_size == scale.input_size
    for pipeline in (cfg.train_pipeline, cfg.train_dataloader.dataset.pipeline):
        assert [tuple(s) for s in sized_steps(pipeline)] == [size, size]  # resize, crop
    for pipeline in (cfg.test_pipeline, cfg.val_dataloader.dataset.pipeline,
                     cfg.test_dataloader.dataset.pipeline):
        assert [tuple(s) for s in sized_steps(pipeline)] == [size]
    epochs = LONG_SCHEDULE.get(variant, 300)
    assert cfg.train_cfg.max_epochs == epochs
    cosine = [s for s in cfg.param_scheduler if s.type == 'CosineAnnealingLR']
    assert len(cosine) == 1 and cosine[0].end == epochs
    assert cosine[0].T_max == epochs - cosine[0].begin


def test_lite_variant_keeps_lite_base():
    """The Lite base's ReLU6 and [-1, 1] inputs survive the variant's model entries."""
    cfg = Config.fromfile(str(REPO / 'configs/effdet_lite2_coco.py'))
    assert cfg.model.neck.act_cfg.type == cfg.model.bbox_head.act_cfg.type == 'ReLU6'
    assert cfg.model.data_preprocessor.mean == [127.5] * 3


def test_sized_pipeline_finds_steps_by_type():
    pipeline = [dict(type='LoadImageFromFile'), dict(type='RandomFlip', prob=0.5),
                dict(type='Resize', scale=(1, 1), keep_ratio=True),
                dict(type='RandomCrop', crop_size=(1, 1))]
    sized = sized_pipeline(pipeline, 64, 'p')
    assert sized[2] == dict(type='Resize', scale=(64, 64), keep_ratio=True)
    assert sized[3]['crop_size'] == (64, 64)
    assert pipeline[2]['scale'] == (1, 1)  # the base is not changed
    with pytest.raises(ValueError, match='no RandomResize/Resize/RandomCrop step'):
        sized_pipeline([dict(type='LoadImageFromFile')], 64, 'test_pipeline')


def test_stretched_schedule_moves_only_schedulers_that_ended_with_training():
    base = dict(train_cfg=dict(max_epochs=300), param_scheduler=[
        dict(type='LinearLR', begin=0, end=1),
        dict(type='CosineAnnealingLR', begin=1, end=300, T_max=299)])
    out = stretched_schedule(base, 600)
    assert out['train_cfg'] == dict(max_epochs=600) and out['max_epochs'] == 600
    assert out['param_scheduler'][0] == dict(type='LinearLR', begin=0, end=1)
    assert out['param_scheduler'][1] == dict(type='CosineAnnealingLR', begin=1, end=600,
                                             T_max=599)
    assert base['param_scheduler'][1]['end'] == 300


def test_unknown_variant_names_the_valid_ones():
    base = Config.fromfile(str(REPO / 'configs/_base_/effdet_coco.py'))
    with pytest.raises(KeyError, match='Valid names: d0'):
        effdet_variant('d9', base)
