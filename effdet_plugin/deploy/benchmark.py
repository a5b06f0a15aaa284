"""Parameters, FLOPs, latency and throughput of any detector config.

FLOPs come from mmengine's ``get_model_complexity_info`` for one image, counted the fvcore way
(one multiply-add = one FLOP, as in the EfficientDet paper). Latency times the network forward
(``mode='tensor'``: backbone, neck and heads, without box decoding and NMS) on random input,
after warm-up, and reports the median over repeats; throughput is batch size / median. The
model and input are in channels-last memory format, as in tools/test.py and tools/infer.py
(``--no-channels-last``: contiguous NCHW).

Examples::

    python tools/benchmark.py configs/effdet_b0_coco.py --shape 512 512
    python tools/benchmark.py CONFIG --device cuda --amp --batch-size 8 --repeats 100
"""
import argparse
import json
import platform
import statistics
import time
from contextlib import nullcontext
from typing import Dict, Optional, Sequence

import torch
from mmengine.analysis import get_model_complexity_info
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

from ..checkpoint import WeightsCheckSettings, load_checkpoint
from ..cli.memory_format import add_memory_format_arg, set_memory_format


def build_model(cfg: Config, checkpoint: Optional[str], device: str) -> torch.nn.Module:
    """Build ``cfg.model`` in eval mode on ``device``, optionally loading weights."""
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    from mmdet.registry import MODELS
    model = MODELS.build(cfg.model)
    if checkpoint:
        load_checkpoint(model, checkpoint, WeightsCheckSettings.from_cfg(cfg))
    return model.to(device).eval()


def _autocast(device: str, amp: bool):
    if not amp:
        return nullcontext()
    # fp16 on GPUs; CPUs autocast only to bfloat16.
    return torch.autocast(device, dtype=torch.float16 if device == 'cuda' else torch.bfloat16)


def time_forward(model: torch.nn.Module, inputs: torch.Tensor, device: str, amp: bool,
                 warmup: int, repeats: int) -> Sequence[float]:
    """Seconds per forward pass of ``inputs``, ``repeats`` times after ``warmup`` runs."""
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    times = []
    with torch.inference_mode(), _autocast(device, amp):
        for i in range(warmup + repeats):
            sync()
            start = time.perf_counter()
            model(inputs, mode='tensor')
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return times


def benchmark(cfg: Config,
              shape: Sequence[int] = (512, 512),
              batch_size: int = 1,
              device: str = 'cpu',
              amp: bool = False,
              warmup: int = 5,
              repeats: int = 20,
              checkpoint: Optional[str] = None,
              channels_last: bool = True) -> Dict:
    """Measure one config; see the module docstring for what is counted.

    Args:
        cfg (Config): Config with a ``model`` section.
        shape (Sequence[int]): Input height and width. Defaults to (512, 512).
        batch_size (int): Images per forward pass for latency. Defaults to 1.
        device (str): ``'cpu'`` or ``'cuda'``. Defaults to ``'cpu'``.
        amp (bool): Autocast (fp16 on CUDA, bf16 on CPU) while timing. Defaults to False.
        warmup (int): Untimed passes first. Defaults to 5.
        repeats (int): Timed passes. Defaults to 20.
        checkpoint (str, optional): Weights to load. Defaults to None.
        channels_last (bool): Model and input in channels-last memory format.
            Defaults to True.

    Returns:
        dict: ``params``, ``flops`` (per image), ``latency_ms`` (median), ``latency_mean_ms``,
        ``latency_std_ms``, ``throughput`` (images/s) and the settings used.
    """
    if device == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('--device cuda but CUDA is not available')
    if repeats < 1 or warmup < 0 or batch_size < 1:
        raise ValueError('need repeats >= 1, warmup >= 0 and batch_size >= 1')
    model = build_model(cfg, checkpoint, device)
    memory_format = set_memory_format(model, channels_last)
    height, width = shape
    one = torch.rand(1, 3, height, width, device=device)
    with torch.inference_mode():
        # The detector's forward(inputs) defaults to mode='tensor': the network alone.
        complexity = get_model_complexity_info(model, inputs=(one, ), show_table=False,
                                               show_arch=False)
    batch = torch.rand(batch_size, 3, height, width, device=device)
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    times = time_forward(model, batch, device, amp, warmup, repeats)
    median = statistics.median(times)
    return dict(
        params=sum(p.numel() for p in model.parameters()),
        flops=complexity['flops'],
        latency_ms=1e3 * median,
        latency_mean_ms=1e3 * statistics.fmean(times),
        latency_std_ms=1e3 * (statistics.stdev(times) if len(times) > 1 else 0.0),
        throughput=batch_size / median,
        device=device if device == 'cpu' else torch.cuda.get_device_name(),
        threads=torch.get_num_threads(),
        dtype=('float16' if device == 'cuda' else 'bfloat16') if amp else 'float32',
        memory_format=memory_format,
        shape=[height, width], batch_size=batch_size, warmup=warmup, repeats=repeats)


def format_table(name: str, result: Dict) -> str:
    """The result as a two-column text table."""
    device = result['device']
    if device == 'cpu':
        device = f'cpu ({platform.processor() or platform.machine()}, ' \
                 f'{result["threads"]} threads)'
    rows = [
        ('config', name),
        ('device', device),
        ('precision', result['dtype']),
        ('memory format', result.get('memory_format', 'contiguous')),
        ('input', f'{result["batch_size"]} x 3 x {result["shape"][0]} x {result["shape"][1]}'),
        ('params', f'{result["params"] / 1e6:.3f} M'),
        ('FLOPs / image', f'{result["flops"] / 1e9:.3f} G (multiply-adds)'),
        ('latency / batch', f'{result["latency_ms"]:.2f} ms median, '
                            f'{result["latency_mean_ms"]:.2f} +- {result["latency_std_ms"]:.2f} '
                            f'ms mean ({result["repeats"]} runs after {result["warmup"]} '
                            'warm-up)'),
        ('throughput', f'{result["throughput"]:.1f} images/s'),
    ]
    width = max(len(k) for k, _ in rows)
    rule = '-' * (width + 3 + max(len(v) for _, v in rows))
    return '\n'.join([rule] + [f'{k:<{width}} | {v}' for k, v in rows] + [rule])


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Params, FLOPs, latency and throughput')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--checkpoint', help='optional weights (speed does not depend on them)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--amp', action='store_true',
                        help='autocast: fp16 on CUDA, bfloat16 on CPU')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--shape', type=int, nargs=2, default=[512, 512], metavar=('H', 'W'))
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--out-json', help='also write the numbers to this JSON file')
    add_memory_format_arg(parser)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. model.backbone.arch=b1')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    result = benchmark(cfg, args.shape, args.batch_size, args.device, args.amp, args.warmup,
                       args.repeats, args.checkpoint, args.channels_last)
    print(format_table(args.config, result))
    if args.out_json:
        with open(args.out_json, 'w') as f:
            json.dump(dict(result, config=args.config), f, indent=2)

