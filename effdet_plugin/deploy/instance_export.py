"""ONNX export of RTMDet-Ins (mmdet's ``RTMDetInsHead``): boxes, scores, labels and each
detection's mask logits, all in the graph.

What the graph holds, and why: everything up to the mask logits at the prototypes' stride,
``mask_logits`` ``(B, K, H / s, W / s)`` (``s``: the head's first stride, 4 with a P2 level).
The dynamic convolutions run in the graph as batched matrix products, which onnxruntime runs
for any batch size (the head's own grouped convolution has one group per instance of one image,
a count the graph cannot vary with the batch). What stays outside: the upsampling by ``s`` to
the input, mmdet's rescale to the original image and the threshold, three numpy lines
(:func:`~effdet_plugin.deploy.preprocess.postprocess_masks`). Binary masks at the input size
in the graph would be ``K`` full-size planes per image (100 x 1024 x 1024 float32 = 400 MB)
for mostly padding rows, and the rescale depends on the original size, which the graph does
not know.

The graph traces the head's own code where it can: ``forward`` (maps, kernels and the
prototypes), the point grid of ``prior_generator``, the box coder, ``parse_dynamic_params``,
and the candidate selection of :func:`~effdet_plugin.models.utils.candidates.select_candidates`
(mmdet's ``filter_scores_and_topk`` in static-shape form), with the kernels gathered beside the
box distances. NMS is the detection export's (:func:`~.onnx_nms.nms_top_k`). Re-written, and
tested against the head: the dynamic convolutions (:func:`instance_mask_logits`).
"""
from typing import List, Tuple

import torch
import torch.nn as nn
from mmdet.models.dense_heads import RTMDetInsHead
from torch import Tensor

from ..models.utils.candidates import select_candidates
from .onnx_nms import GraphPostProcess, nms_top_k

MASK_OUTPUTS = ('boxes', 'scores', 'labels', 'mask_logits')


def instance_mask_logits(head: RTMDetInsHead, mask_feat: Tensor, kernels: Tensor,
                         priors: Tensor) -> Tensor:
    """Mask logits of ``K`` instances per image, as ``head._mask_predict_by_feat_single``
    computes them one image at a time.

    Args:
        head (RTMDetInsHead): The head (its point grid, dynamic-parameter layout).
        mask_feat (Tensor): Prototypes ``(B, P, h, w)``.
        kernels (Tensor): Dynamic-conv parameters ``(B, K, num_gen_params)``.
        priors (Tensor): The instances' points and strides ``(B, K, 4)``.

    Returns:
        Tensor: ``(B, K, h, w)``.
    """
    batch, num = kernels.shape[:2]
    h, w = mask_feat.shape[-2:]
    coord = head.prior_generator.single_level_grid_priors(
        (h, w), level_idx=0, dtype=mask_feat.dtype, device=mask_feat.device)
    # (point - pixel) / (8 * stride) per instance, (B, K, 2, h * w)
    relative = ((priors[..., None, :2] - coord) / (priors[..., None, 2:3] * 8)).transpose(-1, -2)
    protos = mask_feat.reshape(batch, 1, -1, h * w)
    weights, biases = head.parse_dynamic_params(kernels.reshape(batch * num, -1))
    x = relative
    for i, (weight, bias) in enumerate(zip(weights, biases)):
        weight = weight.reshape(batch, num, -1, weight.shape[1])  # (B, K, out, in)
        bias = bias.reshape(batch, num, -1, 1)
        if i == 0:  # inputs: the 2 relative coordinates, then the prototypes (not repeated)
            x = weight[..., :2] @ relative + weight[..., 2:] @ protos + bias
        else:
            x = weight @ x + bias
        if i < len(weights) - 1:
            x = x.relu()
    return x.reshape(batch, num, h, w)


class RTMDetInsExportModel(nn.Module):
    """An RTMDet-Ins detector as a traceable function of the normalised, padded image batch.

    Args:
        detector (nn.Module): A built ``SingleStageDetector`` with an ``RTMDetInsHead``
            (``RTMDetInsSepBNHead``), in eval mode.
        with_nms (bool): Output :data:`MASK_OUTPUTS`; False outputs the raw
            ``cls_score_<i>`` / ``bbox_pred_<i>`` / ``kernel_pred_<i>`` maps of every level
            and the prototypes ``mask_feat``. Defaults to True.
    """

    def __init__(self, detector: nn.Module, with_nms: bool = True) -> None:
        super().__init__()
        head = detector.bbox_head
        if not isinstance(head, RTMDetInsHead) or not head.use_sigmoid_cls:
            raise ValueError(f'{type(head).__name__} is not an RTMDetInsHead with sigmoid '
                             'classes: its post-processing is not exportable')
        self.detector, self.bbox_head, self.with_nms = detector, head, with_nms
        self.post = GraphPostProcess.from_test_cfg(head.test_cfg, with_nms)

    @property
    def output_names(self) -> List[str]:
        """Names of the graph outputs, in order."""
        if self.with_nms:
            return list(MASK_OUTPUTS)
        levels = range(len(self.bbox_head.prior_generator.strides))
        return [f'{kind}_{i}' for kind in ('cls_score', 'bbox_pred', 'kernel_pred')
                for i in levels] + ['mask_feat']

    def mask_metadata(self) -> dict:
        """What :func:`~.preprocess.postprocess_masks` needs besides the logits: the
        prototypes' ``stride`` and the head's ``threshold`` (``test_cfg.mask_thr_binary``)."""
        return dict(stride=int(self.bbox_head.prior_generator.strides[0][0]),
                    threshold=float(self.bbox_head.test_cfg.get('mask_thr_binary', 0.5)))

    def forward(self, img: Tensor) -> Tuple[Tensor, ...]:
        """Outputs named by :attr:`output_names` for the ``(B, 3, H, W)`` input."""
        cls_scores, bbox_preds, kernel_preds, mask_feat = self.bbox_head(
            self.detector.extract_feat(img))
        if not self.with_nms:
            return (*cls_scores, *bbox_preds, *kernel_preds, mask_feat)
        head = self.bbox_head
        # points (x, y, stride, stride) of every level from the maps' shapes: any size traces
        priors = head.prior_generator.grid_priors(
            [cls_score.shape[-2:] for cls_score in cls_scores], dtype=cls_scores[0].dtype,
            device=cls_scores[0].device, with_stride=True)
        # box distances and kernels selected together, as mmdet's filter_scores_and_topk does
        maps = [torch.cat([bbox, kernel], dim=1) for bbox, kernel in zip(bbox_preds, kernel_preds)]
        scores, labels, params, priors = select_candidates(
            cls_scores, maps, priors, head.cls_out_channels, self.post.nms_pre,
            self.post.score_thr, static_shape=True)
        boxes = head.bbox_coder.decode(priors[..., :2], params[..., :4])
        # clipped here rather than by the coder's max_shape, which mmdet cannot trace
        size = torch._shape_as_tensor(img)[2:].to(boxes.dtype)
        boxes = boxes.clamp(min=0).minimum(size[[1, 0, 1, 0]])
        boxes, scores, labels, index = nms_top_k(boxes, scores, labels, head.cls_out_channels,
                                                 self.post)
        kernels = params[..., 4:].gather(1, index[..., None].expand(-1, -1, head.num_gen_params))
        priors = priors.gather(1, index[..., None].expand(-1, -1, 4))
        return boxes, scores, labels, instance_mask_logits(head, mask_feat, kernels, priors)
