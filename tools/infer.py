"""Run a trained detector on an image, a folder of images or DICOM files.

Writes one visualization per image (boxes, masks, scores, class names) and one JSON file with
all detections. 16-bit, grayscale and DICOM inputs are windowed to 8-bit RGB first.

Example:
    python tools/infer.py configs/demo/effdet_lite0_nuclei.py work_dirs/demo/epoch_12.pth \
        data/nuclei/val/ --out-dir outputs/ --score-thr 0.3
"""
import argparse
import json
import os
import os.path as osp
from typing import List

import numpy as np
from tqdm import tqdm

IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.dcm', '.dicom')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Detect objects in images with effdet_plugin')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('inputs', help='an image, a DICOM file or a folder of them')
    parser.add_argument('--out-dir', default='outputs', help='where PNGs and the JSON go')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='hide detections below this score in the PNGs (the JSON keeps all)')
    parser.add_argument('--window', default='percentile',
                        choices=['minmax', 'percentile', 'dicom', 'fixed'],
                        help='intensity window for 16-bit / DICOM images')
    return parser.parse_args()


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


def load_rgb_uint8(path: str, window: str) -> np.ndarray:
    """Read any supported file and return an 8-bit 3-channel BGR image, as mmcv loads."""
    from effdet_plugin.datasets.image_io import read_image
    from effdet_plugin.datasets.intensity import normalize_intensity

    data = read_image(path)
    img = data.array
    if img.dtype != np.uint8 or data.window is not None:
        mode = 'dicom' if window == 'dicom' and data.window else window
        img = normalize_intensity(img, mode=mode if mode != 'fixed' else 'minmax',
                                  window=data.window)
        if data.invert:
            img = 1.0 - img
        img = (img * 255).round().astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img)


def detections_to_json(result, classes) -> list:
    inst = result.pred_instances.cpu().numpy()
    return [
        dict(bbox=[round(float(v), 2) for v in box], score=round(float(score), 4),
             label=int(label), class_name=classes[int(label)] if classes else str(int(label)))
        for box, score, label in zip(inst.bboxes, inst.scores, inst.labels)
    ]


def main() -> None:
    args = parse_args()
    import effdet_plugin  # noqa: F401  (registers our components)
    from mmdet.apis import inference_detector, init_detector
    from mmdet.registry import VISUALIZERS

    files = collect_inputs(args.inputs)
    model = init_detector(args.config, args.checkpoint, device=args.device)
    vis_cfg = dict(model.cfg.get('visualizer') or dict(type='DetLocalVisualizer'))
    vis_cfg.setdefault('name', 'infer_visualizer')
    visualizer = VISUALIZERS.build(vis_cfg)
    visualizer.dataset_meta = model.dataset_meta
    classes = model.dataset_meta.get('classes', ())
    os.makedirs(args.out_dir, exist_ok=True)

    report = {}
    for path in tqdm(files, desc='infer', unit='img'):
        img = load_rgb_uint8(path, args.window)
        result = inference_detector(model, img)
        stem = osp.splitext(osp.basename(path))[0]
        visualizer.add_datasample(
            stem, img[..., ::-1], data_sample=result, draw_gt=False, show=False,
            pred_score_thr=args.score_thr, out_file=osp.join(args.out_dir, f'{stem}.png'))
        report[path] = detections_to_json(result, classes)
    json_path = osp.join(args.out_dir, 'detections.json')
    with open(json_path, 'w') as f:
        json.dump(report, f, indent=1)
    total = sum(len(v) for v in report.values())
    print(f'{len(files)} image(s), {total} detections -> {json_path} and PNGs in {args.out_dir}')


if __name__ == '__main__':
    main()
