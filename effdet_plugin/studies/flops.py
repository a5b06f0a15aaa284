"""Parameters and FLOPs of EfficientDet configs at their official input size, beside the paper.

FLOPs are counted by mmengine's analysis tools (``FlopAnalyzer``, what
``get_model_complexity_info`` uses) on the network forward (``mode='tensor'``: backbone, BiFPN
and heads; no anchor decoding or NMS) for one image. As in the EfficientDet paper, one fused
multiply-add is one FLOP. What is counted:

- convolutions (``aten::_convolution``): ``N * C_out * H_out * W_out * C_in / groups * k * k``
  multiply-adds, bias excluded; TF 'SAME' convs count the same as symmetric ones: their dynamic
  padding is an ``aten::pad`` copy, no arithmetic;
- batch norm: one FLOP per output element (a scale and shift an inference graph folds into the
  conv before it);
- nearest upsampling (``aten::upsample_nearest2d``): one per output element.

Not counted (no multiply-adds, or negligible): max pooling, padding, activations (SiLU, ReLU6,
sigmoid of SE), the squeeze-excite global means and gating products, the weighted fusion
(a handful of scalar multiply-adds per pixel), residual adds. ``--verbose`` prints the
breakdown and the ops left out.

Examples::

    python tools/analysis/get_flops.py configs/effdet_b0_coco.py
    python tools/analysis/get_flops.py configs/effdet_b3_coco.py --shape 512 512
    python tools/analysis/get_flops.py --all            # the family table in markdown
"""
import argparse
import glob
import os.path as osp
import re
import sys
import time
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

from ..models.utils.scaling import get_det_scale
from .summary import format_markdown

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))  # the repository root

# EfficientDet paper, Table 2: parameters (M) and FLOPs (B, multiply-adds); 90 COCO slots.
PAPER: Dict[str, Tuple[float, float]] = {
    'd0': (3.9, 2.54),
    'd1': (6.6, 6.10),
    'd2': (8.1, 11.0),
    'd3': (12.0, 24.9),
    'd4': (20.7, 55.2),
    'd5': (33.7, 130.0),
    'd6': (51.9, 226.0),
    'd7': (51.9, 325.0),
    'd7x': (77.0, 410.0),
}
FAMILY = ([f'configs/effdet_b{i}_coco.py' for i in range(8)] + ['configs/effdet_b7x_coco.py'] +
          [f'configs/effdet_lite{i}_coco.py' for i in range(5)])


def variant_of(cfg: Config) -> Optional[str]:
    """The EfficientDet variant of a config (its head's ``arch``), if it has one."""
    arch = (cfg.model.get('bbox_head') or {}).get('arch')
    if arch is None:
        return None
    try:
        get_det_scale(arch)
    except KeyError:
        return None
    return str(arch)


def official_shape(cfg: Config) -> Tuple[int, int]:
    """The variant's input size, else the config's ``image_size``, else 512."""
    variant = variant_of(cfg)
    if variant is not None:
        size = get_det_scale(variant).input_size
    else:
        size = cfg.get('image_size', 512)
    return (size, size) if isinstance(size, int) else tuple(size)


def build_model(cfg: Config) -> torch.nn.Module:
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    from mmdet.registry import MODELS
    return MODELS.build(cfg.model).eval()


def count(cfg: Config, shape: Optional[Sequence[int]] = None) -> dict:
    """Parameters and FLOPs of ``cfg.model`` for one ``shape`` (H, W) image.

    Returns:
        dict: ``variant``, ``shape``, ``params``, ``flops`` (total), ``by_operator`` and
        ``by_module`` (top-level parts), ``uncounted`` (op -> calls), ``seconds``.
    """
    shape = tuple(shape) if shape else official_shape(cfg)
    model = build_model(cfg)
    start = time.perf_counter()
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, (torch.zeros(1, 3, *shape), ))
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        flops = analyzer.total()
        by_module = {k: v for k, v in analyzer.by_module().items() if k and '.' not in k}
    return dict(
        variant=variant_of(cfg), shape=shape, params=parameter_count(model)[''], flops=flops,
        by_operator=dict(analyzer.by_operator()), by_module=by_module,
        uncounted=dict(Counter(analyzer.unsupported_ops())),
        seconds=time.perf_counter() - start)


def _ratio(ours: float, paper: Optional[float]) -> str:
    return f'{ours / paper:.3f}' if paper else '-'


def row(name: str, result: dict) -> List[str]:
    """Markdown cells: model, input, params, paper, ratio, FLOPs, paper, ratio."""
    paper = PAPER.get(result['variant'] or '', (None, None))
    if result['variant'] and tuple(result['shape']) != (get_det_scale(
            result['variant']).input_size, ) * 2:
        paper = (None, None)  # the paper's figures are for the official input size only
    params, flops = result['params'] / 1e6, result['flops'] / 1e9
    return [
        name, 'x'.join(map(str, result['shape'])), f'{params:.3f}',
        f'{paper[0]}' if paper[0] else '-', _ratio(params, paper[0]), f'{flops:.2f}',
        f'{paper[1]:g}' if paper[1] else '-', _ratio(flops, paper[1])
    ]


HEADER = ['model', 'input', 'params (M)', 'paper (M)', 'ratio', 'FLOPs (B)', 'paper (B)',
          'ratio']


def markdown(rows: Sequence[Sequence[str]]) -> str:
    return format_markdown(HEADER, rows)


def describe(config: str, result: dict, verbose: bool = False) -> str:
    """Plain-text report of one config."""
    _, _, params, paper_params, params_ratio, flops, paper_flops, flops_ratio = row('', result)
    lines = [
        f'config:  {config}',
        f'variant: {result["variant"] or "-"}, input 1x3x{result["shape"][0]}x'
        f'{result["shape"][1]}',
        f'params:  {params} M (paper {paper_params} M, ratio {params_ratio})',
        f'FLOPs:   {flops} B multiply-adds (paper {paper_flops} B, ratio {flops_ratio})',
    ]
    if verbose:
        lines.append('by operator: ' + ', '.join(
            f'{k} {v / 1e9:.3f} B' for k, v in result['by_operator'].items()))
        lines.append('by part:     ' + ', '.join(
            f'{k} {v / 1e9:.3f} B' for k, v in result['by_module'].items() if v))
        lines.append('not counted: ' + ', '.join(
            f'{k.replace("aten::", "")} x{v}' for k, v in sorted(result['uncounted'].items())))
        lines.append(f'(traced in {result["seconds"]:.1f} s)')
    return '\n'.join(lines)


def _name(config: str) -> str:
    m = re.search(r'effdet_(b\d+x?|lite\d)_coco', config)
    if not m:
        return osp.splitext(osp.basename(config))[0]
    key = m.group(1)
    return 'D' + key[1:] if key.startswith('b') else 'Lite' + key[4:]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Params and FLOPs beside the paper figures')
    parser.add_argument('config', nargs='?', help='config file')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (default: the official size of the variant)')
    parser.add_argument('--all', action='store_true',
                        help='every configs/effdet_*_coco.py: a markdown table')
    parser.add_argument('--markdown', action='store_true', help='one config as a table row')
    parser.add_argument('--verbose', action='store_true',
                        help='FLOPs by operator and part, and the ops left out')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings, e.g. model.bbox_head.num_classes=90 (the '
                        'paper counts 90 COCO slots)')
    args = parser.parse_args(argv)
    if bool(args.config) == args.all:
        parser.error('give a CONFIG or --all')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    configs = [osp.join(REPO, c) for c in FAMILY] if args.all else [args.config]
    configs = [c for c in configs if glob.glob(c)]
    rows = []
    for config in configs:
        cfg = Config.fromfile(config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        result = count(cfg, args.shape)
        if args.all or args.markdown:
            rows.append(row(_name(config), result))
            if args.verbose:
                print(describe(osp.relpath(config, REPO), result, True), file=sys.stderr)
        else:
            print(describe(config, result, args.verbose))
    if rows:
        print(markdown(rows))
    return 0

