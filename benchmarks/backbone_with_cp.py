"""Peak memory of one EffNet training step with and without activation checkpointing (CPU).

Each mode runs in a fresh subprocess and reports the growth of its peak resident set size
(``resource.getrusage(...).ru_maxrss``) over one forward + backward, so the two figures do not
share allocator state. The parent process then checks that both modes give the same gradients
and BN statistics.

    python benchmarks/backbone_with_cp.py [--arch b0] [--batch 4] [--size 256]
"""
import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from effdet_plugin.models.backbones import EffNet


def _step(arch: str, batch: int, size: int, with_cp: bool, seed: int = 0):
    torch.manual_seed(seed)
    model = EffNet(arch, out_indices=(3, 5, 7), with_cp=with_cp, init_cfg=None).train()
    x = torch.randn(batch, 3, size, size, requires_grad=True)
    return model, x


def _loss(model, x):
    torch.manual_seed(1)  # same drop-path draws in both modes
    return sum(o.square().mean() for o in model(x))


def child(arch: str, batch: int, size: int, with_cp: bool) -> dict:
    model, x = _step(arch, batch, size, with_cp)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    _loss(model, x).backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(with_cp=with_cp, step_peak_mib=(peak - before) / 1024, rss_peak_mib=peak / 1024,
                seconds=seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', default='b0')
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--child', choices=['0', '1'], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child is not None:
        print(json.dumps(child(args.arch, args.batch, args.size, args.child == '1')))
        return 0

    results = []
    for mode in ('0', '1'):
        cmd = [sys.executable, __file__, '--arch', args.arch, '--batch', str(args.batch),
               '--size', str(args.size), '--threads', str(args.threads), '--child', mode]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))

    # Same weights, same input, same drop-path draws: gradients and BN stats must agree.
    models = []
    for with_cp in (False, True):
        model, x = _step(args.arch, args.batch, args.size, with_cp)
        _loss(model, x).backward()
        models.append((model, x))
    (plain, x0), (cp, x1) = models
    grad_diff = max([(a.grad - b.grad).abs().max().item()
                     for a, b in zip(plain.parameters(), cp.parameters())] +
                    [(x0.grad - x1.grad).abs().max().item()])
    buffer_diff = max((a.float() - b.float()).abs().max().item()
                      for a, b in zip(plain.buffers(), cp.buffers()))

    print(f'EffNet-{args.arch} training step, batch {args.batch}, {args.size}x{args.size}, '
          f'{args.threads} threads, CPU fp32')
    print(f'{"with_cp":>8}  {"step peak RSS growth":>21}  {"process peak RSS":>16}  {"time":>7}')
    for r in results:
        print(f'{str(r["with_cp"]):>8}  {r["step_peak_mib"]:>17.0f} MiB  '
              f'{r["rss_peak_mib"]:>12.0f} MiB  {r["seconds"]:>6.2f}s')
    saving = 1 - results[1]['step_peak_mib'] / results[0]['step_peak_mib']
    print(f'activation memory saved by with_cp: {saving:.0%}')
    print(f'max |grad difference| (params and input): {grad_diff:.3g}; '
          f'max BN buffer difference: {buffer_diff:.3g}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
