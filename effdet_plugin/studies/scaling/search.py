"""Search the compound-scaling coefficients (alpha, beta, gamma) on your own data.

The EfficientNet recipe: fix the FLOPs growth per unit of phi (``--flops-growth``, 2 in the
paper), enumerate ``alpha, beta, gamma >= 1`` on a grid with ``alpha * beta^2 * gamma^2``
within ``--tol`` of it, scale the config's model to phi=1 with each triplet (backbone depth x
alpha, width x beta, input size x gamma; the neck's in_channels follow the backbone), train
each with the config's schedule from random init, evaluate, and keep the best. The official
(1.2, 1.1, 1.15) is always a candidate; ``--max-candidates`` picks an evenly spread,
deterministic subset of the rest.

``--dry-run`` trains nothing: it prints every candidate's FLOPs growth from the formula and
counted (mmengine's counter) on the built backbone and detector at the gamma-scaled input;
rounding of channels, repeats and input size makes them differ.

Results go to ``OUT/search.csv`` (one row per candidate and seed; a rerun with the same
``--out`` skips the rows already there), ``OUT/search.md`` and ``OUT/search.png``.

Examples:
    python tools/analysis/scaling_search.py configs/demo/effdet_lite0_nuclei.py --dry-run
    python tools/analysis/scaling_search.py configs/demo/effdet_lite0_nuclei.py \
        --max-candidates 4 --iters 150 --out work_dirs/scaling_search
"""
import argparse
import os.path as osp
from typing import Dict, List, Optional, Sequence

from ..runner import load_study_config
from ..summary import format_markdown
from .points import OFFICIAL, coefficient_grid, flops_growth, search_points, select_candidates
from .study import plot_ap, study, study_parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = study_parser(__doc__)
    parser.add_argument('--flops-growth', type=float, default=2.0,
                        help='target alpha * beta^2 * gamma^2 (default: 2)')
    parser.add_argument('--grid-step', type=float, default=0.05, help='grid spacing (0.05)')
    parser.add_argument('--tol', type=float, default=0.05,
                        help='relative tolerance on the growth (default: 0.05)')
    parser.add_argument('--max-candidates', type=int, default=5,
                        help='candidates trained, official included (default: 5; 0: all)')
    parser.add_argument('--triplets', nargs='+', metavar='A,B,G',
                        help='train these triplets (and the official one) instead of the grid')
    parser.add_argument('--out', default='work_dirs/scaling_search', help='output folder')
    return parser.parse_args(argv)


def candidates(args: argparse.Namespace) -> List[tuple]:
    if args.triplets:
        try:
            chosen = [tuple(float(v) for v in t.split(',')) for t in args.triplets]
        except ValueError:
            chosen = []
        if not chosen or any(len(t) != 3 for t in chosen):
            raise SystemExit(f'--triplets takes ALPHA,BETA,GAMMA values, got {args.triplets}')
        return select_candidates(chosen, None)
    grid = coefficient_grid(args.flops_growth, args.grid_step, args.tol)
    print(f'{len(grid)} triplets on the {args.grid_step} grid have alpha * beta^2 * gamma^2 '
          f'within {args.tol:.0%} of {args.flops_growth:g}')
    return select_candidates(grid, args.max_candidates or None)


def dry_run_table(rows: Sequence[Dict]) -> str:
    return format_markdown(
        ['candidate', 'alpha', 'beta', 'gamma', 'input', 'params (M)', 'formula growth',
         'counted backbone growth', 'counted detector growth', 'backbone GFLOPs', 'GFLOPs'],
        [[r['name'] + (' (official)' if _official(r) else ''), f"{r['alpha']:.2f}",
          f"{r['beta']:.2f}", f"{r['gamma']:.2f}", r['shape'], f"{r['params'] / 1e6:.3f}",
          f"{r['formula_growth']:.3f}", f"{r['backbone_growth']:.3f}",
          f"{r['detector_growth']:.3f}", f"{r['backbone_flops'] / 1e9:.3f}",
          f"{r['flops'] / 1e9:.3f}"] for r in rows])


def _official(row: Dict) -> bool:
    return all(abs(row[k] - v) < 1e-9
               for k, v in zip(('alpha', 'beta', 'gamma'), OFFICIAL))


def best_of(summary: Sequence[Dict]) -> Dict:
    """Highest mean AP; the fewer FLOPs on a tie."""
    return max(summary, key=lambda r: (r['ap'], -r['gflops']))


def results_table(summary: Sequence[Dict], metric: str) -> str:
    best = best_of(summary)
    rows = []
    for r in summary:
        mark = ' **best**' if r is best else ''
        rows.append([
            r['name'] + (' (official)' if _official(r) else '') + mark, f"{r['alpha']:.2f}",
            f"{r['beta']:.2f}", f"{r['gamma']:.2f}", f"{r['ap']:.3f} ± {r['ap_std']:.3f}",
            int(r['seeds']), f"{r['params'] / 1e6:.3f}", f"{r['gflops']:.3f}",
            '-' if r['latency_ms'] is None else f"{r['latency_ms']:.1f}", r['shape']])
    return format_markdown(['candidate', 'alpha', 'beta', 'gamma', f'{metric} (mean ± std)',
                            'seeds', 'params (M)', 'GFLOPs', 'latency (ms)', 'input'], rows)


def main(argv: Optional[Sequence[str]] = None) -> List[Dict]:
    args = parse_args(argv)
    cfg = load_study_config(args.config, args.cfg_options)
    summary = study(args, cfg, search_points(candidates(args)), 'search.csv',
                        dry_run_table, f'Coefficient candidates for `{args.config}` at phi=1',
                        flops_growth=args.flops_growth)
    if args.dry_run:
        return summary
    for r in summary:
        r['label'] = f"{r['alpha']:.2f}/{r['beta']:.2f}/{r['gamma']:.2f}"
        r['dim'] = 'candidates (alpha/beta/gamma)'
    title = (f'Coefficient search: {osp.basename(args.config)}, '
             f'{int(cfg.train_cfg.max_iters)} iterations, {args.seeds} seed(s)')
    table = results_table(summary, args.metric)
    with open(osp.join(args.out, 'search.md'), 'w') as f:
        f.write(f'{title}\n\n{table}\n')
    plot_ap(summary, 'gflops', osp.join(args.out, 'search.png'), title)
    a, b, g = (best_of(summary)[k] for k in ('alpha', 'beta', 'gamma'))
    print(f'\n{title}\n\n{table}\n\nbest: alpha={a:.2f} beta={b:.2f} gamma={g:.2f} (growth '
          f'{flops_growth(a, b, g):.3f}); sweep phi with it: '
          'tools/analysis/scaling_sweep.py '
          f'CONFIG --alpha {a:.2f} --beta {b:.2f} --gamma {g:.2f}\n'
          f'written: {args.out}/search.csv, search.md, search.png')
    return summary

