"""Running a scaling study: plan the scaled models, count them (dry run), train them through
the studies' runner, time them again (retime), and summarise them over seeds; the options the
scaling commands share.
"""
import argparse
import os.path as osp
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config, DictAction

from ..measure import measure, time_interleaved
from ..runner import Job, ResultsFile, rescale_schedule, run_jobs, train
from ..summary import parse_rows, plot_series, summarise
from .points import IDENTITY, ScalePoint, same_model
from .scaled_config import (
    build_model,
    check_input_size,
    deepest_stride,
    reference_shape,
    scale_config,
    scaled_shape,
)


@dataclass
class PlannedRun:
    """A point with its scaled config and the (H, W) input it is measured at."""
    point: ScalePoint
    cfg: Config
    shape: Tuple[int, int]


def study_parser(doc: str) -> argparse.ArgumentParser:
    """A command's parser (first docstring paragraph as description, the rest as epilog) with
    the CONFIG argument and the options shared by the scaling commands."""
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
    iters = int(cfg.train_cfg.max_iters)
    finished = {(_row_model(r), int(float(r['seed']))): r for r in results.rows}
    trains = set(finished)  # models that are (or will be, by an earlier job) trained
    jobs = []
    for run in runs:
        for seed in range(first_seed, first_seed + seeds):
            model = (same_model(run.point), seed)
            key = dict(name=run.point.name, seed=seed)
            first = model not in trains and not results.done(**key)
            trains.add(model)
            jobs.append(Job(key, f'{run.point.name} seed {seed}', iters if first else 0,
                            (run, model)))

    def run_one(job: Job, bar) -> List[Dict[str, object]]:
        run, model = job.spec
        seed = job.key['seed']
        if model in finished:  # the same model under another name (phi 0)
            trained = finished[model].get('same_as') or finished[model]['name']
            return [dict(finished[model], **run.point.as_row(), seed=seed, same_as=trained)]
        work_dir = osp.join(out_dir, 'runs', f'{run.point.name}_seed{seed}')
        result = train(run.cfg, work_dir, seed, bar, quiet)
        metrics = result.metrics
        if metric not in metrics:
            # mmdet's CocoMetric reports nothing at all when a model predicts no box
            bar.write(f'{run.point.name} seed {seed}: no {metric} reported (no '
                      f'predictions?): recorded as 0')
            metrics[metric] = 0.0
        row = dict(run.point.as_row(), seed=seed, shape=f'{run.shape[0]}x{run.shape[1]}',
                   **measure(result.model, run.shape, latency_time),
                   train_s=round(result.train_s, 1), **metrics)
        finished[model] = {k: '' if v is None else str(v) for k, v in row.items()}
        return [row]

    run_jobs(jobs, results, run_one, name=f'{csv_name[:-4]} ({len(runs)} models)')
    return _planned_rows(results, runs)


def _planned_rows(results: ResultsFile, runs: Sequence[PlannedRun]) -> List[Dict[str, object]]:
    """The parsed rows of the planned runs, in plan order, then seed."""
    order = {run.point.name: i for i, run in enumerate(runs)}
    rows = [r for r in parse_rows(results.rows, text=('name', 'dim', 'shape', 'same_as'))
            if r['name'] in order]
    return sorted(rows, key=lambda r: (order[r['name']], r['seed']))


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
    return _planned_rows(results, runs)


def count_or_run(args: argparse.Namespace, cfg: Config, points: Sequence[ScalePoint],
                 csv_name: str, **settings) -> List[Dict[str, object]]:
    """What the commands do with their points: ``--dry-run`` counts them (:func:`count_plan`),
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


def summarise_points(rows: Sequence[Dict[str, object]], metric: str) -> List[Dict[str, object]]:
    """Per point (name), in first-seen order: its first row's columns, ``ap`` and ``ap_std``
    (mean and std of ``metric`` over the seeds; std 0 for one seed), ``seeds``, ``gflops``
    and the mean ``latency_ms``."""
    out = []
    for s in summarise(rows, ('name', ), [metric, 'latency_ms']):
        out.append(dict(s, ap=s[metric] or 0.0,
                        ap_std=s[f'{metric}_std'] if s['n'] > 1 else 0.0, seeds=s['n'],
                        gflops=float(s['flops']) / 1e9))
    return out


def study(args: argparse.Namespace, cfg: Config, points: Sequence[ScalePoint], csv_name: str,
          dry_run_table: Callable[[List[Dict[str, object]]], str], dry_run_title: str,
          **settings) -> List[Dict[str, object]]:
    """A command's body: :func:`count_or_run`, then on ``--dry-run`` print ``dry_run_table``
    of the counted rows and return them; otherwise return the per-model summary over seeds
    (:func:`summarise_points`)."""
    rows = count_or_run(args, cfg, points, csv_name, **settings)
    if args.dry_run:
        print(f'\n{dry_run_title} (nothing trained):\n')
        print(dry_run_table(rows))
        return rows
    return summarise_points(rows, args.metric)


def plot_ap(summary: Sequence[Dict[str, object]], x: str, out: str, title: str,
            group: str = 'dim') -> str:
    """AP (mean, std error bars over seeds) against ``x`` (``'gflops'``/``'latency_ms'``),
    one curve per ``group`` value, saved as a PNG."""
    labels = dict(gflops='GFLOPs (multiply-adds, one image)',
                  latency_ms='latency (ms, one image, median)')
    series: Dict[str, list] = {}
    for row in sorted(summary, key=lambda r: (r['phi'], r[x] or 0)):
        if row.get(x) is not None:
            series.setdefault(str(row[group]), []).append(
                (row[x], row['ap'], row['ap_std'], row.get('label') or f"{row['phi']:g}"))
    return plot_series(series, out, labels.get(x, x), 'AP', title)
