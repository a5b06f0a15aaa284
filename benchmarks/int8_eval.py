"""int8 files against their float export: COCO bbox AP on the validation images, latency on
this CPU and file size (the int8 table of docs/deploy.md).

    python benchmarks/int8_eval.py CONFIG FLOAT.onnx INT8.onnx [INT8_B.onnx ...] \
        [data flags] --threads 2 --repeats 20

AP: every file with NMS runs on the config's validation images through ``OnnxRuntimeDetector``
and is scored by pycocotools (:func:`effdet_plugin.deploy.coco_eval.evaluate_onnx`); files of
raw maps (``--no-nms`` exports) are only timed, with a ``--no-nms`` float file. Latency: batch 1,
the first validation image preprocessed as the files expect, one onnxruntime session per file
with ``--threads`` intra-op threads, timed round by round in turn (interleaved) after warm-up;
medians, and their ratio to the float file's. Prints a markdown table and whether the CPU has
VNNI (int8 dot-product instructions).
"""
import argparse
import os.path as osp
import statistics
import sys
import time

import effdet_plugin  # noqa: F401
from effdet_plugin.cli.data_options import add_data_args, apply_data_options
from effdet_plugin.deploy import preprocess, preprocess_args_from_metadata
from effdet_plugin.deploy.coco_eval import evaluate_onnx, image_reader, split_images


def vnni_flags() -> str:
    """The CPU's VNNI flags from /proc/cpuinfo ('none' without; '?' off Linux)."""
    if not osp.isfile('/proc/cpuinfo'):
        return '?'
    with open('/proc/cpuinfo') as f:
        flags = set(f.read().split())
    return ' '.join(sorted(flags & {'avx512_vnni', 'avx_vnni', 'amx_int8'})) or 'none'


def session(path: str, threads: int):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def interleaved_latency(files, batch, threads: int, warmup: int, repeats: int) -> dict:
    """Median seconds per ``session.run`` of each file, the files timed in turn each round."""
    sessions = [session(f, threads) for f in files]
    times = {f: [] for f in files}
    for i in range(warmup + repeats):
        for f, sess in zip(files, sessions):
            start = time.perf_counter()
            sess.run(None, {sess.get_inputs()[0].name: batch})
            if i >= warmup:
                times[f].append(time.perf_counter() - start)
    return {f: statistics.median(t) for f, t in times.items()}


def main(argv=None) -> None:
    from mmengine.config import Config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the config the models were trained with')
    parser.add_argument('float_onnx', help='float export (tools/deploy/export_onnx.py)')
    parser.add_argument('int8_onnx', nargs='+', help='int8 files (tools/deploy/quantize_onnx.py)')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--split', default='val')
    add_data_args(parser)
    args = parser.parse_args(argv)
    files = [args.float_onnx] + args.int8_onnx
    for f in files:
        if not osp.isfile(f):
            sys.exit(f"error: '{f}' not found")
    cfg = Config.fromfile(args.config)
    apply_data_options(cfg, args)

    # AP of the files with NMS; raw-map files (--no-nms exports) are timed only
    aps = {f: evaluate_onnx(f, cfg, args.split, num_threads=args.threads) for f in files
           if 'boxes' in [o.name for o in session(f, 1).get_outputs()]}
    first = split_images(cfg, args.split)[1][0][1]
    metadata = session(args.float_onnx, 1).get_modelmeta().custom_metadata_map
    batch, _ = preprocess(image_reader(cfg)(first), **preprocess_args_from_metadata(metadata))
    latency = interleaved_latency(files, batch, args.threads, args.warmup, args.repeats)

    base_ms = latency[args.float_onnx]
    base_ap = aps[args.float_onnx]['bbox_mAP'] if args.float_onnx in aps else None
    num_images = len(split_images(cfg, args.split)[1])
    print(f'\n{num_images} {args.split} images; latency: batch 1, '
          f'{batch.shape[2]}x{batch.shape[3]}, {args.threads} threads, median of '
          f'{args.repeats} interleaved rounds; CPU VNNI: {vnni_flags()}\n')
    print('| file | size | bbox AP | AP50 | AP change | latency | ratio to float |')
    print('|---|---|---|---|---|---|---|')
    for f in files:
        ap = aps.get(f)
        scores = (f'{ap["bbox_mAP"]:.3f} | {ap["bbox_mAP_50"]:.3f} | '
                  f'{ap["bbox_mAP"] - base_ap:+.3f}') if ap and base_ap is not None else '- | - | -'
        print(f'| {osp.basename(f)} | {osp.getsize(f) / 2**20:.1f} MiB | {scores} | '
              f'{latency[f] * 1e3:.1f} ms | {latency[f] / base_ms:.2f}x |')


if __name__ == '__main__':
    main()
