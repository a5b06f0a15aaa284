"""Pre- and post-processing of an exported EfficientDet, with numpy and OpenCV only.

This file imports nothing from mmdet, mmcv or torch: copy it next to an application that runs
the ONNX file with onnxruntime alone. The ONNX file made by ``tools/deploy/export_onnx.py``
stores the arguments (``mean``, ``std``, ``to_rgb``, the input shape, ...) in its metadata;
:func:`preprocess_args_from_metadata` turns them into keyword arguments of :func:`preprocess`.
"""
import json
import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np


def rescale_size(hw: Tuple[int, int], scale: Tuple[int, int]) -> Tuple[int, int]:
    """Size ``(h, w)`` of an image of size ``hw`` resized keeping its aspect ratio so that its
    long edge fits ``max(scale)`` and its short edge ``min(scale)`` (mmcv's ``imrescale``)."""
    h, w = hw
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def preprocess(img: np.ndarray,
               mean: Sequence[float],
               std: Sequence[float],
               to_rgb: bool = True,
               input_shape: Optional[Tuple[int, int]] = None,
               resize_scale: Optional[Tuple[int, int]] = None,
               pad_size_divisor: int = 128,
               pad_value: float = 0.0) -> Tuple[np.ndarray, Dict]:
    """Turn a BGR ``uint8`` image (as ``cv2.imread`` gives) into the network input.

    Steps, as the mmdet test pipeline and ``DetDataPreprocessor`` do them: resize keeping the
    aspect ratio (bilinear), BGR to RGB, ``(x - mean) / std``, zero padding at the bottom and
    right.

    Args:
        img (np.ndarray): ``(H, W, 3)`` BGR image (``(H, W)`` grayscale is repeated).
        mean (Sequence[float]): Per-channel mean, in the channel order after ``to_rgb``.
        std (Sequence[float]): Per-channel standard deviation.
        to_rgb (bool): Swap BGR to RGB. Defaults to True.
        input_shape (tuple[int, int], optional): ``(H, W)`` of the exported file's input:
            an image larger than it after ``resize_scale`` is shrunk (keeping its aspect
            ratio) to fit, and every image is padded to it. None pads to a multiple of
            ``pad_size_divisor`` instead. Defaults to None.
        resize_scale (tuple[int, int], optional): Keep-ratio resize target (the config's test
            ``Resize`` scale, mmcv's ``imrescale`` rule); None keeps the image size.
            Defaults to None.
        pad_size_divisor (int): Pad to a multiple of it when ``input_shape`` is None.
            Defaults to 128.
        pad_value (float): Value of the padded pixels (after normalisation, mmdet pads the
            normalised image with 0). Defaults to 0.

    Returns:
        tuple[np.ndarray, dict]: The ``(1, 3, H, W)`` float32 input and its meta:
        ``ori_shape`` (the image's ``(h, w)``), ``img_shape`` (after resizing),
        ``scale_factor`` (``(w, h)`` factors) and ``input_shape`` (after padding); when the
        image had to shrink to fit ``input_shape``, ``shrunk_from``: the ``(h, w)`` the test
        pipeline gives it (its objects are then smaller than the model saw them in training).
    """
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    ori_shape = img.shape[:2]
    new_shape = rescale_size(ori_shape, resize_scale) if resize_scale else tuple(ori_shape)
    test_shape = new_shape
    if input_shape is not None and (new_shape[0] > input_shape[0]
                                    or new_shape[1] > input_shape[1]):
        factor = min(input_shape[0] / ori_shape[0], input_shape[1] / ori_shape[1])
        new_shape = (min(int(ori_shape[0] * factor + 0.5), input_shape[0]),
                     min(int(ori_shape[1] * factor + 0.5), input_shape[1]))
    if new_shape != tuple(ori_shape):
        import cv2
        img = cv2.resize(img, new_shape[::-1], interpolation=cv2.INTER_LINEAR)
    img_shape = img.shape[:2]
    data = img.astype(np.float32)
    if to_rgb:
        data = data[..., ::-1]
    data = (data - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    if input_shape is not None:
        padded = tuple(input_shape)
    else:
        padded = tuple(-(-size // pad_size_divisor) * pad_size_divisor for size in img_shape)
    batch = np.full((1, 3) + padded, pad_value, np.float32)
    batch[0, :, :img_shape[0], :img_shape[1]] = data.transpose(2, 0, 1)
    meta = dict(ori_shape=tuple(ori_shape), img_shape=tuple(img_shape),
                scale_factor=(img_shape[1] / ori_shape[1], img_shape[0] / ori_shape[0]),
                input_shape=padded)
    if tuple(img_shape) != tuple(test_shape):  # smaller than the test pipeline would make it
        meta['shrunk_from'] = tuple(test_shape)
    return batch, meta


def postprocess(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                meta: Dict) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detections of one image in its original pixels, without the padding rows.

    Args:
        boxes (np.ndarray): ``(K, 4)`` x1, y1, x2, y2 in network-input pixels.
        scores (np.ndarray): ``(K, )``; padding rows have score 0 and label -1.
        labels (np.ndarray): ``(K, )`` class indices.
        meta (dict): The meta :func:`preprocess` returned.

    Returns:
        tuple[np.ndarray, np.ndarray, np.ndarray]: Boxes clipped to the resized image and
        divided by the scale factor, scores and labels of the real detections.
    """
    keep = labels >= 0
    boxes = boxes[keep].astype(np.float32)
    h, w = meta['img_shape']
    boxes = np.clip(boxes, 0, np.array([w, h, w, h], np.float32))
    sx, sy = meta['scale_factor']
    return boxes / np.array([sx, sy, sx, sy], np.float32), scores[keep], labels[keep]


def _resize_planes(planes: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """``(n, h, w)`` float planes resized to ``size`` ``(H, W)``, bilinear with half-pixel
    centres (PyTorch's ``F.interpolate(mode='bilinear')``), OpenCV taking up to 512 at once."""
    import cv2
    out = [cv2.resize(np.ascontiguousarray(chunk.transpose(1, 2, 0)), size[::-1],
                      interpolation=cv2.INTER_LINEAR).reshape(*size, -1)
           for chunk in np.split(planes, range(512, len(planes), 512))]
    return np.concatenate(out, axis=-1).transpose(2, 0, 1)


def postprocess_masks(mask_logits: np.ndarray, meta: Dict, stride: int,
                      threshold: float) -> np.ndarray:
    """Binary masks in the image's pixels from the ``mask_logits`` ``(n, H / stride,
    W / stride)`` of an exported RTMDet-Ins (the rows of the real detections), as
    ``RTMDetInsHead`` makes them: bilinear upsampling by ``stride`` to the network input,
    resize to the input size divided by the scale factor (mmdet's rescale, which divides
    the height by the width factor and the width by the height factor), crop to the image,
    ``sigmoid > threshold``. Where that leaves the masks smaller than the image (factors
    that differ), mmdet returns them smaller; here they are padded with False. ``stride`` and ``threshold`` are in the file's ``masks``
    metadata. For an image the pipeline did not resize it is three lines (``logits``: one
    row of ``mask_logits``, ``(h, w)``: the image size)::

        up = cv2.resize(logits, None, fx=stride, fy=stride, interpolation=cv2.INTER_LINEAR)
        prob = 1 / (1 + np.exp(-up[:h, :w]))
        mask = prob > threshold

    Args:
        mask_logits (np.ndarray): The logits of the detections kept by :func:`postprocess`.
        meta (dict): The meta :func:`preprocess` returned.
        stride (int): The prototypes' stride.
        threshold (float): ``test_cfg.mask_thr_binary`` of the head.

    Returns:
        np.ndarray: ``(n, h, w)`` bool masks, ``(h, w)`` the image's ``ori_shape``.
    """
    h, w = meta['ori_shape']
    if not len(mask_logits):
        return np.zeros((0, h, w), bool)
    logits = mask_logits.astype(np.float32)
    logits = _resize_planes(logits, (logits.shape[1] * stride, logits.shape[2] * stride))
    sx, sy = meta['scale_factor']
    if (sx, sy) != (1, 1):
        size = (math.ceil(logits.shape[1] * (1 / sx)), math.ceil(logits.shape[2] * (1 / sy)))
        logits = _resize_planes(logits, size)
    masks = np.zeros((len(logits), h, w), bool)
    logits = logits[:, :h, :w]
    with np.errstate(over='ignore'):  # exp of large negative logits: inf, probability 0
        masks[:, :logits.shape[1], :logits.shape[2]] = 1 / (1 + np.exp(-logits)) > threshold
    return masks


def preprocess_args_from_metadata(metadata: Dict[str, str]) -> Dict:
    """Keyword arguments of :func:`preprocess` from an exported file's metadata (what
    ``onnxruntime.InferenceSession(...).get_modelmeta().custom_metadata_map`` returns)."""
    if 'effdet_preprocess' not in metadata:
        raise KeyError('the ONNX file carries no effdet_preprocess metadata: export it with '
                       'tools/deploy/export_onnx.py, or pass mean/std/... to preprocess()')
    args = json.loads(metadata['effdet_preprocess'])
    for key in ('input_shape', 'resize_scale'):
        if args.get(key) is not None:
            args[key] = tuple(args[key])
    return args
