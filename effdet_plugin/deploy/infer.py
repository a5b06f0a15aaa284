"""Run a trained detector on an image, a folder of images or DICOM files: the command behind
``tools/infer.py`` (PyTorch or onnxruntime backend).

Writes one visualization per image (boxes, masks, semantic maps, scores, class names) and one
JSON file with all detections (semantic heads: pixels per class in semantic_pixels.json).

Images are read with the plugin's ``LoadMedicalImageFromFile``: with the config's own loader
settings when the config uses it (``--window`` changes the mode only: a 'fixed' window keeps
the config's ``value_range`` and stops with an error when it has none), else 8-bit files as
they are and 16-bit / DICOM files through a 'percentile' window. The rest of the config's
test pipeline follows unchanged.
A file that cannot be read is skipped with a warning naming it; the others are processed and
written, and the run ends with "N of M images failed" and exit status 1.
Without INPUTS, the images of the config's test annotation file are used; the data options
(``--data-root`` ..., docs/own_data.md) point the config at your data as in tools/test.py.

Example:
    python tools/infer.py configs/demo/effdet_lite0_nuclei.py work_dirs/demo/best.pth \
        data/nuclei/val/ --out-dir outputs/
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

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
    parser.add_argument('--out-dir', default='outputs', help='where PNGs and the JSON go')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    parser.add_argument('--score-thr', type=float, default=0.5,
                        help='hide detections below this score in the PNGs (the JSON keeps all)')
    parser.add_argument('--backend', default='pytorch', choices=['pytorch', 'onnxruntime'],
                        help='onnxruntime runs --onnx (tools/deploy/export_onnx.py) instead of '
                        'the checkpoint')
    parser.add_argument('--onnx', help='the exported .onnx file of --backend onnxruntime')
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


def test_split_images(cfg) -> List[str]:
    """Paths of the images listed in the test dataset's annotation file."""
    from ..cli.data_options import join_root, split_datasets

    datasets = split_datasets(cfg, 'test')
    if not datasets or not datasets[0][1].get('ann_file'):
        raise ValueError('no INPUTS given and the config has no test annotation file: pass '
                         'an image or a folder')
    dataset = datasets[0][1]
    root = dataset.get('data_root')
    ann_file = join_root(root, dataset['ann_file'])
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f"no INPUTS given and the test annotation file '{ann_file}' "
                                'does not exist: pass images, or --data-root/--test-ann')
    with open(ann_file) as f:
        images = json.load(f).get('images') or []
    prefix = join_root(root, (dataset.get('data_prefix') or {}).get('img', ''))
    return [join_root(prefix, img['file_name']) for img in images]


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


def detections_to_json(result, classes) -> list:
    """Detections of one image as JSON-ready dicts (none for semantic-only models)."""
    if 'pred_instances' not in result:
        return []
    inst = result.pred_instances.cpu().numpy()
    return [
        dict(bbox=[round(float(v), 2) for v in box], score=round(float(score), 4),
             label=int(label), class_name=classes[int(label)] if classes else str(int(label)))
        for box, score, label in zip(inst.bboxes, inst.scores, inst.labels)
    ]


def semantic_pixels(result) -> Optional[dict]:
    """Pixel count per predicted semantic class id, or None without a semantic head."""
    if 'pred_sem_seg' not in result:
        return None
    labels, counts = np.unique(result.pred_sem_seg.sem_seg.cpu().numpy(), return_counts=True)
    return {str(int(k)): int(n) for k, n in zip(labels, counts)}


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    from mmdet.apis import inference_detector
    from mmdet.registry import VISUALIZERS
    from mmdet.utils import get_test_pipeline_cfg
    from mmengine.config import Config
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope

    from .. import cli
    from ..cli.data_options import apply_data_options
    from ..cli.drawing import boxes_only, labels_hide_objects
    from ..cli.memory_format import set_memory_format

    cfg = Config.fromfile(args.config)
    # the pipelines name mmdet's transforms without a scope: the onnxruntime path builds no
    # detector (init_detector sets the scope for the PyTorch one)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    data = apply_data_options(cfg, args)
    try:
        files = collect_inputs(args.inputs) if args.inputs else test_split_images(cfg)
    except (FileNotFoundError, ValueError) as e:  # each message says what to pass
        sys.exit(f'error: {e}')
    names = output_names(files)
    if args.backend == 'onnxruntime':  # same outputs from the exported file
        from .onnxruntime_detector import OnnxRuntimeDetector
        if not args.onnx:
            sys.exit('error: --backend onnxruntime needs --onnx FILE.onnx '
                     '(made by tools/deploy/export_onnx.py)')
        if data.get('img_scale_factor', 1.0) != 1.0:  # the file resizes as it was exported
            sys.exit(f"error: --backend onnxruntime does not apply img_scale_factor="
                     f"{data['img_scale_factor']:g}; use --backend pytorch")
        model = OnnxRuntimeDetector(args.onnx)
    else:
        with cli.exit_on_weights_error():  # unreadable, unfit or NaN: one error line
            model = cli.init_detector(cfg, args.checkpoint, device=args.device)
        set_memory_format(model, args.channels_last)
    if data.get('classes'):
        model.dataset_meta = dict(model.dataset_meta or {}, classes=tuple(data['classes']))
    pipeline_cfg = get_test_pipeline_cfg(cfg)
    loaders = build_loaders(pipeline_cfg)
    test_pipeline = Compose([dict(type='mmdet.LoadImageFromNDArray')] + pipeline_cfg[1:])

    # pictures go to --out-dir through out_file; no vis backend (it would want a save_dir)
    vis_cfg = dict(cfg.get('visualizer') or dict(type='DetLocalVisualizer'))
    vis_cfg.pop('vis_backends', None)
    vis_cfg.setdefault('name', 'infer_visualizer')
    visualizer = VISUALIZERS.build(vis_cfg)
    visualizer.dataset_meta = model.dataset_meta
    classes = model.dataset_meta.get('classes', ())
    os.makedirs(args.out_dir, exist_ok=True)

    report, semantic, failed = {}, {}, []
    for path in tqdm(files, desc='infer', unit='img'):
        try:
            img = load_image(path, loaders)
        except Exception as e:  # an unreadable file must not cost the other images
            failed.append(path)
            tqdm.write(f'warning: skipped {path}: cannot read it ({type(e).__name__}: {e})',
                       file=sys.stderr)
            continue
        if args.backend == 'onnxruntime':
            result = model.predict_datasample(img)
        else:
            result = inference_detector(model, img, test_pipeline=test_pipeline)
        with boxes_only(visualizer, labels_hide_objects(result, classes, args.score_thr)):
            visualizer.add_datasample(
                names[path], img[..., ::-1], data_sample=result, draw_gt=False, show=False,
                pred_score_thr=args.score_thr, out_file=osp.join(args.out_dir, names[path]))
        report[path] = detections_to_json(result, classes)
        pixels = semantic_pixels(result)
        if pixels is not None:
            semantic[path] = pixels
    json_path = osp.join(args.out_dir, 'detections.json')
    with open(json_path, 'w') as f:
        json.dump(report, f, indent=1)
    if semantic:
        with open(osp.join(args.out_dir, 'semantic_pixels.json'), 'w') as f:
            json.dump(semantic, f, indent=1)
    total = sum(len(v) for v in report.values())
    print(f'{len(files) - len(failed)} image(s), {total} detections -> {json_path} and PNGs in '
          f'{args.out_dir}')
    if failed:
        sys.exit(f'{len(failed)} of {len(files)} images failed (unreadable, skipped): '
                 + ', '.join(failed))

