"""Run a trained detector on an image, a folder of images or DICOM files: the command behind
``tools/infer.py`` (PyTorch or onnxruntime backend).

Results go to ``--out-dir`` as they come: one JSON line per image in ``detections.jsonl``
(flushed, so a killed run keeps every finished image and ``--resume`` goes on from there), and
at the end ``detections.json`` (input path -> detections), ``coco_results.json`` (COCO results,
``image_id``s of ``--ann`` or of the config's test annotation file, so pycocotools scores it
directly) and, for semantic heads, ``semantic_pixels.json`` (pixels per class), all built by
reading the lines again. A visualization per image (boxes, masks, semantic maps, scores, class
names) unless ``--no-vis``. Images are read and prepared in ``--workers`` processes and run in
batches of ``--batch-size`` images of the same network-input shape (so batch 8 gives batch 1's
detections); memory does not grow with the number of images. Ctrl-C keeps what was written and
exits with status 130.

Images are read with the plugin's ``LoadMedicalImageFromFile``: with the config's own loader
settings when the config uses it (``--window`` changes the mode only: a 'fixed' window keeps
the config's ``value_range`` and stops with an error when it has none), else 8-bit files as
they are and 16-bit / DICOM files through a 'percentile' window. The rest of the config's
test pipeline follows unchanged.
A file that cannot be read is skipped with a warning naming it; the others are processed and
written, and the run ends with "N of M images failed" and exit status 1 (``--resume`` tries
them again).
Without INPUTS, the images of the config's test annotation file are used; the data options
(``--data-root`` ..., docs/own_data.md) point the config at your data as in tools/test.py.

Example:
    python tools/infer.py configs/demo/effdet_lite0_nuclei.py work_dirs/demo/best.pth \
        data/nuclei/val/ --out-dir outputs/ --batch-size 8 --no-vis --resume
"""
import argparse
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.dcm', '.dicom')
MEDICAL_LOADER = 'LoadMedicalImageFromFile'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from ..cli.data_options import add_data_args
    from ..cli.memory_format import add_memory_format_arg

    parser = argparse.ArgumentParser(
        description='Detect objects in images with effdet_plugin',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('inputs', nargs='?',
                        help="an image, a DICOM file or a folder of them; default: the images "
                        "of the config's test annotation file")
    parser.add_argument('--out-dir', default='outputs', help='where the results and PNGs go')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    parser.add_argument('--score-thr', type=float, default=0.5,
                        help='hide detections below this score in the PNGs (the JSON keeps all)')
    parser.add_argument('--backend', default='pytorch', choices=['pytorch', 'onnxruntime'],
                        help='onnxruntime runs --onnx (tools/deploy/export_onnx.py) instead of '
                        'the checkpoint')
    parser.add_argument('--onnx', help='the exported .onnx file of --backend onnxruntime')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='images per forward pass (images of one input shape batch '
                        'together; an ONNX file needs a --dynamic export for more than 1)')
    parser.add_argument('--workers', type=int, default=2,
                        help='processes that read and prepare images (0: the main process)')
    parser.add_argument('--no-vis', action='store_true',
                        help='write the results only, no pictures')
    parser.add_argument('--resume', action='store_true',
                        help='skip the images already in OUT_DIR/detections.jsonl')
    parser.add_argument('--ann', help='COCO annotation file whose image_ids (matched by '
                        'file_name) and category ids coco_results.json uses; default: the '
                        "config's test annotation file when no INPUTS are given")
    add_memory_format_arg(parser)
    add_data_args(parser)
    return parser.parse_args(argv)


def collect_inputs(path: str) -> List[str]:
    """Files to process: ``path`` itself or the images directly inside a folder."""
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise FileNotFoundError(f"input '{path}' does not exist: pass an image file, a DICOM "
                                'file or a folder of images')
    files = sorted(
        osp.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTS))
    if not files:
        raise FileNotFoundError(f"folder '{path}' holds no images ({', '.join(IMAGE_EXTS)})")
    return files


def output_names(files: Sequence[str]) -> Dict[str, str]:
    """Picture name per input, one per input: its path below the inputs' common folder with
    ``.png`` for its extension (``a/k.jpg`` -> ``a/k.png``); inputs that would share a name keep
    their extension (``k.png``, ``k.jpg`` -> ``k.png.png``, ``k.jpg.png``)."""
    root = osp.commonpath([osp.dirname(osp.abspath(f)) for f in files])
    rel = {f: osp.relpath(osp.abspath(f), root) for f in files}
    keep_ext = set()
    while True:  # each pass gives more inputs their extension; all of them is always unique
        names = {f: r + '.png' if f in keep_ext else osp.splitext(r)[0] + '.png'
                 for f, r in rel.items()}
        inputs_of = {}
        for f, name in names.items():
            inputs_of.setdefault(name, set()).add(rel[f])
        clash = {f for f, name in names.items() if len(inputs_of[name]) > 1} - keep_ext
        if not clash:
            return names
        keep_ext |= clash


def test_split_images(cfg) -> Tuple[List[str], str]:
    """Paths of the images listed in the test dataset's annotation file, and that file."""
    from .coco_eval import split_images

    try:
        ann_file, images = split_images(cfg, 'test')
    except ValueError:
        raise ValueError('no INPUTS given and the config has no test annotation file: pass '
                         'an image or a folder') from None
    except FileNotFoundError as e:
        raise FileNotFoundError(f'no INPUTS given and {e}; or pass images') from None
    return [path for _, path in images], ann_file


def build_loaders(test_pipeline: list) -> list:
    """Loading transforms to try in turn: the config's own medical loader (``--window``
    sets it), or a raw 8-bit loader then a 'percentile' window for other files."""
    from mmdet.registry import TRANSFORMS

    first = dict(test_pipeline[0])
    if first.get('type') in (MEDICAL_LOADER, f'mmdet.{MEDICAL_LOADER}'):
        return [TRANSFORMS.build(first)]
    # A model trained on 8-bit files (mmcv's loader) sees them unchanged; other files (values
    # outside 0-255) are windowed, which the raw loader reports with a ValueError.
    return [TRANSFORMS.build(dict(type=MEDICAL_LOADER, window='none')),
            TRANSFORMS.build(dict(type=MEDICAL_LOADER, window='percentile'))]


def load_image(path: str, loaders: list) -> np.ndarray:
    """Read ``path`` as the pipeline does: an 8-bit image (BGR for colour)."""
    for loader in loaders[:-1]:
        try:
            return loader(dict(img_path=path))['img']
        except ValueError:
            continue
    return loaders[-1](dict(img_path=path))['img']


def build_backend(args: argparse.Namespace, cfg, data: dict) -> tuple:
    """The model, the ``prepare`` step of :class:`~.batching.PreparedImages` (run in the
    workers) and ``predict(batch) -> DetDataSample list`` of ``--backend``."""
    from functools import partial

    from mmdet.utils import get_test_pipeline_cfg
    from mmengine.dataset import Compose

    from .. import cli
    from ..cli.memory_format import set_memory_format
    from . import batching

    if args.backend == 'onnxruntime':  # same outputs from the exported file
        from .onnxruntime_detector import OnnxRuntimeDetector
        if not args.onnx:
            sys.exit('error: --backend onnxruntime needs --onnx FILE.onnx '
                     '(made by tools/deploy/export_onnx.py)')
        if data.get('img_scale_factor', 1.0) != 1.0:  # the file resizes as it was exported
            sys.exit(f"error: --backend onnxruntime does not apply img_scale_factor="
                     f"{data['img_scale_factor']:g}; use --backend pytorch")
        model = OnnxRuntimeDetector(args.onnx)
        if model.fixed_batch and model.fixed_batch != args.batch_size:
            print(f'{args.onnx} has a fixed batch size of {model.fixed_batch}: it runs batches '
                  f'of {model.fixed_batch} (export with --dynamic for any --batch-size)')
        return (model, batching.OnnxPreparer(model.preprocess_args),
                partial(batching.predict_onnx, model))
    with cli.exit_on_weights_error():  # unreadable, unfit or NaN: one error line
        model = cli.init_detector(cfg, args.checkpoint, device=args.device)
    set_memory_format(model, args.channels_last)
    pipeline = Compose([dict(type='mmdet.LoadImageFromNDArray')] + get_test_pipeline_cfg(cfg)[1:])
    divisor = getattr(model.data_preprocessor, 'pad_size_divisor', 1)
    return (model, batching.PytorchPreparer(pipeline, divisor),
            partial(batching.predict_pytorch, model))


def build_visualizer(cfg, dataset_meta: dict):
    """mmdet's visualizer of the config, writing only to the ``out_file`` it is given."""
    from mmdet.registry import VISUALIZERS

    # pictures go to --out-dir through out_file; no vis backend (it would want a save_dir)
    vis_cfg = dict(cfg.get('visualizer') or dict(type='DetLocalVisualizer'))
    vis_cfg.pop('vis_backends', None)
    vis_cfg.setdefault('name', 'infer_visualizer')
    visualizer = VISUALIZERS.build(vis_cfg)
    visualizer.dataset_meta = dataset_meta
    return visualizer


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    from functools import partial

    from mmdet.utils import get_test_pipeline_cfg
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from ..cli.data_options import apply_data_options
    from ..cli.drawing import boxes_only, labels_hide_objects
    from . import results_io as rio
    from .batching import PreparedImages, prepared_batches, prepared_loader

    if args.batch_size < 1 or args.workers < 0:
        sys.exit('error: --batch-size must be >= 1 and --workers >= 0')
    cfg = Config.fromfile(args.config)
    # the pipelines name mmdet's transforms without a scope: the onnxruntime path builds no
    # detector (init_detector sets the scope for the PyTorch one)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    data = apply_data_options(cfg, args)
    try:
        files, ann = (collect_inputs(args.inputs), args.ann) if args.inputs else \
            test_split_images(cfg)
    except (FileNotFoundError, ValueError) as e:  # each message says what to pass
        sys.exit(f'error: {e}')
    model, prepare, predict = build_backend(args, cfg, data)
    if data.get('classes'):
        model.dataset_meta = dict(model.dataset_meta or {}, classes=tuple(data['classes']))
    classes = model.dataset_meta.get('classes', ())
    jsonl = osp.join(args.out_dir, rio.JSONL)
    try:
        image_ids, category_ids = rio.coco_ids(files, args.ann or ann, bool(args.ann), classes)
        done = rio.finished_files(jsonl) if args.resume else set()
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    todo = [f for f in files if f not in done]
    visualizer = None if args.no_vis else build_visualizer(cfg, model.dataset_meta)
    names = None if args.no_vis else output_names(files)
    os.makedirs(args.out_dir, exist_ok=True)

    failed = []
    progress = tqdm(total=len(files), initial=len(files) - len(todo), desc='infer', unit='img')

    def skip(item: dict) -> None:
        failed.append(item['file'])
        tqdm.write(f"warning: skipped {item['file']}: cannot read it ({item['error']})",
                   file=sys.stderr)
        progress.update(1)

    load = partial(load_image, loaders=build_loaders(get_test_pipeline_cfg(cfg)))
    loader = prepared_loader(
        PreparedImages(todo, load, prepare, keep_image=visualizer is not None), args.workers)
    writer, written = rio.JsonLinesWriter(jsonl, append=args.resume), len(files) - len(todo)
    try:
        for batch in prepared_batches(loader, args.batch_size, skip):
            for item, result in zip(batch, predict(batch)):
                if visualizer is not None:
                    path = item['file']
                    with boxes_only(visualizer,
                                    labels_hide_objects(result, classes, args.score_thr)):
                        visualizer.add_datasample(
                            names[path], item['image'][..., ::-1], data_sample=result,
                            draw_gt=False, show=False, pred_score_thr=args.score_thr,
                            out_file=osp.join(args.out_dir, names[path]))
                writer.write(rio.result_record(item['file'], result, classes))
                written += 1
            progress.update(len(batch))
    except KeyboardInterrupt:
        progress.close()
        writer.close()
        sys.stderr.write(f'\ninterrupted: {written} of {len(files)} images are in {jsonl}; '
                         'run the same command with --resume to finish\n')
        sys.exit(130)
    progress.close()
    writer.close()
    counts = rio.write_final_files(args.out_dir, image_ids, category_ids)
    print(f"{counts['images']} image(s), {counts['detections']} detections -> {jsonl}, "
          f'detections.json and coco_results.json'
          + ('' if args.no_vis else ' and PNGs') + f' in {args.out_dir}')
    if failed:
        sys.exit(f'{len(failed)} of {len(files)} images failed (unreadable, skipped): '
                 + ', '.join(failed))
