"""mIoU for semantic segmentation: a thin layer over mmdet's ``SemSegMetric``."""
import copy
from collections import OrderedDict
from typing import Dict, Optional, Sequence

import numpy as np
from mmdet.evaluation import SemSegMetric
from mmdet.registry import METRICS


@METRICS.register_module()
class EffDetSemSegMetric(SemSegMetric):
    """``SemSegMetric`` with its own class list, per-class results and a true ``aAcc``.

    What it adds to mmdet 3.3's ``SemSegMetric`` (same inputs: ``pred_sem_seg.sem_seg`` and
    ``gt_sem_seg.sem_seg`` label maps of equal shape, pixels labelled ``ignore_index``
    skipped; values in percent):

    - ``classes``: the segmentation classes, when they differ from the dataset's detection
      ``classes`` (e.g. a background class, or stuff classes, in a joint model).
      ``SemSegMetric`` bins labels by ``len(dataset_meta['classes'])``, so labels beyond
      that count would be silently dropped.
    - ``per_class``: returns ``IoU.<class>`` for every class next to ``mIoU`` (mmdet only
      logs them), so that they reach the log, visualizer backends and checkpoint hooks.
    - ``aAcc`` is the overall pixel accuracy; mmdet 3.3 returns the mean per-class accuracy
      under that name (identical to ``mAcc``).

    Keys carry the prefix ``semseg/`` (``semseg/mIoU``), which keeps them apart from
    ``coco/...`` when both metrics evaluate one joint model.

    Args:
        classes (Sequence[str], optional): Segmentation class names, index = label.
            Defaults to None (the dataset's ``classes``).
        per_class (bool): Also return per-class IoU. Defaults to True.
        **kwargs: ``SemSegMetric`` arguments (``iou_metrics``, ``output_dir``, ``prefix``, ...).
    """
    default_prefix: Optional[str] = 'semseg'

    def __init__(self,
                 classes: Optional[Sequence[str]] = None,
                 per_class: bool = True,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.classes = tuple(classes) if classes is not None else None
        self.per_class = per_class

    # SemSegMetric reads the classes from ``dataset_meta`` in both process and
    # compute_metrics; overriding the class list here covers both.
    @property
    def dataset_meta(self) -> Optional[dict]:
        meta = self._dataset_meta
        if self.classes is not None:
            meta = dict(meta or {}, classes=self.classes)
        return meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        self._dataset_meta = copy.deepcopy(dataset_meta)

    def get_return_metrics(self, results: list) -> Dict[str, np.ndarray]:
        ret_metrics = super().get_return_metrics(results)
        intersect = sum(r['area_intersect'] for r in results).sum()
        labelled = sum(r['area_label'] for r in results).sum()
        ret_metrics['aAcc'] = (intersect / labelled).cpu().numpy()
        return ret_metrics

    def compute_metrics(self, results: list) -> Dict[str, float]:
        metrics = super().compute_metrics(results)
        if self.per_class and not self.format_only and 'mIoU' in self.metrics:
            ious = self.get_return_metrics(results)['IoU']
            metrics.update(
                OrderedDict((f'IoU.{name}', float(np.round(iou * 100, 2)))
                            for name, iou in zip(self.dataset_meta['classes'], ious)))
        return metrics
