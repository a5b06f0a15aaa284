"""Compound-scaling studies on a user's config: which model sizes to train, and how to build them.

A :class:`ScalePoint` describes one model *relative to the config's own model*: multipliers of
the backbone's depth and width, of the input resolution, and (for EfficientDet necks/heads) a
step of EfficientDet's phi rules. :func:`scale_config` turns the config into that model:

- the ``EffNet`` backbone becomes ``arch=1.0`` with ``scaling=dict(alpha=d, beta=w, ...)``
  where ``d``/``w`` are the base variant's depth/width multipliers times the point's, so the
  base variant's rounding rules (and Lite's fixed stem/head) are kept; phi 0 is the config's
  own backbone;
- the neck's ``in_channels`` follow the scaled backbone's ``out_channels``;
- ``EffBiFPN`` width/depth and ``EffDetHead`` depth follow EfficientDet's phi rule at
  ``base phi + point.det_phi`` (other necks and heads keep their size: backbone-swap configs);
- every pipeline's resize and crop sizes are multiplied by the resolution multiplier.

Every scaled model trains from its random init: a scaled backbone has other shapes than any
pretrained checkpoint, and a fair comparison starts all points alike (phi 0 included).

All multipliers come from :mod:`effdet_plugin.models.utils.scaling`.
"""
import argparse
import copy
import math
import os.path as osp
import textwrap
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config, DictAction

from ..datasets.checks import SPLITS, split_datasets
from ..models.utils.scaling import (
    ALPHA,
    BETA,
    GAMMA,
    det_phi,
    efficientdet_input_size,
    efficientdet_scale,
    get_net_scale,
    make_divisible,
)
from .experiments import (
    ProgressHook,
    ResultsFile,
    measure,
    numeric_rows,
    rescale_schedule,
    run_config,
    summarise,
    time_interleaved,
    tqdm_bar,
)

#: Scaling dimensions of a sweep: all at once, or one at a time at the same FLOPs growth.
DIMS = ('compound', 'depth', 'width', 'resolution')
OFFICIAL = (ALPHA, BETA, GAMMA)
# Pipeline steps whose sizes scale with the input resolution: type -> keys holding sizes.
_SIZE_KEYS = dict(Resize=('scale', 'scale_factor'), RandomResize=('scale', ),
                  ScaleJitter=('scale', 'ratio_range'), RandomCrop=('crop_size', ))


@dataclass(frozen=True)
class ScalePoint:
    """One model of a scaling study, relative to the config's model.

    Args:
        name (str): Unique name (CSV key and work-dir name).
        dim (str): ``'compound'``, ``'depth'``, ``'width'``, ``'resolution'`` or ``'search'``.
        phi (float): Compound coefficient of the point (1 for search candidates).
        depth (float): Backbone depth multiplier.
        width (float): Backbone width multiplier.
        resolution (float): Input-size multiplier.
        det_phi (float, optional): Steps of EfficientDet's phi rule for an ``EffBiFPN`` neck
            and ``EffDetHead`` (width, repeats, head depth); None keeps them.
        alpha, beta, gamma (float, optional): The coefficient triplet of a search candidate.
    """
    name: str
    dim: str
    phi: float
    depth: float
    width: float
    resolution: float
    det_phi: Optional[float] = None
    alpha: Optional[float] = None
    beta: Optional[float] = None
    gamma: Optional[float] = None

    def as_row(self) -> Dict[str, object]:
        return asdict(self)


def flops_growth(alpha: float, beta: float, gamma: float) -> float:
    """The formula's FLOPs growth per unit of phi: ``alpha * beta^2 * gamma^2``."""
    return alpha * beta**2 * gamma**2


def coefficient_grid(growth: float = 2.0, step: float = 0.05,
                     tol: float = 0.05) -> List[Tuple[float, float, float]]:
    """Every ``(alpha, beta, gamma)`` on a ``step`` grid from 1 with
    ``|alpha * beta^2 * gamma^2 / growth - 1| <= tol``, sorted.

    Raises:
        ValueError: If no triplet satisfies the constraint.
    """
    if step <= 0 or tol < 0:
        raise ValueError(f'need --grid-step > 0 and --tol >= 0, got {step} and {tol}')

    def axis(limit: float) -> List[float]:
        return [round(1 + i * step, 6) for i in range(int((limit - 1) / step + 1e-9) + 1)]

    # alpha <= growth and beta, gamma <= sqrt(growth) (the others >= 1), plus tolerance
    top = growth * (1 + tol)
    grid = [(a, b, g) for a in axis(top) for b in axis(math.sqrt(top)) for g in axis(math.sqrt(top))
            if abs(flops_growth(a, b, g) / growth - 1) <= tol]
    if not grid:
        raise ValueError(
            f'no (alpha, beta, gamma) >= 1 on a {step} grid has alpha * beta^2 * gamma^2 '
            f'within {tol:.0%} of the FLOPs growth {growth} (it must be >= 1); raise --tol, '
            f'make --grid-step finer or change --flops-growth.')
    return grid


def select_candidates(grid: Sequence[Tuple[float, float, float]],
                      max_candidates: Optional[int]) -> List[Tuple[float, float, float]]:
    """The official triplet first, then ``max_candidates - 1`` grid triplets evenly spread
    over the sorted grid (the same subset on every run); all of them when None."""
    rest = [t for t in sorted(grid) if not _same(t, OFFICIAL)]
    if max_candidates is not None:
        if max_candidates < 1:
            raise ValueError(f'--max-candidates must be >= 1, got {max_candidates}')
        n = min(max_candidates - 1, len(rest))
        rest = [rest[round(i * (len(rest) - 1) / max(n - 1, 1))] for i in range(n)] if n else []
    return [OFFICIAL] + rest


def _same(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(abs(x - y) < 1e-9 for x, y in zip(a, b))


def search_points(triplets: Sequence[Tuple[float, float, float]]) -> List[ScalePoint]:
    """Search candidates: the base model scaled to phi=1 by each triplet."""
    return [
        ScalePoint(name=f'a{a:.2f}_b{b:.2f}_g{g:.2f}', dim='search', phi=1.0, depth=a, width=b,
                   resolution=g, alpha=a, beta=b, gamma=g) for a, b, g in triplets
    ]


def sweep_points(phis: Sequence[float],
                 dims: Sequence[str] = DIMS,
                 alpha: float = ALPHA,
                 beta: float = BETA,
                 gamma: float = GAMMA,
                 base_det_phi: Optional[float] = None) -> List[ScalePoint]:
    """Points of a phi sweep, one per (dimension, phi).

    ``compound`` scales backbone depth and width by ``alpha^phi`` and ``beta^phi``; with an
    EfficientDet neck/head (``base_det_phi`` given) the neck, head and input size follow
    EfficientDet's phi rule (input ``512 + 128 phi``, relative to the base variant's), else the
    input grows by ``gamma^phi``. A single dimension takes the whole formula growth
    ``g = alpha * beta^2 * gamma^2`` alone: depth ``g^phi``, width and resolution
    ``g^(phi / 2)``, so every dimension aims at the same backbone FLOPs at the same phi.
    """
    unknown = sorted(set(dims) - set(DIMS))
    if unknown:
        raise ValueError(f'unknown scaling dimension(s) {unknown}; choose from {list(DIMS)}')
    growth = flops_growth(alpha, beta, gamma)
    points = []
    for dim in dims:
        for phi in phis:
            if dim == 'compound':
                if base_det_phi is None:
                    res, steps = gamma**phi, None
                else:
                    if base_det_phi + phi < 0:
                        raise ValueError(
                            f'phi {phi:g} goes below EfficientDet phi 0 (the config is phi '
                            f'{base_det_phi:g}); use phis >= {-base_det_phi:g}')
                    res = (efficientdet_input_size(base_det_phi + phi) /
                           efficientdet_input_size(base_det_phi))
                    steps = phi
                depth, width = alpha**phi, beta**phi
            else:
                steps = None
                depth = growth**phi if dim == 'depth' else 1.0
                width = growth**(phi / 2) if dim == 'width' else 1.0
                res = growth**(phi / 2) if dim == 'resolution' else 1.0
            points.append(ScalePoint(name=f'{dim}_phi{phi:g}', dim=dim, phi=float(phi),
                                     depth=depth, width=width, resolution=res, det_phi=steps))
    return points


def pipelines(cfg: Config) -> Dict[str, list]:
    """``{split: pipeline}`` of the train/val/test datasets (``train1``... for more than one)."""
    found = {}
    for split in SPLITS:
        for i, (_, dataset) in enumerate(split_datasets(cfg, split)):
            if isinstance(dataset.get('pipeline'), list):
                found[f'{split}{i or ""}'] = dataset['pipeline']
    return found


def _hw(size: Sequence[int], wh: bool) -> Tuple[int, int]:
    size = (size, size) if isinstance(size, int) else tuple(size)
    return (int(size[1]), int(size[0])) if wh else (int(size[0]), int(size[1]))


def reference_shape(cfg: Config) -> Tuple[int, int]:
    """The (H, W) input that FLOPs and latency are measured at for the config's model: the
    training crop, else the test resize ``scale``, else the EfficientDet variant's size."""
    found = pipelines(cfg)
    for step in found.get('train', []):
        if step.get('type') == 'RandomCrop' and step.get('crop_type', 'absolute') == 'absolute':
            return _hw(step['crop_size'], wh=False)  # mmdet's crop_size is (h, w)
    for step in found.get('test', found.get('val', [])):
        if step.get('type') == 'Resize' and step.get('scale') is not None:
            return _hw(step['scale'], wh=True)  # mmdet's scale is (w, h)
    head_arch = (cfg.model.get('bbox_head') or {}).get('arch')
    if head_arch is not None:
        size = efficientdet_scale(det_phi(head_arch)).input_size
        return size, size
    raise ValueError('cannot tell the input size of this config (no absolute RandomCrop in the '
                     'training pipeline, no Resize scale in the test pipeline); pass --shape H W')


def scaled_shape(shape: Sequence[int], resolution: float) -> Tuple[int, int]:
    """``shape`` times the resolution multiplier, each side rounded to a multiple of 8."""
    return tuple(make_divisible(s * resolution, 8) for s in shape)  # type: ignore[return-value]


def scale_pipelines(cfg: Config, resolution: float) -> None:
    """Multiply every resize / crop size of every pipeline by ``resolution`` (in place)."""
    if abs(resolution - 1) < 1e-12:
        return
    for split, pipeline in pipelines(cfg).items():
        scaled = False
        for step in pipeline:
            keys = _SIZE_KEYS.get(step.get('type'), ())
            if step.get('type') == 'RandomCrop' and step.get('crop_type',
                                                              'absolute') != 'absolute':
                keys = ()  # relative crops follow the image size by themselves
            for key in keys:
                value = step.get(key)
                if value is None or (key == 'ratio_range' and step.get('scale') is not None):
                    continue  # ScaleJitter around a scale: the scale carries the resolution
                step[key] = _times(value, resolution, rounded=key in ('scale', 'crop_size'))
                scaled = True
                break
        if not scaled:
            raise ValueError(
                f'cannot scale the input resolution of the {split} pipeline: it has no '
                f'{"/".join(_SIZE_KEYS)} step with a size; add one (e.g. '
                "dict(type='Resize', scale_factor=1.0, keep_ratio=True)).")


def _times(value, factor: float, rounded: bool):
    if isinstance(value, (list, tuple)):
        return type(value)(_times(v, factor, rounded) for v in value)
    return make_divisible(value * factor, 8) if rounded else value * factor


def base_backbone(cfg: Config):
    """The config backbone's :class:`NetScale` (raises unless it is an ``EffNet``)."""
    backbone = cfg.model.get('backbone') or {}
    if backbone.get('type') != 'EffNet':
        raise ValueError(f'the scaling lab scales EffNet backbones; this config has '
                         f'{backbone.get("type")!r}. Swap in an EffNet (see configs/swap/).')
    return get_net_scale(backbone.get('arch', 'b0'), **(backbone.get('scaling') or {}))


def base_det_phi(cfg: Config) -> Optional[float]:
    """EfficientDet phi of the config's ``EffBiFPN`` neck (None for other necks)."""
    neck = cfg.model.get('neck') or {}
    return det_phi(neck.get('arch', 'd0')) if neck.get('type') == 'EffBiFPN' else None


def scale_config(cfg: Config, point: ScalePoint) -> Config:
    """A copy of ``cfg`` whose model and pipelines are scaled to ``point``, from random init."""
    import torch
    from mmdet.registry import MODELS

    cfg = copy.deepcopy(cfg)
    model = cfg.model
    base = base_backbone(cfg)
    backbone = model.backbone
    backbone.update(arch=1.0, scaling=dict(alpha=base.depth * point.depth,
                                           beta=base.width * point.width,
                                           gamma=point.resolution, lite=base.lite))
    backbone.pop('init_cfg', None)
    if 'frozen_stages' in backbone:
        backbone.frozen_stages = -1  # frozen random filters would only hurt
    cfg.load_from, cfg.resume = None, False
    with torch.device('meta'):  # shapes only: instant
        out_channels = list(MODELS.build(copy.deepcopy(backbone)).out_channels)
    neck, head = model.get('neck'), model.get('bbox_head')
    if isinstance(neck, dict) and 'in_channels' in neck:
        neck.in_channels = out_channels
    if point.det_phi is not None and neck is not None and neck.get('type') == 'EffBiFPN':
        det = efficientdet_scale(det_phi(neck.get('arch', 'd0')) + point.det_phi)
        neck.update(out_channels=det.fpn_channels, num_repeats=det.fpn_repeats)
        if isinstance(head, dict) and head.get('type') == 'EffDetHead':
            head.update(in_channels=det.fpn_channels, stacked_convs=det.head_repeats)
    scale_pipelines(cfg, point.resolution)
    return cfg


def deepest_stride(model) -> int:
    """The largest stride of a built detector's outputs (head priors, neck or backbone)."""
    for head_name in ('bbox_head', 'rpn_head'):
        generator = getattr(getattr(model, head_name, None), 'prior_generator', None)
        if generator is not None:
            return int(max(max(s) if isinstance(s, (tuple, list)) else s
                           for s in generator.strides))
    for part in (getattr(model, 'neck', None), model.backbone):
        if getattr(part, 'strides', None):
            return int(max(part.strides))
    raise ValueError('cannot tell the deepest stride of this model')


def check_input_size(point: ScalePoint, shape: Sequence[int], stride: int) -> None:
    """Refuse a point whose input is smaller than the model's deepest stride."""
    if min(shape) < stride:
        raise ValueError(
            f'{point.name}: input {shape[0]}x{shape[1]} (the reference input times '
            f'{point.resolution:.3f}) is smaller than the deepest stride {stride} of the model; '
            'drop that phi or measure at a larger --shape H W.')


def marginal_gains(points: Sequence[Dict[str, float]]) -> List[Dict[str, float]]:
    """AP gained per extra GFLOP between consecutive phis of one dimension.

    Args:
        points: ``phi``, ``gflops`` and ``ap`` of each phi, any order.

    Returns:
        list[dict]: ``phi_from``, ``phi_to``, ``gain`` (AP per GFLOP; None when FLOPs do not
        grow) per step, in phi order.
    """
    ordered = sorted(points, key=lambda p: p['phi'])
    steps = []
    for lo, hi in zip(ordered, ordered[1:]):
        extra = hi['gflops'] - lo['gflops']
        gain = (hi['ap'] - lo['ap']) / extra if extra > 0 else None
        steps.append(dict(phi_from=lo['phi'], phi_to=hi['phi'], gain=gain))
    return steps


def saturation_phi(steps: Sequence[Dict[str, float]], min_gain: float) -> Optional[float]:
    """The phi after which the marginal gain first falls below ``min_gain`` (None: never)."""
    for step in steps:
        if step['gain'] is not None and step['gain'] < min_gain:
            return step['phi_from']
    return None


# ----------------------------------------------------------------------------- running studies
@dataclass
class PlannedRun:
    """A point with its scaled config and the (H, W) input it is measured at."""
    point: ScalePoint
    cfg: Config
    shape: Tuple[int, int]


def study_parser(doc: str) -> argparse.ArgumentParser:
    """A tool's parser (first docstring paragraph as description, the rest as epilog) with
    the CONFIG argument and the options shared by the scaling tools."""
    parser = argparse.ArgumentParser(
        description=doc.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n\n'.join(doc.split('\n\n')[1:]))
    parser.add_argument('config', help='config with an EffNet backbone and an iteration-based '
                        'schedule')
    parser.add_argument('--iters', type=int,
                        help="training iterations of every run (the config's iteration-based "
                        "schedule is rescaled); default: the config's max_iters")
    parser.add_argument('--seeds', type=int, default=1,
                        help='runs per model with seeds S, S+1, ... (S: the config seed)')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input that FLOPs and latency are measured at for phi 0, scaled '
                        'with the resolution; default: the training crop, else the test size')
    parser.add_argument('--metric', default='coco/bbox_mAP', help='the accuracy compared')
    parser.add_argument('--latency-time', type=float, default=1.0,
                        help='seconds of timing per model (median latency; 0 skips it)')
    parser.add_argument('--retime', action='store_true',
                        help='train nothing: time every model already in the CSV again, in '
                        'interleaved rounds, and rewrite its latency (run it on an idle '
                        'machine; latencies taken while training shared the CPU are noisy)')
    parser.add_argument('--dry-run', action='store_true',
                        help='build and count every model (formula vs counted FLOPs growth); '
                        'train nothing')
    parser.add_argument('--verbose', action='store_true', help="show the runners' logs")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='overrides applied to the config before scaling')
    return parser


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Parse a config (with overrides) and register mmdet's and the plugin's modules."""
    from mmdet.utils import register_all_modules

    import effdet_plugin  # noqa: F401  (registers the plugin's modules)
    register_all_modules()
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def build_model(cfg: Config):
    """``cfg.model`` built on the CPU, in eval mode (random init)."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return MODELS.build(copy.deepcopy(cfg.model)).eval()


def plan(cfg: Config, points: Sequence[ScalePoint],
         shape: Optional[Sequence[int]] = None) -> List[PlannedRun]:
    """Scale the config to every point and check each input against the deepest stride."""
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise ValueError(f'duplicate points: {names}')
    shape = tuple(shape) if shape else reference_shape(cfg)
    stride = deepest_stride(build_model(scale_config(cfg, IDENTITY)))
    runs = []
    for point in points:
        run = PlannedRun(point, scale_config(cfg, point), scaled_shape(shape, point.resolution))
        check_input_size(point, run.shape, stride)
        runs.append(run)
    return runs


#: The config's own model (phi 0), the reference of every growth.
IDENTITY = ScalePoint(name='base', dim='base', phi=0.0, depth=1.0, width=1.0, resolution=1.0)


def count_plan(cfg: Config, runs: Sequence[PlannedRun],
               shape: Optional[Sequence[int]] = None) -> List[Dict[str, object]]:
    """Dry run: params and FLOPs of every planned model, and its FLOPs growth over the
    config's model, from the formula (``depth * width^2 * resolution^2``) and counted on the
    built backbone and detector at the scaled input."""
    base = plan(cfg, [IDENTITY], shape)[0]
    ref = measure(build_model(base.cfg), base.shape, latency_time=0)
    rows = []
    for run in runs:
        counted = measure(build_model(run.cfg), run.shape, latency_time=0)
        p = run.point
        rows.append(dict(p.as_row(), shape=f'{run.shape[0]}x{run.shape[1]}', **counted,
                         formula_growth=p.depth * p.width**2 * p.resolution**2,
                         backbone_growth=counted['backbone_flops'] / ref['backbone_flops'],
                         detector_growth=counted['flops'] / ref['flops']))
    return rows


def same_model(point: ScalePoint) -> Tuple[float, ...]:
    """What decides the trained model: points alike here (phi 0 of every dimension) are one
    model, trained once."""
    return tuple(round(float(v or 0.0), 9)
                 for v in (point.depth, point.width, point.resolution, point.det_phi))


def _row_model(row: Dict[str, str]) -> Tuple[float, ...]:
    return tuple(round(float(row.get(k) or 0.0), 9)
                 for k in ('depth', 'width', 'resolution', 'det_phi'))


def run_study(cfg: Config, runs: Sequence[PlannedRun], out_dir: str, csv_name: str,
              settings: dict, seeds: int = 1, metric: str = 'coco/bbox_mAP',
              latency_time: float = 1.0, quiet: bool = True) -> List[Dict[str, object]]:
    """Train and evaluate every planned run for ``seeds`` seeds, skipping runs whose row is
    already in ``out_dir/csv_name``; a point whose model was already trained under another
    name (:func:`same_model`) reuses that row. Returns the rows of the planned runs."""
    if seeds < 1:
        raise ValueError(f'--seeds must be >= 1, got {seeds}')
    results = ResultsFile(out_dir, csv_name, ('name', 'seed'), settings)
    first_seed = int((cfg.get('randomness') or {}).get('seed') or 0)
    todo = [(run, first_seed + k) for run in runs for k in range(seeds)]
    pending = [(run, seed) for run, seed in todo if not results.done(name=run.point.name,
                                                                    seed=seed)]
    if len(pending) < len(todo):
        print(f'{len(todo) - len(pending)} of {len(todo)} runs already in {results.path}: '
              'not retrained')
    finished = {(_row_model(r), int(float(r['seed']))): r for r in results.rows}
    to_train = {(same_model(run.point), seed) for run, seed in pending} - set(finished)
    iters = int(cfg.train_cfg.max_iters)
    bar = tqdm_bar(len(to_train) * iters, desc=f'{len(to_train)} runs x {iters} it')
    try:
        for run, seed in pending:
            key = (same_model(run.point), seed)
            if key in finished:  # the same model under another name (phi 0)
                trained = finished[key].get('same_as') or finished[key]['name']
                results.append(dict(finished[key], **run.point.as_row(), seed=seed,
                                    same_as=trained))
                continue
            bar.set_postfix_str(f'{run.point.name} seed {seed}')
            work_dir = osp.join(out_dir, 'runs', f'{run.point.name}_seed{seed}')
            model, metrics, train_s = run_config(run.cfg, work_dir, seed, [ProgressHook(bar)],
                                                 quiet)
            if metric not in metrics:
                # mmdet's CocoMetric reports nothing at all when a model predicts no box
                bar.write(f'{run.point.name} seed {seed}: no {metric} reported (no '
                          f'predictions?): recorded as 0')
                metrics[metric] = 0.0
            measured = measure(model, run.shape, latency_time)
            results.append(dict(run.point.as_row(), seed=seed,
                                shape=f'{run.shape[0]}x{run.shape[1]}', **measured,
                                train_s=round(train_s, 1), **metrics))
            finished[key] = results.rows[-1]
    finally:
        bar.close()
    order = {run.point.name: i for i, run in enumerate(runs)}  # plan order, then seed
    rows = [r for r in numeric_rows(results.rows) if r['name'] in order]
    return sorted(rows, key=lambda r: (order[r['name']], r['seed']))


def count_or_run(args: argparse.Namespace, cfg: Config, points: Sequence[ScalePoint],
                 csv_name: str, **settings) -> List[Dict[str, object]]:
    """What the tools do with their points: ``--dry-run`` counts them (:func:`count_plan`),
    otherwise they train at ``--iters`` (:func:`run_study`, into ``args.out/csv_name``).
    ``settings`` join what a rerun must match (config, iterations, metric, shape, options)."""
    if args.dry_run:
        return count_plan(cfg, plan(cfg, points, args.shape), args.shape)
    rescale_schedule(cfg, args.iters or cfg.train_cfg.max_iters)
    settings.update(config=osp.abspath(args.config), iters=int(cfg.train_cfg.max_iters),
                    metric=args.metric, shape=args.shape, cfg_options=args.cfg_options)
    runs = plan(cfg, points, args.shape)
    if args.retime:
        return retime_study(runs, args.out, csv_name, settings)
    return run_study(cfg, runs, args.out, csv_name, settings,
                     args.seeds, args.metric, args.latency_time, quiet=not args.verbose)


def study(args: argparse.Namespace, cfg: Config, points: Sequence[ScalePoint], csv_name: str,
          dry_run_table: Callable[[List[Dict[str, object]]], str], dry_run_title: str,
          **settings) -> List[Dict[str, object]]:
    """A tool's body: :func:`count_or_run`, then on ``--dry-run`` print ``dry_run_table`` of
    the counted rows and return them; otherwise return the per-model summary over seeds."""
    rows = count_or_run(args, cfg, points, csv_name, **settings)
    if args.dry_run:
        print(f'\n{dry_run_title} (nothing trained):\n')
        print(dry_run_table(rows))
        return rows
    return summarise(rows, args.metric)


def retime_study(runs: Sequence[PlannedRun], out_dir: str, csv_name: str, settings: dict,
                 rounds: int = 5) -> List[Dict[str, object]]:
    """Rewrite ``latency_ms`` of every finished run in ``out_dir/csv_name`` with one
    interleaved timing of all their models (:func:`time_interleaved`; latency depends on the
    architecture only, so the models are built afresh). Returns the planned runs' rows."""
    results = ResultsFile(out_dir, csv_name, ('name', 'seed'), settings)
    done = {r['name'] for r in results.rows}
    missing = [run.point.name for run in runs if run.point.name not in done]
    if missing:
        raise ValueError(f'--retime: {", ".join(missing)} not trained yet in {results.path}; '
                         'run the same command without --retime first')
    models = {}
    for run in runs:
        models.setdefault(same_model(run.point), (build_model(run.cfg), run.shape))
    print(f'timing {len(models)} models, {rounds} interleaved rounds ...')
    latency = time_interleaved(models, rounds=rounds)
    by_name = {run.point.name: round(latency[same_model(run.point)], 2) for run in runs}
    results.update('latency_ms', lambda row: by_name.get(row['name']))
    order = {run.point.name: i for i, run in enumerate(runs)}
    rows = [r for r in numeric_rows(results.rows) if r['name'] in order]
    return sorted(rows, key=lambda r: (order[r['name']], r['seed']))


def plot_ap(summary: Sequence[Dict[str, object]], x: str, out: str, title: str,
            group: str = 'dim') -> None:
    """AP (mean, std error bars over seeds) against ``x`` (``'gflops'``/``'latency_ms'``),
    one curve per ``group`` value, saved as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    labels = dict(gflops='GFLOPs (multiply-adds, one image)',
                  latency_ms='latency (ms, one image, median)')
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    groups: Dict[object, list] = {}
    for row in summary:
        if row.get(x) is not None:
            groups.setdefault(row[group], []).append(row)
    for name, members in groups.items():
        members = sorted(members, key=lambda r: (r['phi'], r[x]))
        ax.errorbar([m[x] for m in members], [m['ap'] for m in members],
                    yerr=[m['ap_std'] for m in members], marker='o', capsize=3, label=str(name))
        for m in members:
            ax.annotate(m.get('label') or f"{m['phi']:g}", (m[x], m['ap']), fontsize=7,
                        textcoords='offset points', xytext=(3, 3))
    ax.set_xlabel(labels.get(x, x))
    ax.set_ylabel('AP')
    ax.set_title(textwrap.fill(title, 90), fontsize=9)  # long titles: wrap, not cut
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
