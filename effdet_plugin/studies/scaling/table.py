"""EfficientNet compound-scaling table: multipliers, parameters and FLOPs per variant.

Rows for the released variants (rounded per-variant coefficients) and for integer phi under
the paper's formula (depth 1.2^phi, width 1.1^phi, resolution 1.15^phi). Parameters and FLOPs
are counted by mmengine's analysis tools on ``EffNet`` up to its 1x1 head conv (no classifier)
at each variant's own resolution; one fused multiply-add counts as one FLOP, as in the paper.

Examples::

    python tools/analysis/scaling_table.py                 # b0-b7 and phi 0-7, plain text
    python tools/analysis/scaling_table.py --markdown      # for the README
    python tools/analysis/scaling_table.py --archs b0 b3 --phis 0 1 --no-flops
"""
import argparse
from typing import Iterable, List, Optional, Union

import torch
from mmengine.analysis import FlopAnalyzer, parameter_count

from ...models.backbones import EffNet
from ...models.utils.scaling import (
    ALPHA,
    BASE_RESOLUTION,
    BETA,
    GAMMA,
    get_net_scale,
    scaling_multipliers,
)
from ..summary import format_markdown

DEFAULT_ARCHS = tuple(f'b{i}' for i in range(8))
DEFAULT_PHIS = tuple(range(8))


def build_full(arch: Union[str, float], device: str = 'cpu') -> EffNet:
    """``EffNet`` with every layer built (through the head conv), in eval mode."""
    with torch.device(device):
        return EffNet(arch, out_indices=(EffNet.num_layers - 1, ), init_cfg=None).eval()


def count_params(arch: Union[str, float]) -> int:
    """Parameters of ``EffNet(arch)`` through the head conv; meta device, so it is instant."""
    return parameter_count(build_full(arch, 'meta'))['']


def count_flops(arch: Union[str, float], resolution: int) -> int:
    """Multiply-adds of one forward pass at ``resolution`` x ``resolution``."""
    model = build_full(arch)
    analyzer = FlopAnalyzer(model, torch.zeros(1, 3, resolution, resolution))
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analyzer.total()


def scaling_rows(archs: Iterable[str] = DEFAULT_ARCHS,
                 phis: Iterable[float] = DEFAULT_PHIS,
                 flops: bool = True) -> List[dict]:
    """One row per released arch, then one per phi; ``flops_ratio`` compares a row with the
    previous row of the same kind (released: b(i-1); formula: phi - 1)."""
    rows = []
    for kind, variants in (('released', list(archs)), ('formula', list(phis))):
        previous = None
        for variant in variants:
            scale = get_net_scale(variant)
            if kind == 'released':
                name, r_mult = variant, scale.resolution / BASE_RESOLUTION
            else:  # the exact formula multiplier; the input size is it rounded to 8 px
                name, r_mult = f'phi={variant:g}', scaling_multipliers(variant)[2]
            row = dict(kind=kind, variant=name, depth=scale.depth, width=scale.width,
                       resolution_mult=r_mult, resolution=scale.resolution,
                       params=count_params(variant))
            if flops:
                row['flops'] = count_flops(variant, scale.resolution)
                row['flops_ratio'] = row['flops'] / previous['flops'] if previous else None
            rows.append(row)
            previous = row
    return rows


def format_table(rows: List[dict], markdown: bool = False) -> str:
    with_flops = 'flops' in rows[0]
    header = ['variant', 'depth d', 'width w', 'resolution r', 'input', 'params (M)']
    if with_flops:
        header += ['FLOPs (G)', 'FLOPs / previous']
    lines = []
    for row in rows:
        cells = [row['variant'], f"{row['depth']:.3f}", f"{row['width']:.3f}",
                 f"{row['resolution_mult']:.3f}", str(row['resolution']),
                 f"{row['params'] / 1e6:.3f}"]
        if with_flops:
            ratio = row['flops_ratio']
            cells += [f"{row['flops'] / 1e9:.3f}", '-' if ratio is None else f'{ratio:.2f}x']
        lines.append(cells)
    if markdown:
        out = [format_markdown(header, lines)]
    else:
        widths = [max(len(c) for c in col) for col in zip(header, *lines)]
        out = ['  '.join(c.rjust(w) for c, w in zip(cells, widths)) for cells in [header] + lines]
    target = ALPHA * BETA**2 * GAMMA**2
    notes = [
        '', f'Formula rows: d = {ALPHA}^phi, w = {BETA}^phi, r = {GAMMA}^phi; FLOPs grow by '
        f'about d * w^2 * r^2 = {target:.2f}x per unit of phi (the paper\'s "~2x").',
        f'Released rows use the rounded per-variant coefficients (r = input / '
        f'{BASE_RESOLUTION} px); formula inputs are {BASE_RESOLUTION} * r rounded to 8 px.',
        'Params, and FLOPs at the row\'s input size: EffNet through the 1x1 head conv, no '
        'classifier (the paper\'s params add the 1000-class classifier: 1.28M for b0, 2.56M '
        'for b7); one multiply-add = one FLOP; counted by mmengine.analysis.'
    ]
    return '\n'.join(out + notes)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='EfficientNet compound-scaling table')
    parser.add_argument('--archs', nargs='*', default=list(DEFAULT_ARCHS),
                        help='released variants (default b0-b7)')
    parser.add_argument('--phis', nargs='*', type=float, default=list(DEFAULT_PHIS),
                        help='compound coefficients under the formula (default 0-7)')
    parser.add_argument('--markdown', action='store_true', help='print a Markdown table')
    parser.add_argument('--no-flops', action='store_true',
                        help='skip the FLOP count (it runs a forward pass per row)')
    parser.add_argument('--threads', type=int, default=2, help='torch threads for FLOPs')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = scaling_rows(args.archs, args.phis, flops=not args.no_flops)
    print(format_table(rows, markdown=args.markdown))
    return 0

