"""The GPU check: what a user of a GPU runs, each part timed, in one table and a report.

Run by benchmarks/gpu/check.sh after it has installed the bundle and built mmcv; on a machine
without CUDA (the rehearsal) the same steps run on the CPU with smaller sizes.

    python benchmarks/gpu/gpu_check.py --out OUT_DIR [--mmcv-build "CUDA sm_90, 95 s"]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
DEMO = 'configs/demo/effdet_lite0_nuclei.py'
CPU_DEMO_AP = 0.631  # the demo's bbox AP on the held-out strip, trained on the CPU (README)


class Report:
    """Rows of (part, result, ok, seconds); printed as one table, written as .md and .json."""

    def __init__(self, out: Path, device: str):
        self.out, self.device, self.rows, self.details = out, device, [], {}

    def part(self, name: str, fn) -> None:
        start = time.perf_counter()
        try:
            result, ok, detail = fn()
        except Exception as e:  # one failed part must not hide the others
            result, ok, detail = f'{type(e).__name__}: {e}'.splitlines()[0][:200], False, \
                traceback.format_exc()
        seconds = time.perf_counter() - start
        self.rows.append(dict(part=name, result=result, ok=ok, seconds=round(seconds, 1)))
        self.details[name] = detail
        print(f'[gpu_check] {"ok  " if ok else "FAIL"} {name}: {result} ({seconds:.0f} s)',
              flush=True)

    def write(self, header: dict) -> bool:
        lines = ['| part | result | ok | s |', '| --- | --- | --- | --- |']
        lines += [f'| {r["part"]} | {r["result"]} | {"yes" if r["ok"] else "NO"} | '
                  f'{r["seconds"]:.0f} |' for r in self.rows]
        text = '\n'.join(f'- {k}: {v}' for k, v in header.items()) + '\n\n' + '\n'.join(lines)
        print('\n' + text, flush=True)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / 'gpu_report.md').write_text(f'# GPU check\n\n{text}\n')
        (self.out / 'gpu_report.json').write_text(json.dumps(
            dict(header=header, rows=self.rows, details=self.details), indent=1, default=str))
        return all(r['ok'] for r in self.rows)


def failure(proc: subprocess.CompletedProcess) -> RuntimeError:
    """The error a tool stopped with: its last line that names one, else its last line."""
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    named = [line for line in lines if 'error' in line.lower() and 'Warning' not in line]
    return RuntimeError((named or lines or ['no output'])[-1].strip() +
                        f' (exit {proc.returncode})\n' + '\n'.join(lines[-40:]))


def run(cmd, timeout: int, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, **kwargs.pop('env', {}))
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def cuda_tests():
    # only the files that hold cuda tests: the others may import what the GPU image lacks
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / 'tests').rglob('test_*.py')
                   if 'mark.cuda' in p.read_text())
    proc = run([sys.executable, '-m', 'pytest', '-m', 'cuda', '-q', *files], timeout=300)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    return summary, proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def config_steps(device: str):
    from config_steps import CONFIGS, step_and_predict

    def check():
        rows, bad = {}, []
        for name, config, kind in CONFIGS:
            try:
                r = step_and_predict(config, kind, device, size=256)
            except Exception as e:
                r = dict(error=f'{type(e).__name__}: {e}', finite=False, outputs_on=[])
            rows[name] = r
            if not r['finite'] or r['outputs_on'] != [device]:
                bad.append(name)
            print(f'[gpu_check]   {name}: {r}', flush=True)
        kernels = sorted({k for r in rows.values() for part in ('train_kernels', 'predict_kernels')
                          for k in r.get(part, {})})
        return (f'{len(rows) - len(bad)}/{len(rows)} configs: finite loss, outputs on {device}; '
                f'mmcv kernels {", ".join(kernels)}' + (f'; failed: {", ".join(bad)}' if bad
                                                       else ''), not bad, rows)
    return check


def d0_speed(device: str):
    from train_step_speed import d0_speed_vs_effdet

    def check():
        cuda = device == 'cuda'
        r = d0_speed_vs_effdet(device, size=512 if cuda else 256, batch=16 if cuda else 2,
                               steps=20 if cuda else 2)
        text = (f'train {r["train"]:.0f} img/s ({r["train"] / r["effdet_train"]:.2f}x effdet), '
                f'channels-last {r["train_cl"]:.0f} ({r["train_cl"] / r["effdet_train"]:.2f}x); '
                f'predict {r["predict"]:.0f} ({r["predict"] / r["effdet_predict"]:.2f}x)')
        if cuda:
            text += f'; peak GiB ours {r["peak_gib"]:.2f}, effdet {r["effdet_peak_gib"]:.2f}'
        return text, True, r
    return check


def demo(device: str, iters: int):
    work = REPO / 'work_dirs' / 'gpu_check_demo'

    def ap_of(output: str) -> float:
        m = re.search(r'coco/bbox_mAP: ([\d.]+)', output)
        if not m:
            raise RuntimeError(f'no coco/bbox_mAP in the output:\n{output[-1500:]}')
        return float(m.group(1))

    def check():
        options = [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
                   f'default_hooks.checkpoint.interval={iters}']
        if iters < 400:  # the rehearsal's short schedule: warm-up and cosine shortened with it
            options += ['param_scheduler=[]']
        start = time.perf_counter()
        proc = run([sys.executable, 'tools/train.py', DEMO, '--amp', '--work-dir', str(work),
                    '--cfg-options', *options], timeout=600)
        wall = time.perf_counter() - start
        if proc.returncode:
            raise failure(proc)
        ckpt = (work / 'last_checkpoint').read_text().strip()
        if not Path(ckpt).is_file():  # written relative to the work dir
            ckpt = str(work / ckpt)
        aps = {}
        for name, extra in (('fp32', []), ('fp16', ['--cfg-options', 'test_cfg.fp16=True'])):
            test = run([sys.executable, 'tools/test.py', DEMO, ckpt, '--work-dir',
                        str(work / f'test_{name}'), *extra], timeout=300)
            if test.returncode:
                raise failure(test)
            aps[name] = ap_of(test.stdout + test.stderr)
        gap = abs(aps['fp32'] - aps['fp16'])
        # test_cfg.fp16 autocasts to fp16 on CUDA, to bf16 on a CPU (8 mantissa bits, not 11)
        half, tolerance = ('fp16', 0.005) if device == 'cuda' else ('bf16', 0.02)
        ok = gap <= tolerance and (iters < 400 or aps['fp32'] > 0)
        return (f'{iters} it AMP in {wall:.0f} s; AP fp32 {aps["fp32"]:.3f} / {half} '
                f'{aps["fp16"]:.3f} (gap {gap:.3f}, limit {tolerance}; CPU-trained demo '
                f'{CPU_DEMO_AP})', ok,
                dict(wall_s=wall, **aps))
    return check


def dist_train(device: str):
    def check():
        options = ['train_cfg.max_iters=1', 'train_cfg.val_interval=1000',
                   'default_hooks.checkpoint.interval=1000', 'default_hooks.logger.interval=1']
        if device == 'cuda':
            options.append('sync_bn=torch')  # mmengine converts every BN to SyncBatchNorm
        proc = run(['bash', 'tools/dist_train.sh', DEMO, '1', '--amp', '--work-dir',
                    str(REPO / 'work_dirs' / 'gpu_check_dist'), '--cfg-options', *options],
                   timeout=180, env=dict(PYTHON=sys.executable, PORT='29511'))
        out = proc.stdout + proc.stderr
        backend = 'nccl' if device == 'cuda' else 'gloo'
        sync = 'SyncBN' if device == 'cuda' else 'BN (SyncBN needs CUDA)'
        ok = proc.returncode == 0 and 'Iter(train) [1/1]' in out
        return f'1 process, {backend}, {sync}: {"1 step" if ok else "failed"}', ok, out[-3000:]
    return check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path, required=True)
    parser.add_argument('--mmcv-build', default='', help='how mmcv was built (for the report)')
    parser.add_argument('--demo-iters', type=int, default=None,
                        help='demo iterations (default 400 on CUDA, 20 on the CPU)')
    args = parser.parse_args()
    os.chdir(REPO)
    from mmdet.utils import register_all_modules
    register_all_modules()
    import mmcv

    import effdet_plugin  # noqa: F401
    from effdet_plugin.models.utils.mmcv_fallback import enable_mmcv_fallback
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    fallback = enable_mmcv_fallback()
    header = dict(
        date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
        device=torch.cuda.get_device_name(0) if device == 'cuda' else 'CPU (rehearsal)',
        python=sys.version.split()[0], torch=torch.__version__, mmcv=mmcv.__version__,
        mmcv_build=args.mmcv_build or 'n/a',
        mmcv_fallback='on: ' + fallback if fallback else 'off')
    report = Report(args.out, device)
    report.part('pytest -m cuda', cuda_tests)
    report.part('configs: AMP step + predict', config_steps(device))
    report.part('D0 speed vs effdet', d0_speed(device))
    iters = args.demo_iters or (400 if device == 'cuda' else 20)
    report.part('demo on ' + device, demo(device, iters))
    report.part('tools/dist_train.sh 1 process', dist_train(device))
    sys.exit(0 if report.write(header) else 1)


if __name__ == '__main__':
    main()
