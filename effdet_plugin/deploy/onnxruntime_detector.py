"""Run an exported EfficientDet or RTMDet-Ins with onnxruntime: image in, detections (and
masks) in image pixels out."""
import json
import warnings
from typing import Dict, List, Optional

import numpy as np

from .preprocess import postprocess, postprocess_masks, preprocess, preprocess_args_from_metadata


class OnnxRuntimeDetector:
    """An ONNX file of ``tools/deploy/export_onnx.py`` (with NMS) in an onnxruntime session.

    Args:
        onnx_file (str): The exported file.
        num_threads (int, optional): onnxruntime intra-op threads; None lets it choose.
            Defaults to None.
        providers (list[str], optional): Execution providers. Defaults to the CPU one.
    """

    def __init__(self, onnx_file: str, num_threads: Optional[int] = None,
                 providers: Optional[list] = None) -> None:
        import onnxruntime as ort
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.session = ort.InferenceSession(
            onnx_file, options, providers=providers or ['CPUExecutionProvider'])
        outputs = [out.name for out in self.session.get_outputs()]
        if outputs[:3] != ['boxes', 'scores', 'labels']:
            raise ValueError(f'{onnx_file} outputs {outputs}, not boxes/scores/labels: export '
                             'it with NMS (tools/deploy/export_onnx.py without --no-nms)')
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.preprocess_args = preprocess_args_from_metadata(metadata)
        self.classes = json.loads(metadata.get('classes', 'null'))
        # an instance segmentation file: mask logits and how to make masks of them
        self.mask_args = json.loads(metadata['masks']) if 'mask_logits' in outputs else None
        self.output_names = ['boxes', 'scores', 'labels'] + (['mask_logits'] if self.mask_args
                                                             else [])
        # what tools/infer.py and mmdet's visualizer read from a model
        self.dataset_meta = dict(classes=tuple(self.classes or ()))
        self.input_name = self.session.get_inputs()[0].name
        self._warned_shrunk = False

    @property
    def fixed_batch(self) -> Optional[int]:
        """The file's batch size when it was fixed at export (no ``--dynamic``), else None."""
        size = self.session.get_inputs()[0].shape[0]
        return size if isinstance(size, int) else None

    def __call__(self, img: np.ndarray) -> Dict[str, np.ndarray]:
        """Detections of one BGR ``uint8`` image: ``boxes`` ``(n, 4)`` x1, y1, x2, y2 in the
        image's pixels, ``scores`` ``(n, )`` (descending), ``labels`` ``(n, )``, and for an
        RTMDet-Ins file ``masks`` ``(n, h, w)`` bool (:func:`postprocess_masks`)."""
        batch, meta = preprocess(img, **self.preprocess_args)
        return self.run_batch(batch, [meta])[0]

    def run_batch(self, batch: np.ndarray, metas: List[dict]) -> List[Dict[str, np.ndarray]]:
        """Detections of a ``(B, 3, H, W)`` batch of :func:`preprocess` outputs of one shape
        (``metas``: their metas), as :meth:`__call__` gives them per image. A file exported
        with a fixed batch size runs the images in batches of that size (the last one
        filled up with copies of its first image, whose detections are dropped)."""
        self._warn_if_shrunk(metas)
        size = self.fixed_batch or len(batch)
        results = []
        for start in range(0, len(batch), size):
            chunk = batch[start:start + size]
            if len(chunk) < size:
                chunk = np.concatenate([chunk] + [chunk[:1]] * (size - len(chunk)))
            outputs = self.session.run(self.output_names, {self.input_name: chunk})
            for i, meta in enumerate(metas[start:start + size]):
                boxes, scores, labels = postprocess(*(out[i] for out in outputs[:3]), meta)
                results.append(dict(boxes=boxes, scores=scores, labels=labels))
                if self.mask_args:
                    results[-1]['masks'] = postprocess_masks(
                        outputs[3][i][outputs[2][i] >= 0], meta, **self.mask_args)
        return results

    def _warn_if_shrunk(self, metas: List[dict]) -> None:
        """Warn once when an image is larger than the file's fixed input after the test
        resize: it is shrunk to fit, its objects get smaller than in training, and recall can
        fall to nothing without any error."""
        shrunk = next((m for m in metas if 'shrunk_from' in m), None)
        if shrunk is None or self._warned_shrunk:
            return
        self._warned_shrunk = True
        (h, w), (fit_h, fit_w) = shrunk['shrunk_from'], shrunk['img_shape']
        warnings.warn(
            f'an image of {h}x{w} after the test resize does not fit the input of '
            f'{shrunk["input_shape"][0]}x{shrunk["input_shape"][1]} this ONNX file was exported '
            f'with: it is shrunk to {fit_h}x{fit_w} (x{fit_h / h:.2f}), so its objects are '
            'smaller than the model learned them and detections may be missed. Export with '
            '--dynamic-hw, or with --shape H W at least the test size of your images '
            '(tools/deploy/export_onnx.py).', stacklevel=3)

    def predict_datasample(self, img: np.ndarray):
        """:meth:`__call__` as an mmdet ``DetDataSample`` (``pred_instances``), the result
        type of ``mmdet.apis.inference_detector``, for mmdet's visualizer."""
        return as_datasample(self(img), img.shape[:2])


def as_datasample(det: Dict[str, np.ndarray], ori_shape: tuple):
    """Detections of :meth:`OnnxRuntimeDetector.__call__` as an mmdet ``DetDataSample``."""
    import torch
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    sample = DetDataSample(metainfo=dict(ori_shape=tuple(ori_shape)))
    sample.pred_instances = InstanceData(
        bboxes=torch.from_numpy(det['boxes']), scores=torch.from_numpy(det['scores']),
        labels=torch.from_numpy(det['labels']))
    if 'masks' in det:  # drawn by mmdet's visualizer, as the PyTorch backend's
        sample.pred_instances.masks = torch.from_numpy(det['masks'])
    return sample
