"""Configs are data, and the values they write out are the ones the variant implies.

Parsing a config runs no plugin code and builds no model; what follows from a variant (backbone
arch, neck ``in_channels``, input size, padding, schedule) is written in the config, and these
tests check every such value against the scaling module (:func:`get_det_scale`) and against what
the backbone reports it outputs, so that a config cannot drift from its variant.
"""
import ast
import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import ConfigDict

import effdet_plugin  # noqa: F401  (registers EffNet)
from effdet_plugin.models.utils.scaling import get_det_scale

REPO = Path(__file__).resolve().parents[2]
ALL_CONFIGS = sorted(str(p.relative_to(REPO)) for p in (REPO / 'configs').rglob('*.py'))
# what a user passes to a tool: configs outside _base_ folders
CONFIGS = [c for c in ALL_CONFIGS if '_base_' not in Path(c).parts]
# file name -> variant: what users type and what the scaling table calls it
VARIANTS = {f'effdet_b{i}_coco.py': f'd{i}' for i in range(8)}
VARIANTS.update({'effdet_b7x_coco.py': 'd7x'})
VARIANTS.update({f'effdet_lite{i}_coco.py': f'lite{i}' for i in range(5)})
LONG_SCHEDULE = {'d7': 600, 'd7x': 600}  # the official D7 / D7x recipe
#: Pipeline steps whose size is the variant's input size, and the key that holds it.
SIZED_STEPS = {'RandomResize': 'scale', 'Resize': 'scale', 'RandomCrop': 'crop_size'}


@pytest.fixture(scope='module')
def parsed() -> dict:
    """Every config resolved in a fresh process, and whether parsing loaded torch or the plugin."""
    script = ('import json, sys\n'
              'from mmengine.config import Config\n'
              f'cfgs = {{c: Config.fromfile(c, import_custom_modules=False).to_dict() '
              f'for c in {CONFIGS!r}}}\n'
              "loaded = sorted(m for m in ('torch', 'effdet_plugin') if m in sys.modules)\n"
              "print(json.dumps(dict(configs=cfgs, loaded=loaded), default=str))")
    out = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                         text=True, check=True)
    found = json.loads(out.stdout.splitlines()[-1])
    return dict(loaded=found['loaded'],
                configs={c: ConfigDict(cfg) for c, cfg in found['configs'].items()})


def sized_steps(pipeline) -> list:
    return [tuple(step[SIZED_STEPS[step['type']]]) for step in pipeline
            if step['type'] in SIZED_STEPS]


def backbone_out_channels(backbone: dict) -> list:
    """What the backbone outputs, asked of the backbone (on the meta device: shapes only)."""
    settings = {k: v for k, v in backbone.items() if k != 'init_cfg'}
    return _out_channels(json.dumps(settings, sort_keys=True))


@functools.lru_cache()
def _out_channels(settings: str) -> list:
    with torch.device('meta'):
        return list(MODELS.build(json.loads(settings)).out_channels)


@pytest.mark.parametrize('config', ALL_CONFIGS)
def test_config_imports_nothing(config):
    tree = ast.parse((REPO / config).read_text())
    imports = [node.lineno for node in ast.walk(tree)
               if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert not imports, (f'{config}:{imports[0]}: configs are data; write the value out '
                         '(docs/configs.md) instead of importing code to compute it')


def test_parsing_every_config_loads_neither_torch_nor_the_plugin(parsed):
    assert parsed['loaded'] == []


def test_every_variant_config_listed():
    on_disk = {p.name for p in (REPO / 'configs').glob('effdet_*_coco.py')}
    assert on_disk == set(VARIANTS)


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_variant_config_follows_scaling_table(name, parsed):
    assert len((REPO / 'configs' / name).read_text().splitlines()) <= 20, (
        f'{name}: a variant config overrides only what differs from its base')
    cfg = parsed['configs'][f'configs/{name}']
    variant = VARIANTS[name]
    scale = get_det_scale(variant)
    model = cfg.model
    assert model.backbone.arch == scale.backbone
    assert model.neck.arch == model.bbox_head.arch == variant
    assert model.data_preprocessor.pad_size_divisor == 2**scale.max_level
    size = (scale.input_size, ) * 2
    assert cfg.image_size == scale.input_size
    for pipeline in (cfg.train_pipeline, cfg.train_dataloader.dataset.pipeline):
        assert sized_steps(pipeline) == [size, size], f'{name}: train resize and crop'
    for pipeline in (cfg.test_pipeline, cfg.val_dataloader.dataset.pipeline,
                     cfg.test_dataloader.dataset.pipeline):
        assert sized_steps(pipeline) == [size], f'{name}: test resize'
    epochs = LONG_SCHEDULE.get(variant, 300)
    assert cfg.train_cfg.max_epochs == epochs
    cosine = [s for s in cfg.param_scheduler if s.type == 'CosineAnnealingLR']
    assert len(cosine) == 1 and cosine[0].end == epochs
    assert cosine[0].T_max == epochs - cosine[0].begin


@pytest.mark.parametrize('config', CONFIGS)
def test_neck_in_channels_are_what_the_backbone_outputs(config, parsed):
    model = parsed['configs'][config].model
    if model.backbone.type != 'EffNet' or 'in_channels' not in (model.get('neck') or {}):
        pytest.skip('no EffNet feeding a neck')
    expected = backbone_out_channels(model.backbone)
    assert list(model.neck.in_channels) == expected, (
        f'{config}: the neck reads {list(model.neck.in_channels)}, the backbone '
        f'(arch {model.backbone.arch!r}, out_indices {tuple(model.backbone.out_indices)}) '
        f'outputs {expected}: write neck in_channels={expected}')


def test_every_config_has_its_in_channels_checked(parsed):
    unchecked = [c for c, cfg in parsed['configs'].items()
                 if cfg.model.backbone.type != 'EffNet' or 'in_channels' not in cfg.model.neck]
    assert not unchecked  # the in_channels check above skips none of today's configs


def test_lite_variant_keeps_lite_base(parsed):
    """The Lite base's ReLU6 and [-1, 1] inputs survive the variant's model entries."""
    cfg = parsed['configs']['configs/effdet_lite2_coco.py']
    assert cfg.model.neck.act_cfg.type == cfg.model.bbox_head.act_cfg.type == 'ReLU6'
    assert cfg.model.data_preprocessor.mean == [127.5] * 3
