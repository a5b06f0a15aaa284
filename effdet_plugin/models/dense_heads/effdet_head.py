"""EfficientDet class/box head: separable convs shared across levels, norms per level."""
import copy
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer
from mmdet.models.dense_heads import AnchorHead
from mmdet.models.utils import multi_apply
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor

from ..layers import SeparableConvModule
from ..task_modules import EffDetAnchorGenerator  # noqa: F401  (registers the generator)
from ..utils.candidates import select_candidates
from ..utils.checkpoint_classes import adapt_class_predictor, prior_prob_from_init_cfg
from ..utils.mmcv_fallback import OneHotTargets, log_fallback, needs_mmcv_fallback
from ..utils.nms import batched_nms
from ..utils.norm import NormEvalMixin, build_norm, load_bn_into_statfree_norms
from ..utils.scaling import get_det_scale

# Settings the head cannot work without; their values live in the config
# (configs/_base_/models/efficientdet_d0.py has the official ones), never here.
REQUIRED_TEST_KEYS = ('nms', 'max_per_img')
SETTINGS_SOURCE = 'configs/_base_/models/efficientdet_d0.py'


@MODELS.register_module()
class EffDetHead(NormEvalMixin, AnchorHead):
    """Class and box subnets of EfficientDet.

    Each subnet is ``stacked_convs`` separable convs (depthwise 3x3 + pointwise 1x1) whose
    weights are shared by all levels, each followed by a norm *owned by the level* and the
    activation, then a separable prediction conv. Defaults reproduce the official model:
    anchors of :class:`EffDetAnchorGenerator`, focal loss (alpha 0.25, gamma 1.5), Huber box
    loss (delta 0.1, weight 50), loss normalised by ``num_pos + 1``.

    The official box loss is ``50 * sum(huber_0.1) / (4 * (num_pos + 1))``. Huber with delta
    ``d`` is ``d`` times smooth L1 with beta ``d``, so it equals mmdet's
    ``SmoothL1Loss(beta=0.1, loss_weight=50 * 0.1 / 4 = 1.25)`` with the same normaliser
    (checked against effdet's ``loss_fn`` in the tests).

    Args:
        num_classes (int): Number of classes (no background).
        in_channels (int, optional): Input width (the BiFPN width). Defaults to the
            ``arch`` value.
        arch (str | float): EfficientDet variant or phi giving the defaults of
            ``in_channels``, ``stacked_convs`` and the anchors. Defaults to ``'d0'``.
        stacked_convs (int, optional): Separable convs before the prediction conv.
            Defaults to the ``arch`` value.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Per-level norm config: any mmcv norm config (BN, SyncBN,
            GN ..., ``requires_grad``); GN's ``num_groups`` is the most groups a layer gets
            (the largest divisor of its width up to it,
            :mod:`effdet_plugin.models.utils.norm`). Defaults to BN with the TF
            momentum/eps.
        norm_eval (bool): Keep every norm in eval mode during training (frozen
            statistics), as the backbone's ``norm_eval``. Defaults to False.
        act_cfg (dict): Activation config. Defaults to Swish (``SiLU``).
        redundant_bias (bool): Keep the conv bias before each norm as the official TF
            model has. Defaults to True.
        avg_factor_offset (float): Added to the number of positives that normalises both
            losses (1 in the official model, which keeps empty batches finite).
            Defaults to 1.0.
        anchor_generator (dict, optional): Anchor generator; None builds the official
            one for ``arch`` (levels min..max, anchor scale, 3 octave scales, 3 aspects).
        bbox_coder (dict): Box coder. The official coder has no target scaling.
        loss_cls (dict): Classification loss.
        loss_bbox (dict): Box regression loss.
        train_cfg (dict, optional): Assigner and sampler, from the model config's
            ``train_cfg``; needed to compute losses (a head built without one can only
            predict). Defaults to None.
        test_cfg (dict): Post-processing, from the model config's ``test_cfg``: ``nms``
            and ``max_per_img`` are required; ``nms_pre`` (-1), ``nms_pre_scope``
            (``'level'``), ``score_thr`` (0) and ``min_bbox_size`` keep mmdet's meaning when
            absent. The official values (5000 per image, Gaussian soft-NMS) are in
            ``configs/_base_/models/efficientdet_d0.py``. Defaults to None, which raises.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to the
            official variance scaling (normal, fan-in) and prior probability 0.01.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: Optional[int] = None,
                 arch: Union[str, float] = 'd0',
                 stacked_convs: Optional[int] = None,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', momentum=0.01, eps=1e-3),
                 norm_eval: bool = False,
                 act_cfg: ConfigType = dict(type='SiLU'),
                 redundant_bias: bool = True,
                 avg_factor_offset: float = 1.0,
                 anchor_generator: OptConfigType = None,
                 bbox_coder: ConfigType = dict(
                     type='DeltaXYWHBBoxCoder',
                     target_means=(0.0, 0.0, 0.0, 0.0),
                     target_stds=(1.0, 1.0, 1.0, 1.0)),
                 loss_cls: ConfigType = dict(
                     type='FocalLoss', use_sigmoid=True, gamma=1.5, alpha=0.25,
                     loss_weight=1.0),
                 loss_bbox: ConfigType = dict(type='SmoothL1Loss', beta=0.1, loss_weight=1.25),
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = dict(
                     type='Kaiming',
                     layer='Conv2d',
                     mode='fan_in',
                     nonlinearity='linear',
                     distribution='normal',
                     override=dict(
                         type='Kaiming',
                         name='cls_pred',
                         mode='fan_in',
                         nonlinearity='linear',
                         distribution='normal',
                         bias_prob=0.01)),
                 **kwargs) -> None:
        scale = get_det_scale(arch)
        in_channels = scale.fpn_channels if in_channels is None else in_channels
        self.stacked_convs = scale.head_repeats if stacked_convs is None else stacked_convs
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.norm_eval = norm_eval
        self.act_cfg = act_cfg
        self.redundant_bias = redundant_bias
        self.avg_factor_offset = avg_factor_offset
        if anchor_generator is None:
            anchor_generator = dict(
                type='EffDetAnchorGenerator',
                strides=scale.strides,
                octave_base_scale=scale.anchor_scale,
                scales_per_octave=3)
        check_test_cfg(test_cfg)
        train_cfg = None if train_cfg is None else ConfigDict(train_cfg)
        test_cfg = ConfigDict(test_cfg)
        super().__init__(
            num_classes,
            in_channels,
            feat_channels=in_channels,
            anchor_generator=anchor_generator,
            bbox_coder=bbox_coder,
            loss_cls=loss_cls,
            loss_bbox=loss_bbox,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            init_cfg=init_cfg,
            **kwargs)
        # a CPU-built mmcv on a CUDA machine: no CUDA NMS / focal-loss kernels
        self.mmcv_fallback = needs_mmcv_fallback()
        if self.mmcv_fallback:
            log_fallback(type(self).__name__)
            self.loss_cls = OneHotTargets(self.loss_cls)
        self.register_load_state_dict_pre_hook(load_bn_into_statfree_norms)

    @property
    def num_levels(self) -> int:
        """Number of pyramid levels, each with its own norms."""
        return self.prior_generator.num_levels

    def _make_subnet(self, num_outputs: int) -> Tuple[nn.ModuleList, nn.ModuleList, nn.Module]:
        """Shared convs, per-level norms (``norms[level][i]``) and the prediction conv."""
        convs = nn.ModuleList([
            SeparableConvModule(
                self.feat_channels, self.feat_channels, 3, bias=self.redundant_bias,
                conv_cfg=self.conv_cfg)
            for _ in range(self.stacked_convs)
        ])
        norms = nn.ModuleList([
            nn.ModuleList([
                build_norm(self.norm_cfg, self.feat_channels)
                for _ in range(self.stacked_convs)
            ]) for _ in range(self.num_levels)
        ])
        pred = SeparableConvModule(
            self.feat_channels, self.num_base_priors * num_outputs, 3, bias=True,
            conv_cfg=self.conv_cfg)
        return convs, norms, pred

    def _init_layers(self) -> None:
        """Build the class and box subnets."""
        self.cls_convs, self.cls_norms, self.cls_pred = self._make_subnet(self.cls_out_channels)
        self.reg_convs, self.reg_norms, self.reg_pred = self._make_subnet(
            self.bbox_coder.encode_size)
        self.act = build_activation_layer(self.act_cfg)

    def forward(self, x: Tuple[Tensor, ...]) -> Tuple[List[Tensor], List[Tensor]]:
        """Class scores and box deltas of every level (levels index the norms)."""
        if len(x) != self.num_levels:
            raise ValueError(f'expected {self.num_levels} levels, got {len(x)}')
        return multi_apply(self.forward_single, x, list(range(len(x))))

    def forward_single(self, x: Tensor, level: int) -> Tuple[Tensor, Tensor]:
        """Class scores ``(N, A * C, H, W)`` and box deltas ``(N, A * 4, H, W)`` of a level."""
        cls_feat = x
        for conv, norm in zip(self.cls_convs, self.cls_norms[level]):
            cls_feat = self.act(norm(conv(cls_feat)))
        reg_feat = x
        for conv, norm in zip(self.reg_convs, self.reg_norms[level]):
            reg_feat = self.act(norm(conv(reg_feat)))
        return self.cls_pred(cls_feat), self.reg_pred(reg_feat)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """A checkpoint with another class count loads all but the class predictor, which
        is re-initialised (prior-probability bias) with one log line, instead of mmengine's
        size-mismatch warning that leaves it as it was."""
        adapt_class_predictor(
            self, state_dict, prefix, 'cls_pred.pointwise_conv.conv.weight',
            'cls_pred.pointwise_conv.conv.bias', self.num_classes, self.num_base_priors,
            prior_prob_from_init_cfg(self.init_cfg, 'cls_pred'))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def get_targets(self, *args, return_sampling_results: bool = False, **kwargs) -> tuple:
        """Anchor targets with the official normaliser ``num_pos + avg_factor_offset``.

        mmdet normalises by the number of positives; the official loss adds one, which
        matters for images with few objects and keeps the loss finite without any.
        """
        if self.train_cfg is None:
            raise ValueError(
                f'{type(self).__name__} was built without a train_cfg, so it cannot compute '
                f'losses: give the model config a train_cfg (assigner, sampler), as '
                f'{SETTINGS_SOURCE} does with the official matcher.')
        results = super().get_targets(*args, return_sampling_results=True, **kwargs)
        sampling_results = results[5]
        num_pos = sum(len(res.pos_inds) for res in sampling_results)
        results = results[:4] + (num_pos + self.avg_factor_offset, ) + results[5:]
        if not return_sampling_results:
            results = results[:5] + results[6:]
        return results

    def _predict_by_feat_single(self,
                                cls_score_list: List[Tensor],
                                bbox_pred_list: List[Tensor],
                                score_factor_list: List[Optional[Tensor]],
                                mlvl_priors: List[Tensor],
                                img_meta: dict,
                                cfg: Optional[ConfigDict],
                                rescale: bool = False,
                                with_nms: bool = True) -> InstanceData:
        """Detections of one image: the ``nms_pre`` best (anchor, class) scores above
        ``score_thr``, decoded, then mmdet's rescale and NMS.

        ``cfg.nms_pre_scope`` says what ``nms_pre`` counts: ``'level'`` (mmdet's meaning,
        the default when absent) keeps ``nms_pre`` per level, ``'image'`` (the official
        evaluation) ``nms_pre`` over all levels, so NMS sees 5 times fewer boxes. Either way
        candidates are chosen by a partial top-k over the unpermuted logits (per level:
        :func:`topk_candidates`; over the image, one top-k of all levels:
        :func:`image_candidates`) rather than mmdet's sort of every score, which made CPU
        prediction 2.6-2.9x slower than the official model's, and only they are decoded;
        with ``'level'`` the candidates equal mmdet's.
        """
        if not self.use_sigmoid_cls:  # softmax scores: mmdet's selection
            return super()._predict_by_feat_single(
                cls_score_list, bbox_pred_list, score_factor_list, mlvl_priors, img_meta, cfg,
                rescale, with_nms)
        cfg = self.test_cfg if cfg is None else cfg
        scores, labels, bboxes = self.decode_candidates(
            [cls_score[None] for cls_score in cls_score_list],
            [bbox_pred[None] for bbox_pred in bbox_pred_list], mlvl_priors,
            img_meta['img_shape'], cfg)
        results = InstanceData()
        results.bboxes = bboxes[0]
        results.scores = scores[0]
        results.labels = labels[0]
        return self._bbox_post_process(
            results=results, cfg=copy.deepcopy(cfg), rescale=rescale, with_nms=with_nms,
            img_meta=img_meta)

    def decode_candidates(self,
                          cls_scores: Sequence[Tensor],
                          bbox_preds: Sequence[Tensor],
                          mlvl_priors: Sequence[Tensor],
                          img_shape: Union[Sequence[int], Tensor],
                          cfg: Optional[ConfigDict] = None,
                          static_shape: bool = False) -> Tuple[Tensor, Tensor, Tensor]:
        """Scores, labels and boxes of the candidates of a batch, before NMS: the
        ``cfg.nms_pre`` best (anchor, class) scores above ``cfg.score_thr``
        (:func:`select_candidates`), decoded by the box coder and clipped to ``img_shape``.

        The prediction of :meth:`predict_by_feat` (one image at a time) and the ONNX export
        (``static_shape=True``, traced) both run it, so they share anchors, selection and
        decoding.

        Args:
            cls_scores (Sequence[Tensor]): Class logits ``(B, A * C, H, W)`` of each level.
            bbox_preds (Sequence[Tensor]): Box deltas ``(B, A * 4, H, W)`` of each level.
            mlvl_priors (Sequence[Tensor]): Anchors of each level, from
                ``prior_generator.grid_priors``.
            img_shape (Sequence[int] | Tensor): ``(H, W)`` that boxes are clipped to.
            cfg (ConfigDict, optional): Test config. Defaults to ``self.test_cfg``.
            static_shape (bool): Exactly ``nms_pre`` candidates per level (or image) with
                score 0 for the dropped ones, for any batch size; else ``B`` is 1 and the
                dropped ones are left out. Defaults to False.

        Returns:
            tuple[Tensor, Tensor, Tensor]: Scores ``(B, K)``, labels ``(B, K)`` and boxes
            ``(B, K, 4)`` (x1, y1, x2, y2).
        """
        cfg = self.test_cfg if cfg is None else cfg
        scores, labels, deltas, priors = select_candidates(
            cls_scores, bbox_preds, mlvl_priors, self.cls_out_channels, cfg.get('nms_pre', -1),
            cfg.get('score_thr', 0), cfg.get('nms_pre_scope', 'level'), static_shape)
        boxes = self.bbox_coder.decode(priors.reshape(-1, 4),
                                       deltas.reshape(-1, deltas.shape[-1]))
        # clipped here rather than by the coder's max_shape, which mmdet cannot trace
        size = torch.as_tensor(img_shape, dtype=boxes.dtype, device=boxes.device)
        boxes = boxes.clamp(min=0).minimum(size[[1, 0, 1, 0]])
        return scores, labels, boxes.reshape(priors.shape)

    def _bbox_post_process(self,
                           results: InstanceData,
                           cfg: ConfigDict,
                           rescale: bool = False,
                           with_nms: bool = True,
                           img_meta: Optional[dict] = None) -> InstanceData:
        """mmdet's post-processing in float32 (mmcv's soft-NMS kernel takes nothing else: an
        fp16 / bf16 autocast evaluation stopped there), on the CPU when mmcv lacks its CUDA NMS
        kernel. Its NMS is :func:`~effdet_plugin.models.utils.nms.batched_nms`: mmcv's first
        ``max_per_img`` results, with NMS on the CPU run class by class (hard NMS on only as
        many of the best boxes as it takes to keep ``max_per_img``)."""
        results.bboxes, results.scores = results.bboxes.float(), results.scores.float()
        if self.mmcv_fallback and results.bboxes.is_cuda:
            device = results.bboxes.device
            return self._bbox_post_process(results.cpu(), cfg, rescale, with_nms,
                                           img_meta).to(device)
        # rescale and size filter
        results = super()._bbox_post_process(results, cfg, rescale, False, img_meta)
        if with_nms and results.bboxes.numel() > 0:
            dets, keep = batched_nms(results.bboxes, results.scores, results.labels, cfg.nms,
                                     cfg.max_per_img)
            results = results[keep]
            results.scores = dets[:, -1]  # soft-NMS lowers scores
            results = results[:cfg.max_per_img]  # mmdet's cut (-1 drops the last one)
        return results


def check_test_cfg(test_cfg: OptConfigType) -> None:
    """Refuse a missing ``test_cfg`` or one without the keys mmdet's post-processing reads."""
    if test_cfg is None:
        raise ValueError(
            f'EffDetHead needs a test_cfg (candidates, score threshold, NMS): give the model '
            f'config a test_cfg, as {SETTINGS_SOURCE} does with the official soft-NMS.')
    missing = [key for key in REQUIRED_TEST_KEYS if key not in test_cfg]
    if missing:
        raise ValueError(f'EffDetHead test_cfg lacks {", ".join(missing)}: set them in the '
                         f'model config (official values in {SETTINGS_SOURCE}); got '
                         f'{dict(test_cfg)}')
