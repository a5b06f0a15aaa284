"""EfficientDet with an optional detection head and an optional semantic segmentation head."""
from typing import Dict, Tuple

from mmdet.models.detectors import SingleStageDetector
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import OptSampleList, SampleList
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.structures import PixelData
from torch import Tensor


@MODELS.register_module()
class EffDetMultiTask(SingleStageDetector):
    """Backbone + neck shared by a detection head, a segmentation head, or both.

    Either head may be ``None`` (not both): ``bbox_head=None`` trains a pure semantic
    segmenter, ``seg_head=None`` is a plain single-stage detector, both train jointly.

    Loss weighting: each head's own loss configs carry the weights (``loss_cls`` /
    ``loss_bbox`` ``loss_weight`` of the detection head, ``loss_seg.loss_weight`` of the
    segmentation head); the detector only merges the two loss dicts. There is no second,
    detector-level weight, so a weight is always set in exactly one place.

    Prediction fills ``pred_instances`` (detection head) and ``pred_sem_seg`` (segmentation
    head: ``PixelData`` whose ``sem_seg`` is a ``(1, H, W)`` label map at ``ori_shape``, or at
    ``img_shape`` with ``rescale=False``; its metainfo carries ``ignore_index`` for
    ``SemSegMetric``).

    Args:
        backbone (dict): Backbone config.
        neck (dict, optional): Neck config. Defaults to None.
        bbox_head (dict, optional): Detection head config; ``train_cfg`` / ``test_cfg`` are
            passed to it. Defaults to None.
        seg_head (dict, optional): Segmentation head config, e.g. ``EffDetSegHead``.
            Defaults to None.
        train_cfg (dict, optional): Training config of the detection head.
        test_cfg (dict, optional): Testing config of the detection head.
        data_preprocessor (dict, optional): Usually ``DetDataPreprocessor``; with a seg head
            set ``pad_seg=True`` (and ``seg_pad_value=255``) or leave the padding of
            ``gt_sem_seg`` to the head, which pads with its ``ignore_index``.
        init_cfg (dict | list[dict], optional): Initialization config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: OptConfigType = None,
                 bbox_head: OptConfigType = None,
                 seg_head: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        if bbox_head is None and seg_head is None:
            raise ValueError('EffDetMultiTask needs a bbox_head, a seg_head or both.')
        # SingleStageDetector.__init__ requires a bbox_head: build the parts here instead.
        BaseDetector.__init__(self, data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        if neck is not None:
            self.neck = MODELS.build(neck)
        self.bbox_head = None
        if bbox_head is not None:
            bbox_head = dict(bbox_head, train_cfg=train_cfg, test_cfg=test_cfg)
            self.bbox_head = MODELS.build(bbox_head)
        self.seg_head = MODELS.build(seg_head) if seg_head is not None else None
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self._check_seg_head_fits_neck()

    @property
    def with_seg(self) -> bool:
        """bool: whether the detector has a semantic segmentation head."""
        return self.seg_head is not None

    def _check_seg_head_fits_neck(self) -> None:
        """Fail at build time, not in the first forward, if the seg head misreads the neck."""
        if not self.with_seg:
            return
        source = self.neck if self.with_neck else self.backbone
        channels = getattr(source, 'out_channels', None)
        head_channels = getattr(self.seg_head, 'in_channels', None)
        if isinstance(channels, (list, tuple)):
            levels = getattr(self.seg_head, 'in_levels', range(len(channels)))
            channels = {channels[i] for i in levels if i < len(channels)}
            channels = channels.pop() if len(channels) == 1 else None
        if isinstance(channels, int) and head_channels is not None and channels != head_channels:
            raise ValueError(f'seg_head.in_channels={head_channels} but the '
                             f'{type(source).__name__} outputs {channels} channels.')
        strides = getattr(source, 'strides', None)
        head_strides = getattr(self.seg_head, 'featmap_strides', None)
        if strides is not None and head_strides is not None and \
                tuple(strides) != tuple(head_strides[:len(strides)]):
            raise ValueError(f'seg_head.featmap_strides={tuple(head_strides)} but the '
                             f'{type(source).__name__} strides are {tuple(strides)}.')

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Losses of the heads present, merged (keys must not clash)."""
        x = self.extract_feat(batch_inputs)
        losses = self.bbox_head.loss(x, batch_data_samples) if self.with_bbox else {}
        if self.with_seg:
            seg_losses = self.seg_head.loss(x, batch_data_samples)
            clash = set(seg_losses) & set(losses)
            if clash:
                raise KeyError(f'Detection and segmentation losses share the names {clash}.')
            losses.update(seg_losses)
        return losses

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Fill ``pred_instances`` and/or ``pred_sem_seg`` of every data sample."""
        x = self.extract_feat(batch_inputs)
        if self.with_bbox:
            results_list = self.bbox_head.predict(x, batch_data_samples, rescale=rescale)
            batch_data_samples = self.add_pred_to_datasample(batch_data_samples, results_list)
        if self.with_seg:
            batch_img_metas = [sample.metainfo for sample in batch_data_samples]
            seg_logits = self.seg_head.predict(x, batch_img_metas, rescale=rescale)
            for sample, logits in zip(batch_data_samples, seg_logits):
                sample.pred_sem_seg = PixelData(
                    sem_seg=logits.argmax(dim=0, keepdim=True),
                    metainfo=dict(ignore_index=self.seg_head.ignore_index))
        return batch_data_samples

    def _forward(self,
                 batch_inputs: Tensor,
                 batch_data_samples: OptSampleList = None) -> Tuple[object, ...]:
        """Raw head outputs ``(bbox_head outputs, seg logits)``; a missing head gives None."""
        x = self.extract_feat(batch_inputs)
        bbox_outs = self.bbox_head.forward(x) if self.with_bbox else None
        seg_outs = self.seg_head.forward(x)['seg_preds'] if self.with_seg else None
        return bbox_outs, seg_outs
