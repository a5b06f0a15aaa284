"""How much does pre-training buy, and how much labelled data is needed? Fine-tune one config
from several starting points, with several seeds, on shares of the training images.

Every run trains the config's (iteration-based) schedule, rescaled to ``--iters``, with
mmengine's Runner and evaluates on the full validation set every ``--eval-interval``
iterations, which gives an AP-vs-iteration curve per run. Starting points (``--modes``):

- ``imagenet``: the config as it is (its backbone ``init_cfg``, e.g. ImageNet weights, and its
  ``frozen_stages``);
- ``scratch``: the backbone's own random init (``init_cfg`` removed), nothing frozen;
- ``frozen``: ImageNet backbone with every built layer frozen (EffNet ``frozen_stages`` = its
  deepest output layer, norms in eval mode): only neck and heads train;
- ``coco``: the whole detector initialised from ``--checkpoint-coco`` (a COCO-trained
  checkpoint of the same architecture; heads whose shapes differ keep their init).

The table names exactly what each row froze. ``--seeds N`` repeats every (mode, fraction) with
seeds 0..N-1 (init of new layers, data order, augmentation); per mode it reports mean +- std and
the seed-paired difference to ``scratch`` with a t-based 95% confidence interval.
``--fractions`` trains on that share of the training images: one deterministic subset per
fraction (nested: the 25% subset lies inside the 50% one), the same for every mode and seed,
written to ``WORK_DIR/subsets/``; the validation set stays whole.

Which weights are scored: with an ``EMAHook`` in the config, every evaluation during training
scores the EMA weights (what the config validates and its checkpoints carry); the table uses
those. After training, the raw (non-EMA) weights are scored once more; that row is in the CSV
/ JSON with ``weights=raw``.

Outputs in ``WORK_DIR``: ``runs.csv`` (one row per evaluation of every run; a rerun with the same
settings skips finished runs), ``transfer_eval.json``, ``transfer_eval.md`` (the tables),
``ap_vs_iters.png``, ``ap_vs_fraction.png``, one sub-folder per run (logs, last checkpoint).

Example (nuclei, 3 seeds x 2 fractions x 2 modes, AP at 100 and 300 iterations):
    python tools/analysis/transfer_eval.py configs/medical/effdet-lite0_nuclei.py \
        --iters 300 --eval-interval 100 --seeds 3 --fractions 0.25 1.0 \
        --modes imagenet scratch --work-dir work_dirs/transfer
"""
import argparse
import copy
import json
import numbers
import os
import os.path as osp
import statistics
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.hooks import Hook

from effdet_plugin.cli.data_options import add_data_args
from effdet_plugin.cli.runner import load_config
from effdet_plugin.studies.experiments import ProgressHook, ResultsFile, rescale_schedule, tqdm_bar

MODES = ('imagenet', 'scratch', 'frozen', 'coco')
INITS = dict(imagenet='ImageNet backbone', scratch='random init', frozen='ImageNet backbone',
             coco='COCO detector')
# (metric key, column title), in table order; a column appears when any run reports it.
COLUMNS = (('coco/bbox_mAP', 'bbox AP'), ('coco/bbox_mAP_50', 'bbox AP50'),
           ('coco/segm_mAP', 'segm AP'), ('coco/segm_mAP_50', 'segm AP50'),
           ('semseg/mIoU', 'mIoU'))
RUN_KEY = ('mode', 'fraction', 'seed')


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's layout and shows every option's default."""


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=_Formatter,
        epilog='\n\n'.join(__doc__.split('\n\n')[1:]))
    parser.add_argument('config', help='config with an IterBasedTrainLoop')
    parser.add_argument('--modes', nargs='+', choices=MODES,
                        help='starting points; unset: all (coco only with --checkpoint-coco)')
    parser.add_argument('--checkpoint-coco', help='COCO-trained detector checkpoint (for the '
                        '"coco" mode)')
    parser.add_argument('--iters', type=int, help="training iterations of every run (the "
                        "config's schedule is rescaled); unset: the config's max_iters")
    parser.add_argument('--eval-interval', type=int, help='evaluate every N iterations (and '
                        "at the end); unset: the config's val_interval, capped at --iters")
    parser.add_argument('--seeds', type=int, default=1,
                        help='repeats of every (mode, fraction), with seeds 0..N-1')
    parser.add_argument('--fractions', type=float, nargs='+', default=[1.0],
                        help='shares of the training images to train on')
    parser.add_argument('--subset-seed', type=int, default=0,
                        help='seed of the (nested) training subsets, shared by all runs')
    parser.add_argument('--table-iters', type=int, nargs='+',
                        help='iterations the summary table reports (from the curves); unset: '
                        'the last')
    parser.add_argument('--work-dir', default='work_dirs/transfer_eval',
                        help='one sub-folder per run, plus runs.csv, tables and plots')
    parser.add_argument('--report-only', action='store_true',
                        help='no training: tables and plots of the runs already in runs.csv '
                        '(e.g. of an interrupted study)')
    parser.add_argument('--verbose', action='store_true',
                        help="print mmengine's training logs (always in each run's folder)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='overrides applied to the config before every run')
    add_data_args(parser)
    args = parser.parse_args(argv)
    bad = [f for f in args.fractions if not 0 < f <= 1]
    if bad:
        parser.error(f'--fractions must lie in (0, 1], got {bad}')
    if args.seeds < 1:
        parser.error(f'--seeds must be >= 1, got {args.seeds}')
    return args


# ----------------------------------------------------------------------------------------------
# Run configurations
# ----------------------------------------------------------------------------------------------
def frozen_description(frozen_stages: int, out_indices: Sequence[int]) -> str:
    """What ``EffNet(frozen_stages=k)`` freezes, in words (layer 0 is the stem)."""
    if frozen_stages < 0:
        return 'nothing frozen'
    if frozen_stages == 0:
        return 'stem frozen'
    stages = 'stage 1' if frozen_stages == 1 else f'stages 1-{frozen_stages}'
    whole = ' (whole backbone)' if frozen_stages >= max(out_indices) else ''
    return f'stem + {stages} frozen{whole}'


def describe(cfg: Config, mode: str) -> str:
    """Row label of a mode config: its initialisation and exactly what it froze."""
    backbone = cfg.model.backbone
    frozen = backbone.get('frozen_stages', -1)
    frozen_text = frozen_description(frozen, backbone.get('out_indices', (3, 5, 7)))
    trained = ('neck + heads trained' if frozen >= max(backbone.get('out_indices', (3, 5, 7)))
               else 'the rest trained' if frozen >= 0 else 'all trained')
    return f'{INITS[mode]}; {frozen_text}, {trained}'


def mode_config(cfg: Config, mode: str, work_dir: str,
                checkpoint_coco: Optional[str] = None) -> Config:
    """A copy of ``cfg`` set up for one starting point."""
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = osp.join(work_dir, mode)
    # a unique name per run keeps mmengine's global logger/visualizer instances apart
    cfg.experiment_name = f'{mode}_{time.strftime("%Y%m%d_%H%M%S")}_{time.perf_counter_ns()}'
    cfg.load_from, cfg.resume = None, False
    backbone = cfg.model.backbone
    if mode == 'scratch':
        backbone.pop('init_cfg', None)  # the backbone class default (random) init
        if 'frozen_stages' in backbone:
            backbone.frozen_stages = -1  # frozen random filters would only hurt
    elif mode == 'frozen':
        if backbone.get('type') != 'EffNet':
            raise ValueError(f"'frozen' is defined for EffNet backbones, got "
                             f"{backbone.get('type')}")
        backbone.frozen_stages = max(backbone.get('out_indices', (3, 5, 7)))
    elif mode == 'coco':
        if not checkpoint_coco:
            raise ValueError("the 'coco' run needs --checkpoint-coco")
        cfg.load_from = checkpoint_coco
    elif mode != 'imagenet':
        raise ValueError(f'unknown mode {mode!r}, expected one of {MODES}')
    return cfg


def _train_dataset(cfg: Config):
    dataset = cfg.train_dataloader.dataset
    while 'dataset' in dataset:  # RepeatDataset / ClassBalancedDataset wrappers
        dataset = dataset.dataset
    if 'ann_file' not in dataset:
        raise ValueError('--fractions needs a training dataset with one COCO ann_file, got '
                         f"{dataset.get('type')} (e.g. a ConcatDataset)")
    return dataset


def write_subsets(cfg: Config, fractions: Sequence[float], out_dir: str,
                  seed: int = 0) -> Dict[float, Tuple[str, int]]:
    """One COCO file per fraction with that share of the training images (at least one).

    The images are drawn from one permutation (``seed``), so smaller subsets lie inside
    larger ones and every call with the same data and seed gives the same files.

    Returns:
        dict: fraction -> (annotation file, number of images); fraction 1.0 keeps the
        config's own file.
    """
    dataset = _train_dataset(cfg)
    ann_file = osp.join(dataset.get('data_root') or '', dataset.ann_file)
    with open(ann_file) as f:
        coco = json.load(f)
    images = sorted(coco['images'], key=lambda im: im['id'])
    order = np.random.default_rng(seed).permutation(len(images))
    os.makedirs(out_dir, exist_ok=True)
    subsets = {}
    for fraction in fractions:
        count = max(1, int(round(fraction * len(images))))
        if count == len(images):
            subsets[fraction] = (osp.abspath(ann_file), count)
            continue
        keep = {images[i]['id'] for i in order[:count]}
        subset = dict(coco, images=[im for im in images if im['id'] in keep],
                      annotations=[a for a in coco.get('annotations', [])
                                   if a['image_id'] in keep])
        path = osp.abspath(osp.join(out_dir, f'train_fraction{fraction:g}_seed{seed}.json'))
        with open(path, 'w') as f:
            json.dump(subset, f)
        subsets[fraction] = (path, count)
    return subsets


def expected_metrics(cfg: Config) -> List[str]:
    """Table keys the config's evaluators produce."""
    evaluators = cfg.val_evaluator
    keys = []
    for evaluator in evaluators if isinstance(evaluators, list) else [evaluators]:
        if evaluator.get('type') == 'CocoMetric':
            metrics = evaluator.get('metric', 'bbox')
            for metric in [metrics] if isinstance(metrics, str) else metrics:
                keys += [f'coco/{metric}_mAP', f'coco/{metric}_mAP_50']
        elif 'SemSeg' in evaluator.get('type', ''):
            keys.append('semseg/mIoU')
    return keys


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------
class CurveHook(Hook):
    """Records every validation during training: (iteration, metrics)."""
    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self.points: List[Tuple[int, Dict[str, float]]] = []

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        self.points.append((runner.iter, {k: float(v) for k, v in (metrics or {}).items()
                                          if isinstance(v, numbers.Real)}))


@torch.no_grad()
def evaluate_current_weights(runner) -> Dict[str, float]:
    """Score the weights the model holds now, without the validation hooks (so an EMAHook
    does not swap its averaged weights in)."""
    loop = runner.val_loop
    runner.model.eval()
    for data_batch in loop.dataloader:
        loop.evaluator.process(data_samples=runner.model.val_step(data_batch),
                               data_batch=data_batch)
    metrics = loop.evaluator.evaluate(len(loop.dataloader.dataset))
    return {k: float(v) for k, v in metrics.items() if isinstance(v, numbers.Real)}


def run_one(cfg: Config, bar=None) -> List[Dict[str, object]]:
    """Train one run; one row per evaluation: iteration, which weights, metrics, seconds."""
    from mmengine.runner import Runner

    runner = Runner.from_cfg(cfg)
    curve = CurveHook()
    runner.register_hook(curve)
    if bar is not None:
        runner.register_hook(ProgressHook(bar))
    ema = any(type(h).__name__ == 'EMAHook' for h in runner.hooks)
    start = time.perf_counter()
    runner.train()
    train_s = time.perf_counter() - start
    points = [(it, 'ema' if ema else 'raw', m) for it, m in curve.points]
    if ema:  # the weights the optimiser produced, for comparison
        points.append((runner.iter, 'raw', evaluate_current_weights(runner)))
    rows = []
    for it, weights, metrics in points:
        # CocoMetric returns nothing at all when a model predicts nothing: that is AP 0
        for key in expected_metrics(cfg):
            metrics.setdefault(key, 0.0)
        rows.append(dict(iter=it, weights=weights, train_s=round(train_s, 1), **metrics))
    return rows


# ----------------------------------------------------------------------------------------------
# Statistics, tables, plots
# ----------------------------------------------------------------------------------------------
def mean_ci(values: Sequence[float], level: float = 0.95) -> Tuple[float, float]:
    """Mean and the half-width of its t-based confidence interval (nan for one value)."""
    from scipy import stats
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return mean, float('nan')
    sem = statistics.stdev(values) / n**0.5
    return mean, float(stats.t.ppf(0.5 + level / 2, n - 1)) * sem


def _f(value: float, digits: int = 3) -> str:
    return '-' if value is None or value != value else f'{value:.{digits}f}'


def _metric_columns(rows: Sequence[dict]) -> List[Tuple[str, str]]:
    return [(key, title) for key, title in COLUMNS if any(r.get(key) is not None for r in rows)]


def _final(rows: Sequence[dict], weights: str) -> List[dict]:
    """Per run, its last evaluation of ``weights``."""
    last: Dict[tuple, dict] = {}
    for row in rows:
        if row['weights'] == weights:
            key = tuple(row[k] for k in RUN_KEY)
            if key not in last or row['iter'] >= last[key]['iter']:
                last[key] = row
    return list(last.values())


def runs_table(rows: Sequence[dict], weights: str) -> str:
    """One row per run (its last evaluation)."""
    final = _final(rows, weights)
    columns = _metric_columns(final)
    header = ['fraction', 'train images', 'mode', 'seed', 'iters'] + [t for _, t in columns] + [
        'train s']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for r in final:
        cells = [f"{r['fraction']:g}", str(r['train_images']), r['mode'], str(r['seed']),
                 str(r['iter'])] + [_f(r.get(k)) for k, _ in columns] + [f"{r['train_s']:.0f}"]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def summarise(rows: Sequence[dict], metric: str, weights: str,
              table_iters: Optional[Sequence[int]] = None) -> List[dict]:
    """Per (fraction, iteration, mode): n, mean and std of ``metric`` (and the other table
    metrics), and the seed-paired difference to ``scratch`` with its 95% CI."""
    rows = [r for r in rows if r['weights'] == weights]
    evaluated = sorted({r['iter'] for r in rows})
    iters = [i for i in (table_iters or evaluated[-1:]) if i in evaluated]
    columns = [k for k, _ in _metric_columns(rows)]
    out = []
    for fraction in sorted({r['fraction'] for r in rows}):
        for it in iters:
            at = [r for r in rows if r['fraction'] == fraction and r['iter'] == it]
            by_mode: Dict[str, Dict[int, dict]] = {}
            for r in at:
                by_mode.setdefault(r['mode'], {})[r['seed']] = r
            for mode, seeds in by_mode.items():
                summary = dict(fraction=fraction, iter=it, mode=mode, n=len(seeds),
                               label=next(iter(seeds.values()))['label'])
                for key in columns:
                    values = [s[key] for s in seeds.values() if s.get(key) is not None]
                    summary[key] = statistics.fmean(values) if values else None
                    summary[f'{key}_std'] = (statistics.stdev(values) if len(values) > 1 else
                                             float('nan'))
                scratch = by_mode.get('scratch', {})
                paired = [seeds[s][metric] - scratch[s][metric] for s in seeds if s in scratch]
                if mode != 'scratch' and paired:
                    summary['diff'], summary['diff_ci'] = mean_ci(paired)
                    summary['pairs'] = len(paired)
                out.append(summary)
    return out


def summary_table(summary: Sequence[dict], metric: str, metric_title: str) -> str:
    columns = [(k, t) for k, t in COLUMNS if any(s.get(k) is not None for s in summary)]
    header = ['fraction', 'iters', 'mode', 'what is trained', 'seeds'] + [
        f'{t} mean ± std' for _, t in columns] + [f'Δ {metric_title} vs scratch [95% CI]']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for s in summary:
        diff = '-'
        if 'diff' in s:
            ci = s['diff_ci']
            diff = (f"{s['diff']:+.3f} [{s['diff'] - ci:+.3f}, {s['diff'] + ci:+.3f}]"
                    if ci == ci else f"{s['diff']:+.3f} (1 pair: no CI)")
        cells = [f"{s['fraction']:g}", str(s['iter']), s['mode'], s['label'], str(s['n'])]
        cells += [f"{_f(s[k])} ± {_f(s[f'{k}_std'])}" for k, _ in columns]
        lines.append('| ' + ' | '.join(cells + [diff]) + ' |')
    return '\n'.join(lines)


def plot(rows: Sequence[dict], metric: str, metric_title: str, weights: str,
         out_dir: str) -> List[str]:
    """``ap_vs_iters.png`` (mean +- std over seeds, one panel per fraction) and
    ``ap_vs_fraction.png`` (last evaluation, error bars +- std over seeds)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r['weights'] == weights and r.get(metric) is not None]
    fractions = sorted({r['fraction'] for r in rows})
    modes = list(dict.fromkeys(r['mode'] for r in rows))

    def stats_of(selected):
        values = [r[metric] for r in selected]
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    fig, axes = plt.subplots(1, len(fractions), figsize=(4.5 * len(fractions), 3.6),
                             squeeze=False, sharey=True)
    for ax, fraction in zip(axes[0], fractions):
        for mode in modes:
            mine = [r for r in rows if r['mode'] == mode and r['fraction'] == fraction]
            iters = sorted({r['iter'] for r in mine})
            if not iters:
                continue
            mean, std = np.array([stats_of([r for r in mine if r['iter'] == i]) for i in iters]).T
            ax.plot(iters, mean, marker='o', label=mode)
            ax.fill_between(iters, mean - std, mean + std, alpha=0.2)
        ax.set_title(f'{fraction:.0%} of the training images')
        ax.set_xlabel('iteration')
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f'{metric_title} ({weights.upper()} weights)')
    axes[0][-1].legend()
    fig.suptitle('mean ± std over seeds', fontsize=9)
    fig.tight_layout()
    curves = osp.join(out_dir, 'ap_vs_iters.png')
    fig.savefig(curves, dpi=110)
    plt.close(fig)

    final = _final(rows, weights)
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for mode in modes:
        points = [(f, *stats_of([r for r in final if r['mode'] == mode and r['fraction'] == f]))
                  for f in fractions if any(r['mode'] == mode and r['fraction'] == f
                                            for r in final)]
        x, mean, std = np.array(points).T
        ax.errorbar(x, mean, yerr=std, marker='o', capsize=4, label=mode)
    ax.set_xlabel('share of the training images')
    ax.set_ylabel(f'{metric_title}, last iteration ({weights.upper()} weights)')
    ax.set_title('error bars: ± std over seeds')
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    label_efficiency = osp.join(out_dir, 'ap_vs_fraction.png')
    fig.savefig(label_efficiency, dpi=110)
    plt.close(fig)
    return [curves, label_efficiency]


# ----------------------------------------------------------------------------------------------
def _parse(row: Dict[str, str]) -> Dict[str, object]:
    out: Dict[str, object] = {}
    for key, value in row.items():
        if key in ('mode', 'weights', 'label', 'ann_file'):
            out[key] = value
        elif key in ('seed', 'iter', 'train_images'):
            out[key] = int(float(value))
        else:
            out[key] = float(value) if value != '' else None
    return out


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    args = parse_args(argv)
    from mmdet.utils import register_all_modules

    import effdet_plugin  # noqa: F401  (registers the plugin's modules)
    register_all_modules()

    cfg = load_config(args.config, args.cfg_options, args.work_dir, data_args=args)
    iters = args.iters or cfg.train_cfg.get('max_iters')
    interval = args.eval_interval or min(cfg.train_cfg.get('val_interval', iters), iters)
    rescale_schedule(cfg, iters)
    cfg.train_cfg.val_interval = interval  # the curve; the last iteration is always evaluated
    if args.verbose is False:
        cfg.log_level = 'WARNING'
    modes: List[str] = args.modes or [m for m in MODES if m != 'coco' or args.checkpoint_coco]
    metric_keys = expected_metrics(cfg)
    metric = metric_keys[0] if metric_keys else 'coco/bbox_mAP'
    metric_title = dict(COLUMNS).get(metric, metric)

    settings = dict(config=args.config, iters=iters, eval_interval=interval,
                    subset_seed=args.subset_seed, cfg_options=args.cfg_options or {},
                    checkpoint_coco=args.checkpoint_coco)
    results = ResultsFile(args.work_dir, 'runs.csv', RUN_KEY, settings)
    subsets = write_subsets(cfg, args.fractions, osp.join(args.work_dir, 'subsets'),
                            args.subset_seed)
    plan = [(fraction, seed, mode) for fraction in args.fractions
            for seed in range(args.seeds) for mode in modes]
    pending = [] if args.report_only else [
        p for p in plan if not results.done(mode=p[2], fraction=p[0], seed=p[1])]
    print(f'transfer_eval: {len(plan)} runs ({len(plan) - len(pending)} already in '
          f'{results.path}), {iters} iterations each, evaluated every {interval}', flush=True)
    bar = tqdm_bar(len(pending) * iters, 'transfer_eval') if pending else None
    for k, (fraction, seed, mode) in enumerate(pending, 1):
        ann_file, count = subsets[fraction]
        run_cfg = mode_config(cfg, mode,
                              osp.join(args.work_dir, f'fraction{fraction:g}_seed{seed}'),
                              args.checkpoint_coco)
        run_cfg.randomness = dict(run_cfg.get('randomness') or {}, seed=seed)
        _train_dataset(run_cfg).ann_file = ann_file
        label = describe(run_cfg, mode)
        print(f'[{k}/{len(pending)}] {mode} ({label}), fraction {fraction:g} ({count} images), '
              f'seed {seed}', flush=True)
        run_rows = run_one(run_cfg, bar)  # appended together: a run is done once all are in
        for row in run_rows:
            results.append(dict(mode=mode, fraction=fraction, seed=seed, train_images=count,
                                ann_file=ann_file, label=label, **row))
    if bar is not None:
        bar.close()

    rows = [_parse(r) for r in results.rows]
    rows = [r for r in rows if (r['fraction'], r['seed'], r['mode']) in set(plan)]
    weights = 'ema' if any(r['weights'] == 'ema' for r in rows) else 'raw'
    summary = summarise(rows, metric, weights, args.table_iters)
    which = ('EMA weights (the EMAHook average the config validates and checkpoints carry; '
             'raw weights in runs.csv)' if weights == 'ema' else 'the trained weights')
    seeds = sorted({r['seed'] for r in rows})
    title = (f'Transfer comparison: `{args.config}`, {iters} iterations, seeds '
             f'{", ".join(map(str, seeds))}, scores of {which}')
    text = (f'{title}\n\nPer run (last evaluation):\n\n{runs_table(rows, weights)}\n\n'
            f'Summary (Δ: seed-paired difference to scratch, t-based 95% CI):\n\n'
            f'{summary_table(summary, metric, metric_title)}\n')
    plots = plot(rows, metric, metric_title, weights, args.work_dir)
    with open(osp.join(args.work_dir, 'transfer_eval.md'), 'w') as f:
        f.write(text)
    report = dict(settings, seeds=args.seeds, fractions=args.fractions, modes=modes,
                  weights=weights, metric=metric, runs=rows, summary=summary, plots=plots)
    with open(osp.join(args.work_dir, 'transfer_eval.json'), 'w') as f:
        json.dump(report, f, indent=1)
    print(f'\n{text}\nwrote {results.path}, transfer_eval.md/.json and {", ".join(plots)}')
    return report


if __name__ == '__main__':
    main()
