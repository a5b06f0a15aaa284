"""Deployment: ONNX export with in-graph NMS (:mod:`.onnx_export`, RTMDet-Ins masks in
:mod:`.instance_export`; the command behind
``tools/deploy/export_onnx.py`` in :mod:`.export`), onnxruntime inference
(:mod:`.onnxruntime_detector`), mmdet-free preprocessing (:mod:`.preprocess`) and the speed of
a config's model (:mod:`.benchmark`, behind ``tools/benchmark.py``); :mod:`.infer` is the
command behind ``tools/infer.py`` (PyTorch or onnxruntime backend).

Nothing here is imported by ``import effdet_plugin``: onnx and onnxruntime are only needed by
those who deploy.
"""
from .onnxruntime_detector import OnnxRuntimeDetector
from .preprocess import postprocess, postprocess_masks, preprocess, preprocess_args_from_metadata

__all__ = ['OnnxRuntimeDetector', 'preprocess', 'postprocess', 'postprocess_masks',
           'preprocess_args_from_metadata']
