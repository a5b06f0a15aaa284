"""How big a model does your data need? Sweep phi, compound vs single-dimension scaling.

Trains the config's model scaled to each ``--phis`` value along each ``--dims`` dimension, all
with the same schedule (``--iters``) from random init, and compares accuracy with FLOPs and
measured latency:

- ``compound``: backbone depth ``alpha^phi`` and width ``beta^phi``; an EfficientDet neck/head
  (``EffBiFPN``/``EffDetHead``) and the input size follow EfficientDet's phi rules (BiFPN width
  and depth, head depth, input ``512 + 128 phi`` relative to the config's variant); with
  other necks (backbone-swap configs) only their in_channels change and the input grows by
  ``gamma^phi``;
- ``depth`` / ``width`` / ``resolution``: that dimension alone, by the whole formula growth
  ``g = alpha * beta^2 * gamma^2`` per unit of phi (depth ``g^phi``, width and resolution
  ``g^(phi/2)``), the paper's single-dimension baselines.

phi 0 is the config's own model (for every dimension). Writes ``OUT/sweep.csv`` (one row per
dimension, phi and seed; a rerun with the same ``--out`` skips rows already there),
``OUT/sweep.md``, ``OUT/ap_vs_flops.png`` and ``OUT/ap_vs_latency.png`` (one curve per
dimension), and prints the marginal AP per GFLOP between consecutive phis and the phi after
which it falls below ``--min-gain``.

Examples:
    python tools/analysis/scaling_sweep.py configs/demo/effdet_lite0_nuclei.py \
        --phis 0 0.5 1 --iters 150 --out work_dirs/scaling_sweep
    python tools/analysis/scaling_sweep.py CONFIG --phis 0 1 --dims compound --dry-run
"""
import argparse
import os.path as osp
from typing import Dict, List, Optional, Sequence

from ...models.utils.scaling import ALPHA, BETA, GAMMA
from ..runner import load_study_config
from ..summary import format_markdown
from .points import DIMS, marginal_gains, saturation_phi, sweep_points
from .scaled_config import base_det_phi
from .study import plot_ap, study, study_parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = study_parser(__doc__)
    parser.add_argument('--phis', type=float, nargs='+', required=True,
                        help='compound coefficients, relative to the config (0 = as is)')
    parser.add_argument('--dims', nargs='+', choices=DIMS, default=list(DIMS),
                        help='scaling dimensions (default: all four)')
    parser.add_argument('--alpha', type=float, default=ALPHA, help=f'depth base ({ALPHA})')
    parser.add_argument('--beta', type=float, default=BETA, help=f'width base ({BETA})')
    parser.add_argument('--gamma', type=float, default=GAMMA, help=f'resolution base ({GAMMA})')
    parser.add_argument('--min-gain', type=float, default=0.01,
                        help='AP per extra GFLOP below which scaling up stops paying '
                        '(default: 0.01)')
    parser.add_argument('--out', default='work_dirs/scaling_sweep', help='output folder')
    return parser.parse_args(argv)


def gains_report(summary: Sequence[Dict], min_gain: float) -> List[str]:
    """Per dimension: AP per GFLOP between consecutive phis, and where it falls off."""
    lines = []
    for dim in dict.fromkeys(r['dim'] for r in summary):
        steps = marginal_gains([r for r in summary if r['dim'] == dim])
        cells = ', '.join(
            f"{s['phi_from']:g}->{s['phi_to']:g}: "
            + ('n/a (no extra FLOPs)' if s['gain'] is None else f"{s['gain']:+.4f}")
            for s in steps)
        stop = saturation_phi(steps, min_gain)
        verdict = (f'falls below {min_gain:g} after phi {stop:g}' if stop is not None else
                   f'stays >= {min_gain:g} over the phis swept' if steps else 'one phi only')
        lines.append(f'{dim:>10}: AP per GFLOP {cells or "-"}; {verdict}')
    return lines


def results_table(summary: Sequence[Dict], metric: str) -> str:
    return format_markdown(
        ['dimension', 'phi', 'depth x', 'width x', 'input x', 'input', f'{metric} (mean ± std)',
         'seeds', 'params (M)', 'GFLOPs', 'latency (ms)'],
        [[r['dim'], f"{r['phi']:g}", f"{r['depth']:.3f}", f"{r['width']:.3f}",
          f"{r['resolution']:.3f}", r['shape'], f"{r['ap']:.3f} ± {r['ap_std']:.3f}",
          int(r['seeds']), f"{r['params'] / 1e6:.3f}", f"{r['gflops']:.3f}",
          '-' if r['latency_ms'] is None else f"{r['latency_ms']:.1f}"] for r in summary])


def dry_run_table(rows: Sequence[Dict]) -> str:
    return format_markdown(
        ['dimension', 'phi', 'input', 'params (M)', 'formula backbone growth',
         'counted backbone growth', 'counted detector growth', 'GFLOPs'],
        [[r['dim'], f"{r['phi']:g}", r['shape'], f"{r['params'] / 1e6:.3f}",
          f"{r['formula_growth']:.3f}", f"{r['backbone_growth']:.3f}",
          f"{r['detector_growth']:.3f}", f"{r['flops'] / 1e9:.3f}"] for r in rows])


def main(argv: Optional[Sequence[str]] = None) -> List[Dict]:
    args = parse_args(argv)
    cfg = load_study_config(args.config, args.cfg_options)
    points = sweep_points(args.phis, args.dims, args.alpha, args.beta, args.gamma,
                              base_det_phi(cfg))
    summary = study(args, cfg, points, 'sweep.csv', dry_run_table,
                        f'Scaling sweep of `{args.config}`', alpha=args.alpha, beta=args.beta,
                        gamma=args.gamma)
    if args.dry_run:
        return summary
    title = (f'Scaling sweep: {osp.basename(args.config)}, {int(cfg.train_cfg.max_iters)} '
             f'iterations, {args.seeds} seed(s), alpha/beta/gamma {args.alpha:g}/'
             f'{args.beta:g}/{args.gamma:g}')
    table = results_table(summary, args.metric)
    gains = gains_report(summary, args.min_gain)
    with open(osp.join(args.out, 'sweep.md'), 'w') as f:
        f.write(f'{title}\n\n{table}\n\nMarginal gains:\n\n' +
                '\n'.join(f'- {g.strip()}' for g in gains) + '\n')
    plot_ap(summary, 'gflops', osp.join(args.out, 'ap_vs_flops.png'), title)
    plot_ap(summary, 'latency_ms', osp.join(args.out, 'ap_vs_latency.png'), title)
    print(f'\n{title}\n\n{table}\n\nMarginal AP per GFLOP (--min-gain {args.min_gain:g}):')
    print('\n'.join(gains))
    print(f'written: {args.out}/sweep.csv, sweep.md, ap_vs_flops.png, ap_vs_latency.png')
    return summary

