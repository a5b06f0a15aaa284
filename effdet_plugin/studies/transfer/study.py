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

Outputs in ``WORK_DIR``: ``runs.csv`` (one row per evaluation of every run, with the git commit
and torch thread count that made it; a rerun with the same settings skips finished runs),
``transfer_eval.json``, ``transfer_eval.md`` (the tables), ``ap_vs_iters.png``,
``ap_vs_fraction.png``, one sub-folder per run (logs, last checkpoint).

Example (nuclei, 3 seeds x 2 fractions x 2 modes, AP at 100 and 300 iterations):
    python tools/analysis/transfer_eval.py configs/medical/effdet-lite0_nuclei.py \
        --iters 300 --eval-interval 100 --seeds 3 --fractions 0.25 1.0 \
        --modes imagenet scratch --work-dir work_dirs/transfer
"""
import argparse
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence

from mmengine.config import Config

from ..runner import (
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
from ..summary import parse_rows
from .report import COLUMNS, RUN_KEY, TEXT_COLUMNS, plot, runs_table, summarise, summary_table
from .starting_points import (
    MODES,
    describe,
    expected_metrics,
    mode_config,
    train_dataset,
    write_subsets,
)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = study_parser(__doc__, 'config with an IterBasedTrainLoop')
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
    add_study_args(parser, 'work_dirs/transfer_eval')
    args = parser.parse_args(argv)
    bad = [f for f in args.fractions if not 0 < f <= 1]
    if bad:
        parser.error(f'--fractions must lie in (0, 1], got {bad}')
    if args.seeds < 1:
        parser.error(f'--seeds must be >= 1, got {args.seeds}')
    return args


def run_one(cfg: Config, bar=None) -> List[Dict[str, object]]:
    """Train one run (``cfg`` holds its work dir and seed); one row per evaluation:
    iteration, which weights, metrics, seconds. With an ``EMAHook`` the evaluations during
    training score the EMA weights, and the raw weights are scored once more at the end."""
    result = train(cfg, cfg.work_dir, cfg.randomness.seed, bar, quiet=False)
    points = [(it, 'ema' if result.ema else 'raw', m) for it, m in result.curve]
    if result.ema:  # the weights the optimiser produced, for comparison
        points.append((result.runner.iter, 'raw', evaluate_current_weights(result.runner)))
    rows = []
    for it, weights, metrics in points:
        # CocoMetric returns nothing at all when a model predicts nothing: that is AP 0
        for key in expected_metrics(cfg):
            metrics.setdefault(key, 0.0)
        rows.append(dict(iter=it, weights=weights, train_s=round(result.train_s, 1), **metrics))
    return rows


def plan_jobs(cfg: Config, args: argparse.Namespace, modes: Sequence[str]) -> List[Job]:
    """One job per (fraction, seed, mode): the mode's config on the fraction's subset."""
    subsets = write_subsets(cfg, args.fractions, osp.join(args.work_dir, 'subsets'),
                            args.subset_seed)
    jobs = []
    for fraction in args.fractions:
        ann_file, count = subsets[fraction]
        for seed in range(args.seeds):
            for mode in modes:
                run_cfg = mode_config(cfg, mode,
                                      osp.join(args.work_dir, f'fraction{fraction:g}_seed{seed}'),
                                      args.checkpoint_coco)
                run_cfg.randomness = dict(run_cfg.get('randomness') or {}, seed=seed)
                train_dataset(run_cfg).ann_file = ann_file
                label = describe(run_cfg, mode)
                key = dict(mode=mode, fraction=fraction, seed=seed)
                info = dict(key, train_images=count, ann_file=ann_file, label=label)
                jobs.append(Job(key, f'{mode} ({label}), fraction {fraction:g} ({count} '
                                f'images), seed {seed}', cfg.train_cfg.max_iters,
                                (run_cfg, info)))
    return jobs


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    args = parse_args(argv)
    cfg = load_study_config(args.config, args.cfg_options, args.work_dir, data_args=args)
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
    jobs = plan_jobs(cfg, args, modes)
    if not args.report_only:
        def run(job, bar):  # each run's rows say which code and how many threads made them
            rows = run_one(job.spec[0], bar)
            made_by = provenance()
            return [dict(job.spec[1], **row, **made_by) for row in rows]

        run_jobs(jobs, results, run, name='transfer_eval', detail=f', evaluated every {interval}',
                 shard=args.shard)

    planned = {tuple(job.key[k] for k in RUN_KEY) for job in jobs}
    rows = [r for r in parse_rows(results.rows, TEXT_COLUMNS)
            if tuple(r[k] for k in RUN_KEY) in planned]
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
