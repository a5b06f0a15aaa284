"""CPU training step against efficientdet-pytorch: time and peak memory, same weights and boxes.

EfficientDet-D0 (512x512) and EfficientDet-Lite0 (320x320), batch 2, plain SGD (momentum 0.9),
the same two boxes per image for every model. Variants:

- effdet 0.4.1 ``DetBenchTrain`` (its anchor labeler and focal / Huber loss), fp32;
- ours ``model.loss`` (the config's assigner and losses), fp32, default memory format;
- ours in channels-last memory format (weights and input);
- ours under CPU bf16 autocast (forward in bf16, fp32 weights, as ``--amp`` trains on a CPU).

Both models hold the same weights (a random effdet model converted to our COCO config, as in
``deploy_latency.py``). The step (zero grad, forward + loss, backward, SGD step) is timed
interleaved round by round (``time_rounds``), medians over ``--repeats`` rounds after
``--warmup``. Peak memory is measured per variant in a fresh subprocess: the process's peak
resident set size (``VmHWM``) over ``--memory-steps`` steps, and its growth above the
resident size just before the first step (activations, gradients, optimizer state).

    python benchmarks/train_step.py [--threads 2] [--repeats 10] [--models d0 lite0]
    python benchmarks/train_step.py --quick --repeats 1     # smoke test: 128x128, no timing
"""
import argparse
import gc
import json
import os.path as osp
import statistics
import subprocess
import sys
from typing import Callable, Dict, Tuple

import torch
import torch.nn as nn

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

from benchmarks.deploy_latency import MODELS_UNDER_TEST, build_pair  # noqa: E402
from benchmarks.effdet_d0_latency import time_rounds  # noqa: E402

BATCH = 2
VARIANTS = ('effdet DetBenchTrain', 'ours eager', 'ours channels-last', 'ours bf16 autocast')
QUICK_SIZE = 128  # --quick: the smallest input every pyramid level (stride 128) fits
# x1, y1, x2, y2 as fractions of the input side, label (0-based)
BOXES = ((0.10, 0.15, 0.45, 0.60, 3), (0.50, 0.40, 0.90, 0.85, 17))


def targets(size: int) -> Tuple[list, dict]:
    """The same boxes for both: our data samples (x1 y1 x2 y2, labels from 0) and effdet's
    target dict (y1 x1 y2 x2, classes from 1)."""
    boxes = torch.tensor([b[:4] for b in BOXES]) * size
    labels = torch.tensor([b[4] for b in BOXES])
    samples = []
    for _ in range(BATCH):
        sample = DetDataSample(metainfo=dict(
            img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size),
            batch_input_shape=(size, size), scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(bboxes=boxes.clone(), labels=labels.clone())
        samples.append(sample)
    target = dict(bbox=boxes[:, [1, 0, 3, 2]].expand(BATCH, -1, -1).contiguous(),
                  cls=(labels + 1).float().expand(BATCH, -1).contiguous())
    return samples, target


def sgd_step(model: nn.Module, loss_fn: Callable[[], torch.Tensor]) -> Callable[[], float]:
    """One SGD step of ``model`` on ``loss_fn()``; returns the loss."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def build_step(variant: str, key: str, size: int) -> Callable[[], float]:
    """The training step of ``variant`` for model ``key``; only that variant's model is kept."""
    import effdet
    name = MODELS_UNDER_TEST[key][0]
    ref, ours = build_pair(name, size)
    samples, target = targets(size)
    x = torch.randn(BATCH, 3, size, size, generator=torch.Generator().manual_seed(1))
    if variant == 'effdet DetBenchTrain':
        del ours
        bench = effdet.DetBenchTrain(ref).train()
        return sgd_step(bench, lambda: bench(x, target)['loss'])
    del ref
    ours.train()
    autocast = variant == 'ours bf16 autocast'
    if variant == 'ours channels-last':
        ours = ours.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def loss() -> torch.Tensor:
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
            losses = ours(x, samples, mode='loss')
        return ours.parse_losses(losses)[0]

    return sgd_step(ours, loss)


def rss_kib(field: str) -> int:
    """``VmRSS`` (resident set size now) or ``VmHWM`` (its peak) of this process, in KiB.

    Linux only. Not ``resource.getrusage(...).ru_maxrss``: that one survives ``execve``, so a
    child started by a large parent would report the parent's peak.
    """
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith(f'{field}:'))


def child(variant: str, key: str, size: int, steps: int) -> dict:
    """Peak memory of ``steps`` training steps of one variant (run in a fresh process)."""
    step = build_step(variant, key, size)
    gc.collect()
    before = rss_kib('VmRSS')
    losses = [step() for _ in range(steps)]
    peak = rss_kib('VmHWM')
    return dict(peak_mib=peak / 1024, step_mib=(peak - before) / 1024, loss=losses[-1])


def memory(variant: str, key: str, size: int, args) -> dict:
    cmd = [sys.executable, osp.abspath(__file__), '--threads', str(args.threads),
           '--memory-steps', str(args.memory_steps), '--child', variant, key, str(size)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f'the peak-memory process of {variant!r} ({key}) failed:\n'
                           f'{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_model(key: str, args) -> Dict[str, dict]:
    size = QUICK_SIZE if args.quick else MODELS_UNDER_TEST[key][2]
    steps = {variant: build_step(variant, key, size) for variant in VARIANTS}
    times = time_rounds(steps, args.warmup, args.repeats, grad=True)
    del steps
    gc.collect()
    results = {}
    for variant in VARIANTS:
        results[variant] = dict(seconds=statistics.median(times[variant]),
                                **memory(variant, key, size, args))
    base = results[VARIANTS[0]]
    for result in results.values():
        result['ratio'] = result['seconds'] / base['seconds']
        result['peak_ratio'] = result['peak_mib'] / base['peak_mib']
    print(f'\n{key}: {size}x{size}, batch {BATCH}, SGD, {torch.get_num_threads()} threads, '
          f'median of {args.repeats} interleaved steps after {args.warmup} warm-up; peak '
          f'memory in a fresh process per variant over {args.memory_steps} steps')
    for variant, r in results.items():
        print(f'  {variant:<22} {1e3 * r["seconds"]:8.1f} ms  {r["ratio"]:5.2f}x effdet  '
              f'peak RSS {r["peak_mib"]:6.0f} MiB ({r["step_mib"]:+.0f} MiB in the steps)  '
              f'loss {r["loss"]:.3f}')
    return results


def markdown(results: Dict[str, Dict[str, dict]], sizes: Dict[str, int]) -> str:
    """One row per variant; per model the step time (ratio to effdet) and the peak RSS."""
    head = ['variant'] + [f'{key} {sizes[key]} {col}' for key in results
                          for col in ('step', 'peak RSS')]
    rows = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for variant in VARIANTS:
        cells = [variant]
        for per_model in results.values():
            r = per_model[variant]
            cells += [f'{1e3 * r["seconds"]:.0f} ms ({r["ratio"]:.2f}x)',
                      f'{r["peak_mib"]:.0f} MiB ({r["peak_ratio"]:.2f}x; steps '
                      f'{r["step_mib"]:+.0f})']
        rows.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(rows)


def main(argv=None) -> Dict[str, Dict[str, dict]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--memory-steps', type=int, default=3,
                        help='steps per variant in the peak-memory subprocess')
    parser.add_argument('--models', nargs='+', default=list(MODELS_UNDER_TEST),
                        choices=list(MODELS_UNDER_TEST))
    parser.add_argument('--quick', action='store_true',
                        help=f'{QUICK_SIZE}x{QUICK_SIZE} inputs: checks that the benchmark '
                        'runs; its figures mean nothing')
    parser.add_argument('--child', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    register_all_modules()
    if args.child:
        variant, key, size = args.child
        print(json.dumps(child(variant, key, int(size), args.memory_steps)))
        return {}
    results = {key: bench_model(key, args) for key in args.models}
    sizes = {key: QUICK_SIZE if args.quick else MODELS_UNDER_TEST[key][2] for key in results}
    print('\n' + markdown(results, sizes))
    return results


if __name__ == '__main__':
    main()
