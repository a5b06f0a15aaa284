"""EfficientDet semantic segmentation head on the BiFPN outputs.

Modelled on the segmentation head of the official EfficientDet release (automl), which merges
the finest BiFPN levels and predicts logits at stride 4 with a stride-2 transposed conv.
Differences, by design: coarser levels are brought to the finest one by bilinear resizing
(automl: a transposed conv + BN + Swish per level) before the concatenation, separable
conv + BN + Swish layers refine the merged map, and the stride is configurable. Logits are
bilinearly resized to the input for the loss and back to the original image for prediction.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.models.seg_heads.base_semantic_head import BaseSemanticHead
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from torch import Tensor

from ..layers import SeparableConvModule
from ..utils.norm import NormEvalMixin, load_bn_into_statfree_norms, norm_cfg_for
from ..utils.scaling import get_det_scale


@MODELS.register_module()
class EffDetSegHead(NormEvalMixin, BaseSemanticHead):
    """Semantic segmentation head of EfficientDet.

    ``in_levels`` picks neck outputs (indices into the neck's tuple, finest first); coarser
    ones are bilinearly upsampled to the finest and concatenated. ``num_convs`` separable
    3x3 convs (depthwise, then pointwise + norm + activation: the
    :class:`~effdet_plugin.models.layers.SeparableConvModule` of the BiFPN and the detection
    head) refine the merged map; transposed convs (kernel 4, stride 2) then double the resolution
    until ``out_stride`` is reached, where a 1x1 conv gives per-pixel class logits.

    Ground truth is read from ``data_sample.gt_sem_seg.sem_seg`` (``(1, H, W)``, what
    ``LoadAnnotations(with_seg=True)`` + ``PackDetInputs`` produce), either at ``img_shape``
    or already padded to ``batch_input_shape`` by ``DetDataPreprocessor(pad_seg=True)``;
    unpadded maps are padded here with ``ignore_index``.

    Args:
        num_classes (int): Number of semantic classes (background included, if it is a class).
        in_channels (int, optional): Channels of every neck output (BiFPN ``out_channels``).
            Defaults to the ``arch`` value.
        feat_channels (int, optional): Channels inside the head. Defaults to ``in_channels``
            (the official head keeps the BiFPN width).
        arch (str | float): EfficientDet variant or phi giving the defaults of
            ``in_channels`` and ``featmap_strides``. Defaults to ``'d0'``.
        num_convs (int): Separable conv + norm + activation layers. Defaults to 2.
        in_levels (Sequence[int]): Neck outputs used, finest first. Defaults to (0, 1),
            i.e. P3 and P4 of a P3-P7 BiFPN.
        featmap_strides (Sequence[int], optional): Strides of all neck outputs (the neck's
            ``strides``). Defaults to the ``arch`` levels, (8, 16, 32, 64, 128) for D0.
        out_stride (int): Stride of the predicted logits; the finest used stride divided by
            a power of two (4 or 8 for P3). Defaults to 4.
        align_corners (bool): ``align_corners`` of every bilinear resize. Defaults to False.
        ignore_index (int): Label of pixels without ground truth (and of batch padding).
            Also written into ``pred_sem_seg`` metainfo, so that ``SemSegMetric`` skips the
            same pixels. Defaults to 255.
        conv_cfg (dict, optional): Config of the separable convs; TF "same" padding
            (``Conv2dAdaptivePadding``) or None (symmetric). Defaults to None.
        norm_cfg (dict): Any mmcv norm config; GN's ``num_groups`` is the most groups a
            layer gets (:mod:`effdet_plugin.models.utils.norm`). Defaults to BN with TF's
            eps 1e-3 and momentum 0.01.
        norm_eval (bool): Keep every norm in eval mode during training (frozen
            statistics), as the backbone's ``norm_eval``. Defaults to False.
        act_cfg (dict): Activation config. Defaults to SiLU (Swish).
        loss_seg (dict): Loss on logits resized to the input; its ``loss_weight`` is the
            weight of the segmentation loss in a joint model. Defaults to
            ``CrossEntropyLoss`` with ``ignore_index=255`` averaged over labelled pixels.
        init_cfg (dict | list[dict], optional): Initialization config. Defaults to a small
            normal init of the logit conv.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: Optional[int] = None,
                 feat_channels: Optional[int] = None,
                 arch: Union[str, float] = 'd0',
                 num_convs: int = 2,
                 in_levels: Sequence[int] = (0, 1),
                 featmap_strides: Optional[Sequence[int]] = None,
                 out_stride: int = 4,
                 align_corners: bool = False,
                 ignore_index: int = 255,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', eps=1e-3, momentum=0.01),
                 norm_eval: bool = False,
                 act_cfg: ConfigType = dict(type='SiLU'),
                 loss_seg: ConfigType = dict(
                     type='CrossEntropyLoss', use_sigmoid=False, ignore_index=255,
                     avg_non_ignore=True, loss_weight=1.0),
                 init_cfg: OptMultiConfig = dict(
                     type='Normal', std=0.01, override=dict(name='conv_seg'))) -> None:
        super().__init__(num_classes=num_classes, seg_rescale_factor=1 / out_stride,
                         loss_seg=loss_seg, init_cfg=init_cfg)
        self.norm_eval = norm_eval
        scale = get_det_scale(arch)
        in_channels = scale.fpn_channels if in_channels is None else in_channels
        feat_channels = in_channels if feat_channels is None else feat_channels
        if featmap_strides is None:
            featmap_strides = scale.strides
        in_levels = tuple(in_levels)
        self.featmap_strides = tuple(featmap_strides)
        if (not in_levels or list(in_levels) != sorted(set(in_levels))
                or not 0 <= in_levels[0] <= in_levels[-1] < len(self.featmap_strides)):
            raise ValueError(
                f'in_levels must be increasing indices into the neck outputs (strides '
                f'{self.featmap_strides}), e.g. (0, 1) for P3+P4; got {in_levels}.')
        finest = self.featmap_strides[in_levels[0]]
        num_upsamples = math.log2(finest / out_stride) if out_stride > 0 else -1
        if num_upsamples < 0 or not float(num_upsamples).is_integer():
            raise ValueError(
                f'out_stride must be the finest used stride ({finest}) divided by a power of '
                f'two, e.g. {finest} or {finest // 2}; got {out_stride}.')
        loss_ignore = getattr(self.loss_seg, 'ignore_index', ignore_index)
        if loss_ignore != ignore_index:
            raise ValueError(f'loss_seg.ignore_index ({loss_ignore}) must equal the head\'s '
                             f'ignore_index ({ignore_index}), the label of padded pixels.')

        self.in_channels = in_channels
        self.in_levels = in_levels
        self.out_stride = out_stride
        self.align_corners = align_corners
        self.ignore_index = ignore_index

        channels = in_channels * len(in_levels)
        convs = []
        for _ in range(num_convs):
            convs.append(
                SeparableConvModule(channels, feat_channels, 3, conv_cfg=conv_cfg,
                                    norm_cfg=norm_cfg, act_cfg=act_cfg))
            channels = feat_channels
        self.convs = nn.Sequential(*convs)
        upsamples = []
        for _ in range(int(num_upsamples)):
            upsamples.append(
                ConvModule(channels, feat_channels, 4, stride=2, padding=1,
                           conv_cfg=dict(type='deconv'),
                           norm_cfg=norm_cfg_for(norm_cfg, feat_channels), act_cfg=act_cfg))
            channels = feat_channels
        self.upsamples = nn.Sequential(*upsamples)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.register_load_state_dict_pre_hook(load_bn_into_statfree_norms)

    def forward(self, x: Tuple[Tensor, ...]) -> Dict[str, Tensor]:
        """Logits at ``out_stride`` from the neck outputs.

        Returns:
            dict: ``seg_preds`` (N, num_classes, H / out_stride, W / out_stride) and ``feats``,
            the features the logits are computed from.
        """
        if len(x) <= self.in_levels[-1]:
            raise ValueError(f'EffDetSegHead uses neck outputs {self.in_levels} but got only '
                             f'{len(x)} feature maps.')
        size = x[self.in_levels[0]].shape[-2:]
        feats = [x[self.in_levels[0]]] + [
            F.interpolate(x[i], size=size, mode='bilinear', align_corners=self.align_corners)
            for i in self.in_levels[1:]
        ]
        feats = self.upsamples(self.convs(torch.cat(feats, dim=1)))
        return dict(seg_preds=self.conv_seg(feats), feats=feats)

    def _resize(self, logits: Tensor, size: Sequence[int]) -> Tensor:
        return F.interpolate(logits, size=tuple(size), mode='bilinear',
                             align_corners=self.align_corners)

    def _targets(self, batch_data_samples: SampleList, size: Tuple[int, int]) -> Tensor:
        """Stack the ground-truth maps, padding each to the batch input size."""
        targets = []
        for sample in batch_data_samples:
            gt = sample.gt_sem_seg.sem_seg
            h, w = gt.shape[-2:]
            if (h, w) not in (tuple(sample.img_shape[:2]), tuple(size)):
                raise ValueError(
                    f'gt_sem_seg has shape {(h, w)} but the image is {sample.img_shape[:2]} '
                    f'(padded batch {size}): load the segmentation map before any resize / '
                    f'crop in the training pipeline so that both are transformed together.')
            targets.append(F.pad(gt, (0, size[1] - w, 0, size[0] - h), value=self.ignore_index))
        return torch.cat(targets).long()

    def loss(self, x: Tuple[Tensor, ...], batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Cross-entropy between input-size logits and ``gt_sem_seg``.

        Returns:
            dict: ``loss_seg``.
        """
        size = tuple(batch_data_samples[0].batch_input_shape)
        logits = self._resize(self(x)['seg_preds'], size)
        return dict(loss_seg=self.loss_seg(logits, self._targets(batch_data_samples, size)))

    def predict(self,
                x: Tuple[Tensor, ...],
                batch_img_metas: List[dict],
                rescale: bool = True) -> List[Tensor]:
        """Per-image logits with the batch padding removed.

        Args:
            x (tuple[Tensor]): Neck outputs.
            batch_img_metas (list[dict]): Meta info with ``batch_input_shape``,
                ``img_shape`` and, if ``rescale``, ``ori_shape``.
            rescale (bool): Resize to ``ori_shape`` (the original image) instead of
                ``img_shape`` (the resized network input). Defaults to True.

        Returns:
            list[Tensor]: ``(num_classes, H, W)`` logits per image.
        """
        logits = self._resize(self(x)['seg_preds'], batch_img_metas[0]['batch_input_shape'])
        results = []
        for logit, meta in zip(logits, batch_img_metas):
            h, w = meta['img_shape'][:2]
            logit = logit[None, :, :h, :w]
            if rescale and tuple(meta['ori_shape'][:2]) != (h, w):
                logit = self._resize(logit, meta['ori_shape'][:2])
            results.append(logit[0])
        return results
