"""Normalisation at small batch: the same model and data trained with BatchNorm, frozen BatchNorm
and GroupNorm at several images per step, with several seeds.

Each norm is set in every part that takes one (EffNet backbone, BiFPN neck, EfficientDet head):

- ``bn``: the config's BatchNorm, batch statistics in training;
- ``frozen_bn``: the same BatchNorm with ``norm_eval=True``: it normalises with the running
  statistics the model starts from and never updates them, affine weight/bias trained. Layers
  with pretrained weights keep those statistics; layers trained from scratch hold mean 0 and
  variance 1, so there the norm is an affine map only (no normalisation);
- ``gn``: GroupNorm with at most ``--gn-groups`` groups per layer (each layer the largest
  divisor of its width up to it, :mod:`effdet_plugin.models.utils.norm`); BatchNorm weights of
  a pretrained backbone load as affine only.

Same effective learning rate: every run sees the same number of images. ``--iters`` are the
iterations at ``--ref-batch`` images per step; a run at batch ``B`` trains
``iters * ref_batch / B`` iterations (the schedule's warm-up and cosine keep their proportions,
:func:`~.runner.rescale_schedule`), at the learning rate ``lr * B / ref_batch`` (``--lr-scaling
linear``, the linear scaling rule; ``sqrt`` and ``none`` on request) applied to the optimizer's
``lr`` and every scheduler's ``eta_min``. An ``EMAHook`` keeps its horizon in images: momentum
x ``B / ref_batch``, warm-up ``gamma`` x ``ref_batch / B``.

Scores: the final validation (EMA weights when the config has an ``EMAHook``, as it validates
and checkpoints them) and the raw weights once more (``raw_*`` columns). A run whose loss turns
NaN/inf stops there (``status=diverged``), as does BatchNorm at 1 image per step on a 1x1
feature map, which PyTorch refuses (``status=failed``; P7 of a 128-px input): both are kept
with AP 0 (what such a training leaves a user), and the table counts them.

Outputs in ``--work-dir``: ``runs.csv`` (one row per run: norm, batch, seed, iterations, learning
rate, AP, seconds, git commit and torch thread count; a rerun with the same settings skips
finished runs), ``norm_study.json``, ``norm_study.md`` (per-run table; per norm and batch mean
± std over seeds with the seed-paired difference to ``--baseline`` at the same batch and to the
largest batch of the same norm, t-based 95% intervals), ``ap_vs_batch.png`` (one line per norm,
± std over seeds), one sub-folder per run (logs, last checkpoint).

Example (D0-style with BatchNorm everywhere, nuclei demo data, 1 and 4 images per step):
    python tools/analysis/norm_study.py configs/demo/effdet_d0_nuclei_scratch.py \
        --norms bn gn --batches 1 4 --ref-batch 4 --iters 100 --seeds 2 \
        --work-dir work_dirs/norm_study
"""
import argparse
import copy
import json
import math
import os.path as osp
from typing import Dict, List, Optional, Sequence

from mmengine.config import Config

from . import summary as stats
from .runner import (
    Job,
    ResultsFile,
    add_study_args,
    evaluate_current_weights,
    load_study_config,
    provenance,
    rescale_schedule,
    run_jobs,
    study_parser,
    train,
)

NORMS = ('bn', 'frozen_bn', 'gn')
LABELS = dict(bn='BN (batch statistics)',
              frozen_bn='frozen BN (statistics as loaded, affine trained)',
              gn='GN (groups: largest divisor of the width up to --gn-groups)')
#: Parts of the model that take the norm, and the types that accept ``norm_eval``.
PARTS = ('backbone', 'neck', 'bbox_head')
OUR_TYPES = ('EffNet', 'EffBiFPN', 'EffDetHead')
LR_SCALINGS = dict(linear=lambda r: r, sqrt=math.sqrt, none=lambda r: 1.0)
METRICS = (('coco/bbox_mAP', 'bbox AP'), ('coco/bbox_mAP_50', 'bbox AP50'))
RUN_KEY = ('norm', 'batch', 'seed')
TEXT_COLUMNS = ('norm', 'label', 'status', 'commit', 'weights', 'error')
# PyTorch's BatchNorm at batch 1 on a 1x1 map (P7 of a 128-px input): no statistics to take
SINGLE_VALUE = 'Expected more than 1 value per channel when training'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = study_parser(__doc__, 'config with an IterBasedTrainLoop and BatchNorm in '
                          'EffNet / EffBiFPN / EffDetHead')
    parser.add_argument('--norms', nargs='+', choices=NORMS, default=list(NORMS),
                        help='norms to compare (set in backbone, neck and head)')
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 2, 4, 8],
                        help='images per step')
    parser.add_argument('--ref-batch', type=int,
                        help="the batch --iters and the config's learning rate are for; "
                        "unset: the config's train_dataloader.batch_size")
    parser.add_argument('--iters', type=int, help="iterations at --ref-batch (other batches: "
                        "the same number of images); unset: the config's max_iters")
    parser.add_argument('--lr-scaling', choices=list(LR_SCALINGS), default='linear',
                        help='learning rate at batch B: lr x (B / ref-batch), its square root, '
                        'or unchanged')
    parser.add_argument('--seeds', type=int, default=1, help='seeds 0..N-1 of every run')
    parser.add_argument('--gn-groups', type=int, default=32,
                        help='most GroupNorm groups per layer')
    parser.add_argument('--baseline', choices=NORMS, default='bn',
                        help='the norm the others are compared with, seed-paired, per batch')
    add_study_args(parser, 'work_dirs/norm_study')
    args = parser.parse_args(argv)
    for name in ('batches', 'seeds', 'gn_groups', 'ref_batch', 'iters'):
        values = getattr(args, name)
        if values is not None and min(values if isinstance(values, list) else [values]) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got {values}')
    return args


def norm_config(cfg: Config, norm: str, gn_groups: int = 32) -> Config:
    """A copy of ``cfg`` with ``norm`` in backbone, neck and head (see the module doc)."""
    cfg = copy.deepcopy(cfg)
    for part in PARTS:
        module = cfg.model.get(part)
        if module is None:
            continue
        if module.get('type') not in OUR_TYPES:
            raise ValueError(f'the norm study sets norms in {", ".join(OUR_TYPES)}; the '
                             f"config's {part} is {module.get('type')}")
        norm_cfg = module.get('norm_cfg') or dict(type='BN', eps=1e-3, momentum=0.01)
        if norm in ('bn', 'frozen_bn') and 'BN' not in str(norm_cfg.get('type')):
            raise ValueError(f"'{norm}' needs a config with BatchNorm; its {part} has "
                             f'norm_cfg={dict(norm_cfg)}')
        if norm == 'gn':
            norm_cfg = dict(type='GN', num_groups=gn_groups)
        module['norm_cfg'] = norm_cfg  # replaced (ConfigDict.update would merge BN keys in)
        module['norm_eval'] = norm == 'frozen_bn'
    return cfg


def batch_config(cfg: Config, batch: int, ref_batch: int, iters: int,
                 lr_scaling: str = 'linear') -> Config:
    """A copy of ``cfg`` at ``batch`` images per step that sees the images of ``iters``
    steps at ``ref_batch``, with the learning rate (and EMA) scaled (see the module doc)."""
    cfg = copy.deepcopy(cfg)
    ratio = batch / ref_batch
    factor = LR_SCALINGS[lr_scaling](ratio)
    cfg.train_dataloader.batch_size = batch
    if cfg.get('auto_scale_lr') is not None:
        cfg.auto_scale_lr.enable = False  # scaled here, once
    cfg.optim_wrapper.optimizer.lr *= factor
    schedulers = cfg.get('param_scheduler') or []
    for sched in [schedulers] if isinstance(schedulers, dict) else schedulers:
        if 'eta_min' in sched:
            sched.eta_min *= factor
    rescale_schedule(cfg, max(1, round(iters / ratio)))
    for hook in cfg.get('custom_hooks') or []:
        if hook.get('type') == 'EMAHook':
            hook.momentum = min(0.5, hook.get('momentum', 2e-4) * ratio)
            if 'gamma' in hook:
                hook.gamma = max(1, round(hook.gamma / ratio))
    return cfg


def plan_jobs(cfg: Config, args: argparse.Namespace, ref_batch: int, iters: int) -> List[Job]:
    """One job per (norm, batch, seed)."""
    jobs = []
    for norm in args.norms:
        normed = norm_config(cfg, norm, args.gn_groups)
        for batch in args.batches:
            run_cfg = batch_config(normed, batch, ref_batch, iters, args.lr_scaling)
            run_iters = run_cfg.train_cfg.max_iters
            for seed in range(args.seeds):
                job_cfg = copy.deepcopy(run_cfg)
                job_cfg.work_dir = osp.join(args.work_dir, f'{norm}_batch{batch}_seed{seed}')
                job_cfg.randomness = dict(job_cfg.get('randomness') or {}, seed=seed)
                key = dict(norm=norm, batch=batch, seed=seed)
                info = dict(key, label=LABELS[norm], iters=run_iters, images=run_iters * batch,
                            lr=run_cfg.optim_wrapper.optimizer.lr)
                jobs.append(Job(key, f'{norm}, {batch} images/step, {run_iters} iterations, '
                                f'lr {info["lr"]:.3g}, seed {seed}', run_iters, (job_cfg, info)))
    return jobs


def _scores(metrics: Dict[str, float], prefix: str = '') -> Dict[str, float]:
    # mmdet's COCO metric returns nothing when a model detects nothing: that is AP 0
    return {prefix + key: float(metrics.get(key, 0.0)) for key, _ in METRICS}


def run_one(job: Job, bar=None, verbose: bool = False) -> List[Dict[str, object]]:
    """Train one job; its row (status ``ok``; ``diverged``: NaN/inf loss or weights;
    ``failed``: BatchNorm met a single value per channel; both with AP 0)."""
    from ..checkpoint import NonFiniteWeightsError
    from ..engine import NonFiniteLossError

    cfg, info = job.spec
    row = dict(info, **provenance())
    start = bar.n if bar is not None else 0
    try:
        result = train(cfg, cfg.work_dir, cfg.randomness.seed, bar, quiet=not verbose)
    except (NonFiniteLossError, NonFiniteWeightsError, ValueError) as e:
        if isinstance(e, ValueError) and SINGLE_VALUE not in str(e):
            raise
        if bar is not None:  # the iterations it did not train
            bar.update(max(0, job.iters - (bar.n - start)))
        status = 'failed' if isinstance(e, ValueError) else 'diverged'
        first = str(e).splitlines()[0][:200]
        return [dict(row, status=status, error=first, weights='-', **_scores({}),
                     **_scores({}, 'raw_'))]
    raw = evaluate_current_weights(result.runner) if result.ema else result.metrics
    return [dict(row, status='ok', weights='ema' if result.ema else 'raw',
                 train_s=round(result.train_s, 1), **_scores(result.metrics),
                 **_scores(raw, 'raw_'))]


def summarise(rows: Sequence[dict], metric: str, baseline: str) -> List[dict]:
    """Per (norm, batch): mean ± std over seeds, seed-paired Δ to ``baseline`` at the same
    batch (``diff``/``diff_ci``) and to the same norm's largest batch (``diff_batch``/
    ``diff_batch_ci``), runs that diverged or failed counted (``failed``)."""
    rows = sorted(rows, key=lambda r: (r['norm'], r['batch']))
    columns = [k for k, _ in METRICS] + [f'raw_{k}' for k, _ in METRICS]
    by_norm = stats.summarise(rows, ('batch', 'norm'), columns, keep=('label', 'iters', 'lr'),
                              baseline=dict(norm=baseline), paired=metric)
    largest = max(r['batch'] for r in rows)
    by_batch = {(s['norm'], s['batch']): s for s in stats.summarise(
        rows, ('norm', 'batch'), [metric], baseline=dict(batch=largest), paired=metric)}
    out = []
    for s in sorted(by_norm, key=lambda s: (s['norm'], s['batch'])):
        other = by_batch[(s['norm'], s['batch'])]
        if 'diff' in other:
            s.update(diff_batch=other['diff'], diff_batch_ci=other['diff_ci'])
        s['failed'] = sum(r['status'] != 'ok' for r in rows
                            if (r['norm'], r['batch']) == (s['norm'], s['batch']))
        out.append(s)
    return out


def _diff(summary: dict, key: str) -> str:
    if key not in summary:
        return '-'
    return stats.format_diff(dict(diff=summary[key], diff_ci=summary[f'{key}_ci']))


def report_text(title: str, rows: Sequence[dict], summary: Sequence[dict], metric: str,
                baseline: str, largest: int) -> str:
    """The markdown of ``norm_study.md``."""
    name = dict(METRICS)[metric]
    runs = stats.format_markdown(
        ['norm', 'images/step', 'seed', 'iters', 'lr', 'status', name, f'raw {name}',
         'train s', 'commit', 'threads'],
        [[r['norm'], r['batch'], r['seed'], r['iters'], f"{r['lr']:.3g}", r['status'],
          stats.fmt(r[metric]), stats.fmt(r[f'raw_{metric}']), stats.fmt(r.get('train_s'), 0),
          r['commit'], r['threads']] for r in rows])
    table = stats.format_markdown(
        ['norm', 'images/step', 'iters', 'lr', 'seeds', 'diverged/failed',
         f'{name} mean ± std',
         f'raw {name} mean ± std', f'Δ vs {baseline} (same batch) [95% CI]',
         f'Δ vs batch {largest} (same norm) [95% CI]'],
        [[s['norm'], s['batch'], s['iters'], f"{s['lr']:.3g}", s['n'], s['failed'],
          f"{stats.fmt(s[metric])} ± {stats.fmt(s[f'{metric}_std'])}",
          f"{stats.fmt(s[f'raw_{metric}'])} ± {stats.fmt(s[f'raw_{metric}_std'])}",
          _diff(s, 'diff'), _diff(s, 'diff_batch')] for s in summary])
    return (f'{title}\n\nPer run:\n\n{runs}\n\nPer norm and batch (Δ: seed-paired difference, '
            f't-based 95% CI; an interval that contains 0 does not decide):\n\n{table}\n')


def plot(summary: Sequence[dict], metric: str, out_dir: str, title: str) -> str:
    """``ap_vs_batch.png``: one line per norm, error bars ± std over seeds."""
    series: Dict[str, list] = {}
    for s in sorted(summary, key=lambda s: s['batch']):
        series.setdefault(s['norm'], []).append(
            (s['batch'], s[metric], s[f'{metric}_std'], None))
    return stats.plot_series(series, osp.join(out_dir, 'ap_vs_batch.png'), 'images per step',
                             dict(METRICS)[metric], title)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    args = parse_args(argv)
    cfg = load_study_config(args.config, args.cfg_options, args.work_dir, data_args=args)
    ref_batch = args.ref_batch or cfg.train_dataloader.batch_size
    iters = args.iters or cfg.train_cfg.get('max_iters')
    if args.baseline not in args.norms:
        args.baseline = args.norms[0]
    metric = METRICS[0][0]
    settings = dict(config=args.config, iters=iters, ref_batch=ref_batch,
                    lr_scaling=args.lr_scaling, gn_groups=args.gn_groups,
                    cfg_options=args.cfg_options or {},
                    data={k: getattr(args, k, None) for k in ('root', 'train_ann', 'val_ann')})
    results = ResultsFile(args.work_dir, 'runs.csv', RUN_KEY, settings)
    jobs = plan_jobs(cfg, args, ref_batch, iters)
    if not args.report_only:
        run_jobs(jobs, results, lambda job, bar: run_one(job, bar, args.verbose),
                 name='norm_study', detail=f', {iters * ref_batch} images per run',
                 shard=args.shard)
    planned = {tuple(job.key[k] for k in RUN_KEY) for job in jobs}
    rows = [r for r in stats.parse_rows(results.rows, TEXT_COLUMNS)
            if tuple(r[k] for k in RUN_KEY) in planned]
    if not rows:
        print(f'no finished runs in {results.path} yet')
        return dict(settings, runs=[], summary=[])
    rows.sort(key=lambda r: (r['norm'], r['batch'], r['seed']))
    summary = summarise(rows, metric, args.baseline)
    largest = max(r['batch'] for r in rows)
    weights = 'EMA weights' if any(r['weights'] == 'ema' for r in rows) else 'trained weights'
    title = (f'Normalisation at small batch: `{args.config}`, {iters * ref_batch} images per run '
             f'({iters} iterations at {ref_batch} images/step), lr scaled {args.lr_scaling}, '
             f'seeds {", ".join(map(str, sorted({r["seed"] for r in rows})))}, scores of the '
             f'{weights}')
    text = report_text(title, rows, summary, metric, args.baseline, largest)
    png = plot(summary, metric, args.work_dir, f'{osp.basename(args.config)}: mean ± std over '
               f'seeds, {iters * ref_batch} images per run')
    with open(osp.join(args.work_dir, 'norm_study.md'), 'w') as f:
        f.write(text)
    report = dict(settings, norms=args.norms, batches=args.batches, seeds=args.seeds,
                  baseline=args.baseline, metric=metric, runs=rows, summary=summary,
                  plot=png, **provenance())
    with open(osp.join(args.work_dir, 'norm_study.json'), 'w') as f:
        json.dump(report, f, indent=1)
    print(f'\n{text}\nwrote {results.path}, norm_study.md/.json and {png}')
    return report
