"""ONNX export of EfficientDet detectors with anchor decoding and hard NMS in the graph.

:class:`EffDetExportModel` wraps a built detector: image batch in, fixed-size detections out
(or the raw maps, or ``seg_logits``). Its post-processing traces the head's own anchors
(``prior_generator.grid_priors``), candidate selection and box decoding
(``EffDetHead.decode_candidates`` in its static-shape form: ``nms_pre`` per level or per image,
scores at or below ``score_thr`` set to 0, boxes clipped to the input), then adds what only the
graph needs: ``min_bbox_size`` as a mask, ONNX ``NonMaxSuppression`` per class and the
``max_per_img`` best, for any batch size.

Height and width can be dynamic too (``dynamic_hw``): the anchor grid is computed from the
maps' shapes in the graph, and TF-"SAME" padding layers are traced with the constant padding
they apply to every input divisible by their stride (:func:`static_same_padding`).

:func:`export_onnx` picks the wrapper by the head: an RTMDet-Ins head gets
:class:`~.instance_export.RTMDetInsExportModel` (detections and mask logits), others this one.
"""
import contextlib
import json
import warnings
from functools import partial
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import Conv2dAdaptivePadding
from mmdet.models.dense_heads import RTMDetInsHead
from torch import Tensor

from ..models.dense_heads import EffDetHead
from ..models.necks.bifpn_layers import MaxPool2dSame
from .instance_export import RTMDetInsExportModel
from .onnx_nms import GraphPostProcess, nms_top_k

DETECTION_OUTPUTS = ('boxes', 'scores', 'labels')


def _same_pads(kernel: Sequence[int], stride: Sequence[int],
               dilation: Sequence[int] = (1, 1)) -> List[int]:
    """TF-"SAME" padding of an input whose height and width are multiples of the stride, in
    ``F.pad`` order (left, right, top, bottom): it does not depend on the size then."""
    pads = []
    for k, s, d in reversed(list(zip(kernel, stride, dilation))):  # width first
        total = max((k - 1) * d + 1 - s, 0)
        pads += [total // 2, total - total // 2]
    return pads


def _check_divisible(module: nn.Module, x: Tensor, stride: Sequence[int]) -> None:
    if x.shape[-2] % stride[0] or x.shape[-1] % stride[1]:
        raise ValueError(f'{type(module).__name__} with stride {tuple(stride)} got a '
                         f'{x.shape[-2]}x{x.shape[-1]} map: export with an input size that is '
                         "a multiple of the config's pad_size_divisor")


def _static_conv(module: Conv2dAdaptivePadding, pads: List[int], x: Tensor) -> Tensor:
    _check_divisible(module, x, module.stride)
    return F.conv2d(F.pad(x, pads), module.weight, module.bias, module.stride, 0,
                    module.dilation, module.groups)


def _static_pool(module: MaxPool2dSame, pads: List[int], x: Tensor) -> Tensor:
    _check_divisible(module, x, (module.stride, module.stride))
    return F.max_pool2d(F.pad(x, pads, value=float('-inf')), module.kernel_size, module.stride)


@contextlib.contextmanager
def static_same_padding(model: nn.Module) -> Iterator[nn.Module]:
    """Within the context, TF-"SAME" layers of ``model`` (mmcv's ``Conv2dAdaptivePadding``,
    :class:`MaxPool2dSame`) pad by constants.

    They compute their padding from the input size at run time; traced, that arithmetic
    mixes constants with the traced size and crops every other size back to the traced
    one. For an input divisible by the stride (every level of an input that is a multiple
    of ``pad_size_divisor``) the padding is a constant, the same as theirs, so the traced
    graph accepts any such size. A map that is not divisible raises ``ValueError``.
    """
    patched = []
    for module in model.modules():
        if isinstance(module, Conv2dAdaptivePadding):
            pads = _same_pads(module.kernel_size, module.stride, module.dilation)
            module.forward = partial(_static_conv, module, pads)
        elif isinstance(module, MaxPool2dSame):
            pads = _same_pads((module.kernel_size, ) * 2, (module.stride, ) * 2)
            module.forward = partial(_static_pool, module, pads)
        else:
            continue
        patched.append(module)
    try:
        yield model
    finally:
        for module in patched:
            del module.forward  # the class's forward again


class EffDetExportModel(nn.Module):
    """A detector as a traceable function of the normalised, padded image batch.

    Args:
        detector (nn.Module): A built ``SingleStageDetector`` with an :class:`EffDetHead`
            and/or an ``EffDetMultiTask`` with a segmentation head, in eval mode.
        with_nms (bool): Output ``boxes``/``scores``/``labels`` after NMS; False outputs the
            raw ``cls_score_<i>``/``bbox_pred_<i>`` maps of every level. Defaults to True.
    """

    def __init__(self, detector: nn.Module, with_nms: bool = True) -> None:
        super().__init__()
        self.detector = detector
        self.with_nms = with_nms
        self.bbox_head = getattr(detector, 'bbox_head', None)
        self.seg_head = getattr(detector, 'seg_head', None)
        if self.bbox_head is None and self.seg_head is None:
            raise ValueError(f'{type(detector).__name__} has neither a bbox_head nor a '
                             'seg_head: nothing to export')
        if self.bbox_head is not None:
            head = self.bbox_head
            if not isinstance(head, EffDetHead) or not head.use_sigmoid_cls:
                raise ValueError(f'{type(head).__name__} is not an EffDetHead with sigmoid '
                                 'classes: its post-processing is not exportable')
            self.post = GraphPostProcess.from_test_cfg(head.test_cfg, with_nms)

    @property
    def output_names(self) -> List[str]:
        """Names of the graph outputs, in order."""
        names = []
        if self.bbox_head is not None:
            if self.with_nms:
                names += list(DETECTION_OUTPUTS)
            else:
                levels = range(self.bbox_head.num_levels)
                names += [f'cls_score_{i}' for i in levels] + [f'bbox_pred_{i}' for i in levels]
        if self.seg_head is not None:
            names.append('seg_logits')
        return names

    def forward(self, img: Tensor) -> Tuple[Tensor, ...]:
        """Outputs named by :attr:`output_names` for the ``(B, 3, H, W)`` input."""
        feats = self.detector.extract_feat(img)
        outputs = []
        if self.bbox_head is not None:
            cls_scores, bbox_preds = self.bbox_head(feats)
            if self.with_nms:
                outputs += list(self.detect(img, cls_scores, bbox_preds))
            else:
                outputs += list(cls_scores) + list(bbox_preds)
        if self.seg_head is not None:
            outputs.append(self.seg_head._resize(self.seg_head(feats)['seg_preds'],
                                                 img.shape[-2:]))
        return tuple(outputs)

    def detect(self, img: Tensor, cls_scores: Sequence[Tensor],
               bbox_preds: Sequence[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        """``boxes`` ``(B, K, 4)``, ``scores`` ``(B, K)`` and ``labels`` ``(B, K)`` with
        ``K = max_per_img``; rows beyond the detections have score 0 and label -1."""
        head = self.bbox_head
        # the anchor grid from the maps themselves, so that any input size traces
        priors = head.prior_generator.grid_priors(
            [cls_score.shape[-2:] for cls_score in cls_scores], dtype=cls_scores[0].dtype,
            device=cls_scores[0].device)
        size = torch._shape_as_tensor(img)[2:].to(cls_scores[0].dtype)
        scores, labels, boxes = head.decode_candidates(cls_scores, bbox_preds, priors, size,
                                                       static_shape=True)
        boxes, scores, labels, _ = nms_top_k(boxes, scores, labels, head.cls_out_channels,
                                             self.post)
        return boxes, scores, labels


def build_export_model(detector: nn.Module, with_nms: bool = True) -> nn.Module:
    """The export wrapper of ``detector``, chosen by its head: :class:`RTMDetInsExportModel`
    for an RTMDet-Ins head, else :class:`EffDetExportModel`."""
    if isinstance(getattr(detector, 'bbox_head', None), RTMDetInsHead):
        return RTMDetInsExportModel(detector, with_nms=with_nms)
    return EffDetExportModel(detector, with_nms=with_nms)


def _spatial_suffix(name: str) -> Optional[str]:
    """Suffix of the dynamic height / width axis names of a graph input or output whose
    axes 2 and 3 are spatial (``''``: the input's size, ``'0'``: level 0, ``'_mask'``: the
    prototypes' stride), None for the others."""
    if name in ('input', 'seg_logits'):
        return ''
    if name in ('mask_logits', 'mask_feat'):
        return '_mask'
    if name.startswith(('cls_score_', 'bbox_pred_', 'kernel_pred_')):
        return name.rsplit('_', 1)[-1]
    return None


def preprocess_metadata(cfg, input_shape: Optional[Tuple[int, int]],
                        classes: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """ONNX metadata: the :func:`~effdet_plugin.deploy.preprocess.preprocess` arguments of
    the config's data preprocessor and test pipeline (``input_shape`` for a fixed-shape file,
    None for a dynamic one), and the class names."""
    data_pre = cfg.model.data_preprocessor
    resize_scale = None
    for step in cfg.get('test_pipeline', None) or cfg.test_dataloader.dataset.pipeline:
        if step['type'] == 'Resize' and step.get('scale') is not None:
            scale = step['scale']
            resize_scale = [scale, scale] if isinstance(scale, int) else list(scale)
    args = dict(mean=list(data_pre.mean), std=list(data_pre.std),
                to_rgb=bool(data_pre.get('bgr_to_rgb', False)),
                input_shape=list(input_shape) if input_shape else None,
                resize_scale=resize_scale,
                pad_size_divisor=int(data_pre.get('pad_size_divisor', 1)))
    return dict(effdet_preprocess=json.dumps(args),
                classes=json.dumps(list(classes) if classes else None))


def export_onnx(detector: nn.Module,
                out_file: str,
                input_shape: Tuple[int, int],
                batch_size: int = 1,
                dynamic: bool = False,
                with_nms: bool = True,
                opset: int = 17,
                metadata: Optional[Dict[str, str]] = None,
                dynamic_hw: bool = False) -> List[str]:
    """Export ``detector`` to ``out_file`` and check it with ``onnx.checker``.

    Args:
        detector (nn.Module): Built detector (set to eval mode here).
        out_file (str): Path of the ``.onnx`` file.
        input_shape (tuple[int, int]): ``(H, W)`` of the traced input, multiples of the
            largest stride (the config's ``pad_size_divisor``).
        batch_size (int): Traced batch size. Defaults to 1.
        dynamic (bool): The batch size is a dynamic axis. Defaults to False.
        dynamic_hw (bool): Height and width are dynamic axes too: the file then takes any
            size that is a multiple of the largest stride (``pad_size_divisor``). Needs a
            positive ``test_cfg.nms_pre`` with NMS. Defaults to False.
        with_nms (bool): Detections after NMS, else the raw maps. Defaults to True.
        opset (int): ONNX opset (``NonMaxSuppression`` needs 10 or more). Defaults to 17.
        metadata (dict[str, str], optional): ``metadata_props`` to store. Defaults to None.

    Returns:
        list[str]: The output names.
    """
    import onnx
    detector.eval()
    model = build_export_model(detector, with_nms).eval()
    names = model.output_names
    if dynamic_hw and with_nms and model.bbox_head is not None and model.post.nms_pre <= 0:
        raise ValueError('dynamic height and width need a positive test_cfg.nms_pre: without '
                         'it every candidate is kept, a number that depends on the input size '
                         'and would be fixed at the traced one; set nms_pre or export a fixed '
                         'size')
    dummy = torch.zeros(batch_size, 3, *input_shape)
    dynamic_axes = {name: {} for name in ['input'] + names}
    for name, axes in dynamic_axes.items():
        if dynamic:
            axes[0] = 'batch'
        suffix = _spatial_suffix(name)
        if dynamic_hw and suffix is not None:
            axes.update({2: f'height{suffix}', 3: f'width{suffix}'})
    dynamic_axes = {name: axes for name, axes in dynamic_axes.items() if axes} or None
    # constant TF-"same" padding only where the size varies: a fixed-size export keeps the
    # layers' own padding, which also handles maps their stride does not divide (Lite0 at 320)
    padding = static_same_padding(detector) if dynamic_hw else contextlib.nullcontext()
    with torch.no_grad(), warnings.catch_warnings(), padding:
        # the tracer warns of every python value it fixes (shapes of the traced input)
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.simplefilter('ignore', UserWarning)
        torch.onnx.export(model, (dummy, ), out_file, input_names=['input'],
                          output_names=names, dynamic_axes=dynamic_axes, opset_version=opset,
                          do_constant_folding=True, dynamo=False)
    proto = onnx.load(out_file)
    metadata = dict(metadata or {})
    if with_nms and model.bbox_head is not None:
        metadata['outputs'] = ('boxes (B, K, 4) x1 y1 x2 y2 in input pixels, scores (B, K), '
                               'labels (B, K) int64; rows past the detections: score 0, '
                               'label -1')
        if isinstance(model, RTMDetInsExportModel):
            metadata['outputs'] += ('; mask_logits (B, K, H / stride, W / stride) of each row '
                                    '(masks: preprocess.postprocess_masks)')
            metadata['masks'] = json.dumps(model.mask_metadata())
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, out_file)
    return names
