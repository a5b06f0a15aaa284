"""Images per second and peak memory over a folder of images: ``tools/infer.py`` (PyTorch
channels-last and onnxruntime, batch 1 and 8) against efficientdet-pytorch's
``DetBenchPredict`` in a plain loop at the same batch, EfficientDet-D0 and Lite0.

The images are generated: ``--images`` JPEGs, half 640x480 and half 1024x768 (shapes on a
gradient, so they decode like photographs rather than noise). Every model holds the same
weights: a random effdet model (``pretrained=False``, scores spread like a trained model's)
converted to our COCO config, with hard NMS 0.5 over the image's 5000 best candidates and 100
detections out, as ``deploy_latency.py`` sets them.

- effdet: read with OpenCV, resized keeping the aspect ratio and padded to the model's square
  input (effdet's own ``ResizePad``), normalised, ``DetBenchPredict`` on the batch, detections
  to numpy; in one process, one image after another.
- ours: ``effdet_plugin.deploy.infer.main`` with ``--no-vis --batch-size B --workers W``:
  images read and prepared by the worker, resized keeping the aspect ratio and padded to a
  multiple of 128 only (512x384 for these images in D0), batched by input shape, JSON lines
  written; onnxruntime runs a ``--dynamic --dynamic-hw`` export of the same checkpoint.

Each variant runs in its own process, so that its peak resident memory (``VmHWM`` of the
main process; the worker's peak beside it) is its own. images/s is over the images after a
warm-up: for effdet the loop after one warm-up batch; for ours ``(N - 8) / (T_N - T_8)``, with
``T_k`` the wall time of a full run on k of the images (both after a first warm-up run), so
that model loading and start-up cancel. "growth" is the peak after all N images minus the
peak after the first 8: memory that grows with the number of images would show there.

    python benchmarks/infer_throughput.py [--images 1000] [--threads 2] [--models d0 lite0]
    python benchmarks/infer_throughput.py --kill-resume 1000   # killed half way, resumed
"""
import argparse
import json
import os
import os.path as osp
import resource
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

import cv2
import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from benchmarks.train_step import rss_kib  # noqa: E402

SIZES = ((480, 640), (768, 1024))  # (h, w), alternating
BATCHES = (1, 8)
WARMUP = 8
VARIANTS = ('effdet DetBenchPredict', 'ours PyTorch channels-last', 'ours onnxruntime')
MODELS = {'d0': ('tf_efficientdet_d0', 'configs/effdet_b0_coco.py', 512),
          'lite0': ('tf_efficientdet_lite0', 'configs/effdet_lite0_coco.py', 320)}


def write_images(folder: str, count: int, sizes=SIZES, seed: int = 0) -> List[str]:
    """``count`` JPEGs of the ``sizes`` in turn: a colour gradient with random rectangles
    and discs."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(seed)
    paths = []
    for i in range(count):
        h, w = sizes[i % len(sizes)]
        ramp = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
        img = (rng.rand(1, 1, 3) * 255 * ramp + rng.rand(h, 1, 3) * 60).astype(np.uint8)
        img = np.broadcast_to(img, (h, w, 3)).copy()
        for _ in range(12):
            x, y = int(rng.randint(0, w)), int(rng.randint(0, h))
            color = tuple(int(c) for c in rng.randint(0, 255, 3))
            if rng.rand() < 0.5:
                cv2.circle(img, (x, y), int(rng.randint(5, h // 6)), color, -1)
            else:
                cv2.rectangle(img, (x, y), (x + int(rng.randint(10, w // 4)),
                                            y + int(rng.randint(10, h // 4))), color, -1)
        path = osp.join(folder, f'{i:05d}.jpg')
        cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def prepare_model(key: str, folder: str) -> Dict[str, str]:
    """Random effdet weights (saved for the effdet child), the same weights converted to
    our config and checkpoint, and that checkpoint exported to ONNX (dynamic batch and
    size)."""
    import torch
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    from benchmarks.deploy_latency import build_pair
    from benchmarks.effdet_d0_latency import HARD_NMS
    from effdet_plugin.checkpoint.effdet_release import convert_effdet_checkpoint
    from effdet_plugin.deploy import export
    register_all_modules()
    name, config, size = MODELS[key]
    ref, ours = build_pair(name, size)
    files = {k: osp.join(folder, f'{key}{ext}') for k, ext in (
        ('effdet', '_effdet.pth'), ('config', '.py'), ('checkpoint', '.pth'), ('onnx', '.onnx'))}
    torch.save(ref.state_dict(), files['effdet'])
    cfg = Config.fromfile(config)  # as build_pair builds ours
    cfg.merge_from_dict(convert_effdet_checkpoint(
        ref.state_dict(), name=name, num_classes=90)['meta']['cfg_options'])
    cfg.model.test_cfg = HARD_NMS.to_dict()
    cfg.model.backbone.init_cfg = None
    cfg.dump(files['config'])
    torch.save(dict(state_dict=ours.state_dict(),
                    meta=dict(dataset_meta=dict(classes=tuple(f'c{i}' for i in range(90))))),
               files['checkpoint'])
    export.main([files['config'], files['checkpoint'], '--out', files['onnx'], '--dynamic',
                 '--dynamic-hw'])
    return files


def effdet_loop(key: str, files: Dict[str, str], paths: List[str], batch: int) -> dict:
    """effdet's ``DetBenchPredict`` over ``paths`` in a plain loop (in this process)."""
    import effdet
    import torch
    name, _, size = MODELS[key]
    model = effdet.create_model(name, pretrained=False, pretrained_backbone=False,
                                image_size=(size, size))
    model.load_state_dict(torch.load(files['effdet']))
    bench = effdet.DetBenchPredict(model).eval()
    mean = np.array([0.485, 0.456, 0.406], np.float32) * 255
    std = np.array([0.229, 0.224, 0.225], np.float32) * 255

    def run(chunk: List[str]) -> int:
        inputs, scales, sizes = [], [], []
        for path in chunk:
            img = cv2.imread(path)[..., ::-1]
            h, w = img.shape[:2]
            scale = min(size / h, size / w)
            img = cv2.resize(img, (round(w * scale), round(h * scale)))
            padded = np.zeros((size, size, 3), np.float32)  # the mean after normalising
            padded[:img.shape[0], :img.shape[1]] = (img - mean) / std
            inputs.append(torch.from_numpy(padded.transpose(2, 0, 1)))
            scales.append(1 / scale)
            sizes.append([w, h])
        with torch.no_grad():
            dets = bench(torch.stack(inputs), img_info=dict(
                img_scale=torch.tensor(scales), img_size=torch.tensor(sizes).float()))
        return int((dets[..., 4] > 0).sum())

    run(paths[:batch])  # warm-up
    warm_peak = rss_kib('VmHWM')
    start = time.perf_counter()
    for i in range(0, len(paths), batch):
        run(paths[i:i + batch])
    return dict(images_per_s=len(paths) / (time.perf_counter() - start), warm_peak=warm_peak)


def ours_runs(files: Dict[str, str], folder: str, out: str, batch: int, onnx: bool,
              workers: int) -> dict:
    """``infer.main`` on the first ``WARMUP`` images (twice) and on all of them."""
    from effdet_plugin.deploy import infer
    few = osp.join(out, 'few')
    os.makedirs(few)
    for name in sorted(os.listdir(folder))[:WARMUP]:
        os.symlink(osp.join(folder, name), osp.join(few, name))
    options = ['--no-vis', '--batch-size', str(batch), '--workers', str(workers)]
    if onnx:
        options += ['--backend', 'onnxruntime', '--onnx', files['onnx']]
    times = []
    for i, source in enumerate((few, few, folder)):
        start = time.perf_counter()
        infer.main([files['config'], files['checkpoint'], source, '--out-dir',
                    osp.join(out, f'run{i}')] + options)
        times.append(time.perf_counter() - start)
        if i == 1:
            warm_peak = rss_kib('VmHWM')
    count = len(os.listdir(folder))
    return dict(images_per_s=(count - WARMUP) / (times[2] - times[1]), warm_peak=warm_peak)


def child(args) -> None:
    """One variant in this (fresh) process; prints its figures as one JSON line."""
    import torch
    torch.set_num_threads(args.threads)
    variant, key, batch = args.child[0], args.child[1], int(args.child[2])
    files = json.loads(args.files)
    paths = sorted(osp.join(args.folder, f) for f in os.listdir(args.folder))
    if variant == VARIANTS[0]:
        stats = effdet_loop(key, files, paths, batch)
    else:
        with tempfile.TemporaryDirectory() as out:
            stats = ours_runs(files, args.folder, out, batch, variant == VARIANTS[2],
                              args.workers)
    peak = rss_kib('VmHWM')
    workers_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps(dict(images_per_s=stats['images_per_s'], peak_mib=peak / 1024,
                          growth_mib=(peak - stats['warm_peak']) / 1024,
                          worker_peak_mib=workers_kib / 1024 if variant != VARIANTS[0] else 0)))


def run_child(variant: str, key: str, batch: int, files: dict, folder: str, args) -> dict:
    cmd = [sys.executable, osp.abspath(__file__), '--child', variant, key, str(batch),
           '--files', json.dumps(files), '--folder', folder, '--threads', str(args.threads),
           '--workers', str(args.workers)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f'{variant} ({key}, batch {batch}) failed:\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(results: Dict[str, Dict[tuple, dict]]) -> str:
    lines = ['| model | variant | batch | images/s | vs effdet | peak RSS | growth | '
             'worker peak |', '|---|---|---|---|---|---|---|---|']
    for key, rows in results.items():
        for (variant, batch), r in rows.items():
            ref = rows.get((VARIANTS[0], batch))
            ratio = f"{r['images_per_s'] / ref['images_per_s']:.2f}x" if ref else '-'
            worker = f"{r['worker_peak_mib']:.0f} MiB" if r['worker_peak_mib'] else '-'
            lines.append(f"| {key} | {variant} | {batch} | {r['images_per_s']:.2f} | "
                         f"{ratio} | {r['peak_mib']:.0f} MiB | {r['growth_mib']:+.0f} MiB "
                         f'| {worker} |')
    return '\n'.join(lines)


def throughput(args) -> None:
    with tempfile.TemporaryDirectory() as work:
        folder = osp.join(work, 'images')
        write_images(folder, args.images)
        results = {}
        for key in args.models:
            files = prepare_model(key, work)
            results[key] = {}
            for batch in args.batches:
                for variant in (v for v in VARIANTS if any(w in v for w in args.variants)):
                    r = run_child(variant, key, batch, files, folder, args)
                    results[key][(variant, batch)] = r
                    print(f'{key} {variant} batch {batch}: {r}', flush=True)
    print(f'\n{args.images} images (half 640x480, half 1024x768), {args.threads} threads, '
          f'{args.workers} worker(s) for ours\n')
    print(markdown(results))


def _poll_peak(proc: subprocess.Popen, peak: int) -> int:
    try:
        with open(f'/proc/{proc.pid}/status') as f:
            return max(peak, next(int(line.split()[1]) for line in f
                                  if line.startswith('VmHWM:')))
    except (OSError, StopIteration):
        return peak


def kill_resume(args) -> None:
    """``tools/infer.py --batch-size 8 --no-vis`` on ``--kill-resume`` small images of the
    demo model (random weights): SIGKILL once half the lines are written, then ``--resume``."""
    import torch
    from mmdet.registry import MODELS as REGISTRY
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import effdet_plugin  # noqa: F401
    register_all_modules()
    config = 'configs/demo/effdet_lite0_nuclei.py'
    count = args.kill_resume
    with tempfile.TemporaryDirectory() as work:
        folder = osp.join(work, 'images')
        write_images(folder, count, sizes=((128, 128), (128, 256)))
        cfg = Config.fromfile(config)
        cfg.model.backbone.init_cfg = None
        checkpoint = osp.join(work, 'demo.pth')
        torch.manual_seed(0)
        torch.save(dict(state_dict=REGISTRY.build(cfg.model).state_dict(),
                        meta=dict(dataset_meta=dict(classes=('nucleus', )))), checkpoint)
        out = osp.join(work, 'out')
        jsonl = osp.join(out, 'detections.jsonl')
        cmd = [sys.executable, 'tools/infer.py', config, checkpoint, folder, '--out-dir', out,
               '--batch-size', '8', '--no-vis', '--workers', str(args.workers)]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        start, peak = time.perf_counter(), 0
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        while proc.poll() is None:
            peak = _poll_peak(proc, peak)
            if osp.isfile(jsonl) and open(jsonl, 'rb').read().count(b'\n') >= count // 2:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        proc.wait()
        first = time.perf_counter() - start
        data = open(jsonl, 'rb').read()
        lines, cut = data.count(b'\n'), len(data) - len(data.rsplit(b'\n', 1)[0]) - 1
        start, peak2 = time.perf_counter(), 0
        proc = subprocess.Popen(cmd + ['--resume'], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        while proc.poll() is None:
            peak2 = _poll_peak(proc, peak2)
            time.sleep(0.05)
        second = time.perf_counter() - start
        if proc.returncode:
            raise RuntimeError(proc.stderr.read()[-3000:])
        files = [json.loads(line)['file'] for line in open(jsonl)]
        final = json.load(open(osp.join(out, 'detections.json')))
    print(f'{count} images (128x128 and 128x256), demo Lite0 with random weights, batch 8, '
          f'--no-vis, {args.threads} threads, {args.workers} worker(s)')
    print(f'first run: SIGKILL after {first:.1f} s with {lines} whole lines written'
          f'{f" and {cut} bytes of a cut line" if cut > 0 else ""}; peak RSS {peak / 1024:.0f} '
          'MiB')
    print(f'--resume: {second:.1f} s for the remaining {count - lines} images (start-up '
          f'included), peak RSS {peak2 / 1024:.0f} MiB')
    print(f'final: {len(files)} lines, {len(set(files))} distinct images of {count}, '
          f'detections.json {len(final)} images')


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--images', type=int, default=1000, help='generated images')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--workers', type=int, default=1,
                        help="ours: infer.py's --workers (image reading processes)")
    parser.add_argument('--models', nargs='+', default=list(MODELS), choices=list(MODELS))
    parser.add_argument('--batches', nargs='+', type=int, default=list(BATCHES))
    parser.add_argument('--variants', nargs='+', default=['effdet', 'PyTorch', 'onnxruntime'],
                        choices=['effdet', 'PyTorch', 'onnxruntime'])
    parser.add_argument('--kill-resume', type=int, metavar='N',
                        help='instead: the kill-and-resume run on N small images')
    parser.add_argument('--child', nargs=3, help=argparse.SUPPRESS)
    parser.add_argument('--files', help=argparse.SUPPRESS)
    parser.add_argument('--folder', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
    elif args.kill_resume:
        kill_resume(args)
    else:
        throughput(args)


if __name__ == '__main__':
    main()
