"""mmdet's ``Albu`` made safe for instance masks and semantic maps (albumentations 1.x / 2.x)."""
import os
from typing import List, Optional

import numpy as np
from mmdet.datasets.transforms import Albu
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks

DEFAULT_KEYMAP = dict(img='image', gt_masks='masks', gt_bboxes='bboxes', gt_seg_map='mask')


@TRANSFORMS.register_module()
class AlbuCompat(Albu):
    """``Albu`` (mmdet 3.3) with the mask handling that instance segmentation needs.

    mmdet 3.3's ``Albu`` runs with albumentations 2.x for images and boxes, but with
    ``gt_masks`` it

    - crashes (``IndexError``) on an image without instances, or whose instances the
      albumentations bbox filter all removed (a negative tile, a crop off the nuclei);
    - rebuilds the masks with the *input* height/width when ``filter_lost_elements`` is not
      used, which is wrong after a size-changing transform (``RandomRotate90`` of a
      non-square image, ``RandomSizedCrop``...);
    - returns empty label arrays as float64 after filtering;
    - ignores ``gt_seg_map``, so semantic maps fall out of register with the image.

    This subclass fixes those, maps ``gt_seg_map`` to albumentations' ``mask`` target by
    default (it gets every spatial transform, nearest-neighbour) and can recompute the boxes
    from the transformed masks (``recompute_bbox``), which keeps boxes tight after elastic or
    rotation warps. Arguments and behaviour otherwise match ``Albu``.

    Reproducible: albumentations 2 draws from its own generator, seeded from the operating
    system unless ``Compose`` gets a seed, so two runs with the same ``randomness.seed`` (and a
    resumed run) augmented differently. In each process (main or dataloader worker, whose numpy
    mmengine seeds per worker) the generator is seeded from numpy's global one at first use.

    Args:
        transforms (list[dict]): albumentations transforms, e.g.
            ``[dict(type='RandomRotate90', p=0.5), dict(type='CLAHE', p=0.3)]``.
        bbox_params (dict, optional): ``BboxParams``; with
            ``label_fields=['gt_bboxes_labels', 'gt_ignore_flags']`` and
            ``filter_lost_elements=True`` boxes, labels, flags and masks stay aligned.
            Defaults to None.
        keymap (dict, optional): ``{results key: albumentations key}``. Defaults to
            ``img -> image, gt_masks -> masks, gt_bboxes -> bboxes, gt_seg_map -> mask``.
        skip_img_without_anno (bool): Return None (mmengine then takes another sample) when
            the transforms removed every instance. Defaults to False.
        recompute_bbox (bool): Replace the boxes by the bounding boxes of the transformed
            masks, when masks are present. Defaults to True.
    """

    def __init__(self,
                 transforms: List[dict],
                 bbox_params: Optional[dict] = None,
                 keymap: Optional[dict] = None,
                 skip_img_without_anno: bool = False,
                 recompute_bbox: bool = True) -> None:
        super().__init__(transforms, bbox_params, keymap or dict(DEFAULT_KEYMAP),
                         skip_img_without_anno)
        self.recompute_bbox = recompute_bbox
        self._seeded_in: Optional[int] = None  # pid of the process that seeded self.aug

    def transform(self, results: dict) -> Optional[dict]:
        """Seed albumentations from numpy in a new process, then run ``Albu.transform``."""
        if self._seeded_in != os.getpid() and hasattr(self.aug, 'set_random_seed'):
            self.aug.set_random_seed(int(np.random.randint(2**31)))  # albumentations >= 2
            self._seeded_in = os.getpid()
        return super().transform(results)

    def _postprocess_results(self, results: dict,
                             ori_masks: Optional[BitmapMasks] = None) -> Optional[dict]:
        """Rebuild boxes, labels and masks at the output image size, whatever their count."""
        image_key = self.keymap_to_albu.get('img', 'img')
        mask_key = self.keymap_to_albu.get('gt_masks', 'gt_masks')
        box_key = self.keymap_to_albu.get('gt_bboxes', 'gt_bboxes')
        height, width = results[image_key].shape[:2]
        masks = results.pop(mask_key, None) if ori_masks is not None else None

        keep = None
        if box_key in results:
            boxes = np.asarray(results[box_key], dtype=np.float32).reshape(-1, 4)
            results[box_key] = HorizontalBoxes(boxes)
            if self.filter_lost_elements:
                keep = np.asarray(results.pop('idx_mapper'), dtype=np.int64).reshape(-1)
        for label in getattr(self, 'origin_label_fields', []):
            if label in results and keep is not None:
                results[label] = np.asarray(results[label])[keep]
        for label, dtype in (('gt_bboxes_labels', np.int64), ('gt_ignore_flags', bool)):
            if label in results:
                results[label] = np.asarray(results[label], dtype=dtype).reshape(-1)

        if masks is not None:
            masks = [np.asarray(m) for m in masks]
            if keep is not None:
                masks = [masks[i] for i in keep]
            stacked = (np.stack(masks).astype(np.uint8) if masks else
                       np.zeros((0, height, width), dtype=np.uint8))
            results[mask_key] = BitmapMasks(stacked, height, width)
            if self.recompute_bbox and box_key in results:
                results[box_key] = results[mask_key].get_bboxes(HorizontalBoxes)

        if keep is not None and not len(keep) and self.skip_img_without_anno:
            return None
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(transforms={self.transforms}, '
                f'recompute_bbox={self.recompute_bbox})')
