"""``RobustCocoDataset``: mmdet's CocoDataset with clear path errors and box clipping."""
import copy
import os.path as osp
import warnings
from typing import List, Union

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS

README_HINT = ('The expected layout is described in data/README.md (the nuclei demo data are '
               'generated with `python tools/dataset_converters/nuclei_to_coco.py`)')


@DATASETS.register_module()
class RobustCocoDataset(CocoDataset):
    """CocoDataset that fails clearly on wrong paths and repairs out-of-image boxes.

    Added to mmdet's behaviour (everything else is unchanged):

    - a missing annotation file or image folder raises ``FileNotFoundError`` saying where the
      data were expected, instead of a bare ``open()`` error from pycocotools;
    - boxes reaching outside the image are clipped to it (mmdet keeps them as they are);
      boxes narrower or shorter than ``min_box_size`` after clipping are dropped. Both are
      summarised in one warning per dataset;
    - with ``filter_cfg=dict(filter_empty_gt=True)``, images left without any instance
      after that cleaning are filtered too (mmdet only looks at the raw annotations).
      Without it, images without annotations are kept as negatives, as in mmdet.

    Missing/corrupt image files are handled by the loading transform (mmcv's
    ``LoadImageFromFile`` or :class:`LoadMedicalImageFromFile`, both with ``ignore_empty``).

    Args:
        min_box_size (float): Minimum width and height (pixels) of a clipped box.
            Defaults to 1.0 (mmdet's own threshold).
        **kwargs: Arguments of :class:`mmdet.datasets.CocoDataset`.
    """

    def __init__(self, *args, min_box_size: float = 1.0, **kwargs) -> None:
        self.min_box_size = min_box_size
        super().__init__(*args, **kwargs)

    def _check_paths(self) -> None:
        # Only local paths can be checked; backend URIs (s3://...) are left to the backend.
        if '://' in self.ann_file:
            return
        if not osp.isfile(self.ann_file):
            raise FileNotFoundError(
                f"annotation file '{self.ann_file}' not found (data_root="
                f"'{self.data_root}', ann_file relative to it; working directory "
                f"'{osp.abspath('.')}'). {README_HINT}")
        img_dir = self.data_prefix.get('img', '')
        if img_dir and '://' not in img_dir and not osp.isdir(img_dir):
            raise FileNotFoundError(
                f"image folder '{img_dir}' not found (data_root='{self.data_root}', "
                f"data_prefix={self.data_prefix}). {README_HINT}")

    def load_data_list(self) -> List[dict]:
        """Check the paths, load the annotations and report repaired boxes."""
        self._check_paths()
        self._clipped, self._dropped = [], []
        data_list = super().load_data_list()
        if self._clipped or self._dropped:
            warnings.warn(
                f'{type(self).__name__}({self.ann_file}): clipped {len(self._clipped)} '
                f'box(es) to the image, dropped {len(self._dropped)} degenerate box(es) '
                f'(narrower/shorter than {self.min_box_size} px after clipping). Examples '
                f'(image, ann id, xywh): clipped {self._clipped[:3]}, dropped '
                f'{self._dropped[:3]}')
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> Union[dict, List[dict]]:
        """Clip boxes to the image and drop degenerate ones before mmdet's parsing."""
        img_info = raw_data_info['raw_img_info']
        width, height = img_info['width'], img_info['height']
        anns = []
        for ann in raw_data_info['raw_ann_info']:
            x, y, w, h = ann['bbox']
            x1, y1 = min(max(x, 0), width), min(max(y, 0), height)
            x2, y2 = min(max(x + w, 0), width), min(max(y + h, 0), height)
            record = (img_info['file_name'], ann.get('id'), [x, y, w, h])
            if x2 - x1 < self.min_box_size or y2 - y1 < self.min_box_size:
                self._dropped.append(record)
                continue
            if (x1, y1, x2, y2) != (x, y, x + w, y + h):
                self._clipped.append(record)
                ann = copy.copy(ann)  # the COCO api's own dicts stay untouched
                ann['bbox'] = [x1, y1, x2 - x1, y2 - y1]
            anns.append(ann)
        return super().parse_data_info({**raw_data_info, 'raw_ann_info': anns})

    def filter_data(self) -> List[dict]:
        """mmdet's filtering, plus images whose instances were all dropped or ignored."""
        data_list = super().filter_data()
        if self.test_mode or not (self.filter_cfg or {}).get('filter_empty_gt', False):
            return data_list
        return [d for d in data_list
                if any(not inst['ignore_flag'] for inst in d['instances'])]
