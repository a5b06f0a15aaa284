"""effdet_plugin.studies.scaling: coefficient grid, sweep points, scaled configs, gains."""
from pathlib import Path

import pytest
from mmengine.config import Config

from effdet_plugin.models.backbones import EffNet
from effdet_plugin.models.utils.scaling import det_phi, get_det_scale, get_net_scale, round_filters
from effdet_plugin.studies.runner import ResultsFile, rescale_schedule
from effdet_plugin.studies.runner import load_study_config as load_config
from effdet_plugin.studies.scaling.points import (
    OFFICIAL,
    coefficient_grid,
    flops_growth,
    marginal_gains,
    saturation_phi,
    search_points,
    select_candidates,
    sweep_points,
)
from effdet_plugin.studies.scaling.scaled_config import (
    base_det_phi,
    build_model,
    reference_shape,
    scale_config,
)
from effdet_plugin.studies.scaling.study import plan

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / 'configs/demo/effdet_lite0_nuclei.py')
SWAP = str(REPO / 'configs/swap/retinanet_effnet-b0_fpn_1x_coco.py')


def test_grid_satisfies_the_constraint_and_is_empty_when_impossible():
    grid = coefficient_grid(2.0, 0.05, 0.05)
    assert grid and all(abs(flops_growth(*t) / 2 - 1) <= 0.05 for t in grid)
    assert all(min(t) >= 1 for t in grid) and grid == sorted(grid)
    assert (1.2, 1.1, 1.15) in grid and (1.0, 1.0, 1.4) in grid  # 1.96: within 5% of 2
    with pytest.raises(ValueError, match='no \\(alpha, beta, gamma\\)'):
        coefficient_grid(0.5)  # below 1: impossible with every coefficient >= 1
    with pytest.raises(ValueError, match='raise --tol'):
        coefficient_grid(1.7, step=0.5, tol=0.001)


def test_candidate_subset_is_deterministic_spread_and_starts_with_the_official():
    grid = coefficient_grid(2.0, 0.05, 0.05)
    chosen = select_candidates(grid, 4)
    assert chosen[0] == OFFICIAL and len(chosen) == 4 == len(set(chosen))
    assert chosen == select_candidates(list(reversed(grid)), 4)  # order of the input is moot
    rest = sorted(t for t in grid if t != OFFICIAL)
    assert chosen[1] == rest[0] and chosen[-1] == rest[-1]  # spread over the whole grid
    assert len(select_candidates(grid, None)) == len(grid)


def test_single_dimension_points_take_the_whole_growth():
    growth = flops_growth(*OFFICIAL)
    points = {p.name: p for p in sweep_points([0, 1, 2], base_det_phi=None)}
    for phi in (0, 1, 2):
        assert points[f'depth_phi{phi}'].depth == pytest.approx(growth**phi)
        assert points[f'width_phi{phi}'].width**2 == pytest.approx(growth**phi)
        assert points[f'resolution_phi{phi}'].resolution**2 == pytest.approx(growth**phi)
        compound = points[f'compound_phi{phi}']
        assert (compound.depth * compound.width**2 * compound.resolution**2 ==
                pytest.approx(growth**phi))
        assert compound.det_phi is None
    with pytest.raises(ValueError, match='unknown scaling dimension'):
        sweep_points([1], ['height'])


def test_compound_detector_point_follows_the_efficientdet_rule():
    cfg = load_config(DEMO)
    assert base_det_phi(cfg) == 0  # lite0
    point = sweep_points([1], ['compound'], base_det_phi=0)[0]
    scaled = scale_config(cfg, point)
    d1 = get_det_scale('d1')
    assert scaled.model.neck.out_channels == d1.fpn_channels == 88
    assert scaled.model.neck.num_repeats == d1.fpn_repeats
    assert scaled.model.bbox_head.in_channels == 88
    assert scaled.model.bbox_head.stacked_convs == d1.head_repeats
    assert point.resolution == pytest.approx(640 / 512)  # 512 + 128 phi
    model = build_model(scaled)
    assert list(model.neck.in_channels) == list(model.backbone.out_channels)
    assert model.backbone.scale.lite  # still a Lite network: ReLU6, no SE
    assert model.backbone.scale.depth == pytest.approx(OFFICIAL[0])
    assert 'init_cfg' not in scaled.model.backbone and scaled.model.backbone.frozen_stages == -1
    # every pipeline follows the resolution: crop and jitter in training, resize in test
    train = {s['type']: s for s in scaled.train_dataloader.dataset.pipeline}
    assert train['RandomCrop']['crop_size'] == (320, 320)
    assert train['ScaleJitter']['ratio_range'] == pytest.approx((1.0, 1.5625))
    test = {s['type']: s for s in scaled.val_dataloader.dataset.pipeline}
    assert test['Resize']['scale_factor'] == pytest.approx(1.25)
    assert cfg.model.neck.get('out_channels') is None  # the original is untouched


def test_phi_zero_rebuilds_the_config_model_and_lite_formula_matches_lite0():
    cfg = load_config(DEMO)
    base = cfg.model.backbone.copy()
    base.pop('init_cfg')
    for point in sweep_points([0], base_det_phi=0):
        scaled = build_model(scale_config(cfg, point)).backbone
        original = EffNet(**{k: v for k, v in base.items() if k != 'type'})
        assert {k: v.shape for k, v in scaled.state_dict().items()} == {
            k: v.shape for k, v in original.state_dict().items()}
    lite = get_net_scale(1.0, 1.0, 1.0, 1.0, lite=True)
    assert lite.lite and (lite.width, lite.depth) == (1.0, 1.0)


def test_backbone_swap_config_changes_only_backbone_neck_inputs_and_resolution():
    cfg = load_config(SWAP)
    assert base_det_phi(cfg) is None
    point = sweep_points([1], ['compound'], base_det_phi=None)[0]
    scaled = scale_config(cfg, point)
    b0_widths = cfg.model.neck.in_channels
    assert scaled.model.neck.in_channels == [round_filters(c, OFFICIAL[1]) for c in b0_widths]
    assert scaled.model.neck.out_channels == cfg.model.neck.out_channels
    assert scaled.model.bbox_head == cfg.model.bbox_head
    assert reference_shape(cfg) == (800, 1333)
    resize = scaled.test_dataloader.dataset.pipeline[1]
    assert resize['scale'] == (1536, 920)  # (1333, 800) x 1.15 to multiples of 8


def test_input_smaller_than_the_deepest_stride_is_refused():
    cfg = load_config(DEMO)
    with pytest.raises(ValueError, match='smaller than the deepest stride 128'):
        plan(cfg, search_points([OFFICIAL]), shape=(64, 64))
    sweep = sweep_points([-3, 0], ['resolution'], base_det_phi=0)  # 256 px / 1.92^1.5
    with pytest.raises(ValueError, match='resolution_phi-3: input 96x96 .* smaller than'):
        plan(cfg, sweep, shape=(256, 256))


def test_non_effnet_backbone_is_refused():
    cfg = load_config(DEMO)
    cfg.model.backbone = dict(type='ResNet', depth=18)
    with pytest.raises(ValueError, match='scales EffNet backbones'):
        scale_config(cfg, search_points([OFFICIAL])[0])


def test_marginal_gain_and_saturation_phi():
    points = [dict(phi=0, gflops=1.0, ap=0.30), dict(phi=1, gflops=2.0, ap=0.40),
              dict(phi=2, gflops=4.0, ap=0.41), dict(phi=0.5, gflops=1.5, ap=0.36)]
    steps = marginal_gains(points)
    assert [(s['phi_from'], s['phi_to']) for s in steps] == [(0, 0.5), (0.5, 1), (1, 2)]
    assert [s['gain'] for s in steps] == pytest.approx([0.12, 0.08, 0.005])
    assert saturation_phi(steps, 0.1) == 0.5
    assert saturation_phi(steps, 0.01) == 1
    assert saturation_phi(steps, 0.001) is None


def test_results_file_resumes_and_refuses_other_settings(tmp_path):
    results = ResultsFile(str(tmp_path), 'r.csv', ('name', 'seed'), dict(iters=10))
    results.append(dict(name='a', seed=0, ap=0.5))
    again = ResultsFile(str(tmp_path), 'r.csv', ('name', 'seed'), dict(iters=10))
    assert again.done(name='a', seed=0) and not again.done(name='a', seed=1)
    again.append(dict(name='a', seed=1, ap=0.4, extra=1))  # a new column is fine
    assert len(ResultsFile(str(tmp_path), 'r.csv', ('name', 'seed'), dict(iters=10)).rows) == 2
    with pytest.raises(ValueError, match='other settings \\(iters'):
        ResultsFile(str(tmp_path), 'r.csv', ('name', 'seed'), dict(iters=20))


def test_rescale_schedule_keeps_proportions():
    cfg = Config.fromfile(DEMO)
    rescale_schedule(cfg, 40)
    warmup, cosine = cfg.param_scheduler
    assert (warmup.begin, warmup.end) == (0, 3)
    assert (cosine.begin, cosine.end, cosine.T_max) == (3, 40, 37)
    assert cfg.train_cfg.max_iters == 40 and cfg.train_cfg.val_interval == 40
    with pytest.raises(ValueError, match='iteration-based'):
        rescale_schedule(Config.fromfile(str(REPO / 'configs/effdet_lite0_coco.py')), 10)


def test_det_phi_of_variant_names():
    assert [det_phi(a) for a in ('d0', 'd3', 'd7x', 'lite2', 'efficientdet-d1', 2.5)] == [
        0, 3, 7, 2, 1, 2.5]
    with pytest.raises(KeyError, match='Unknown EfficientDet arch'):
        det_phi('b3')
