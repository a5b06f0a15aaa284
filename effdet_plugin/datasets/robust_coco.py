"""``RobustCocoDataset``: mmdet's CocoDataset that names bad data instead of dropping it."""
import copy
import json
import logging
import os.path as osp
from typing import List, Optional, Union

from mmcv.transforms import LoadImageFromFile
from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmdet.registry import DATASETS
from mmengine.logging import print_log

from .checks import (
    AnnotationError,
    DatasetNotFoundError,
    check_coco_stats,
    coco_stats,
    describe_losses,
    json_error,
    missing_paths,
)
from .image_io import ImageReadError, bit_depth_problem

README_HINT = ('The expected layout is described in data/README.md (the nuclei demo data are '
               'generated with `python tools/dataset_converters/nuclei_to_coco.py`)')


@DATASETS.register_module()
class RobustCocoDataset(CocoDataset):
    """CocoDataset that fails clearly on bad data and reports what it drops.

    Added to mmdet's behaviour (everything else is unchanged):

    - a missing annotation file or image folder raises :class:`DatasetNotFoundError` (a
      ``FileNotFoundError``) naming every missing path, instead of a bare ``open()`` error
      from pycocotools; a file that is not JSON (truncated, corrupt) raises
      :class:`AnnotationError` naming it;
    - a file without images, or without a category for one of the config's classes, raises
      :class:`AnnotationError` (both class lists named) instead of training on nothing;
    - boxes reaching outside the image are clipped to it (mmdet keeps them as they are);
      boxes narrower or shorter than ``min_box_size`` after clipping are dropped;
    - with ``filter_cfg=dict(filter_empty_gt=True)``, images left without any instance
      after that cleaning are filtered too (mmdet only looks at the raw annotations).
      Without it, images without annotations are kept as negatives, as in mmdet;
    - one warning in the log per dataset counts what mmdet drops silently: annotations with a
      category id not in ``categories`` or of a category not in the classes, images without
      annotations, clipped and dropped boxes, filtered images. A training dataset (not
      ``test_mode``) left without any usable annotation raises :class:`AnnotationError`;
    - a 16-bit PNG/TIFF read by mmcv's ``LoadImageFromFile`` (which would cut it to 8 bits,
      near-black for 12-bit data) raises :class:`ImageReadError` naming
      ``LoadMedicalImageFromFile``; a missing image skipped by its ``ignore_empty=True`` is
      named in a warning with a running count (mmcv skips it silently), and an undecodable
      one is skipped the same way instead of failing an ``assert``.

    Missing/corrupt image files are otherwise handled by the loading transform (mmcv's
    ``LoadImageFromFile`` or :class:`LoadMedicalImageFromFile`, both with ``ignore_empty``).

    Args:
        min_box_size (float): Minimum width and height (pixels) of a clipped box.
            Defaults to 1.0 (mmdet's own threshold).
        **kwargs: Arguments of :class:`mmdet.datasets.CocoDataset`.
    """

    def __init__(self, *args, min_box_size: float = 1.0, **kwargs) -> None:
        self.min_box_size = min_box_size
        self._skipped = 0
        self._depth_checked: set = set()
        super().__init__(*args, **kwargs)
        loaders = [t for t in getattr(self.pipeline, 'transforms', [])
                   if isinstance(t, LoadImageFromFile)]
        self._mmcv_loader: Optional[LoadImageFromFile] = loaders[0] if loaders else None

    def COCOAPI(self, path: str) -> COCO:  # noqa: N802  (mmdet's name)
        """Read the file with mmdet's COCO api, then stop on what would make the run
        meaningless (:func:`~.checks.check_coco_stats`)."""
        try:
            coco = COCO(path)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise json_error(self.ann_file, e) from e
        self._stats = coco_stats(coco.dataset, self.metainfo['classes'], self.ann_file)
        check_coco_stats(self._stats, need_annotations=False)
        return coco

    def _check_paths(self) -> None:
        # mmengine has already joined ann_file and data_prefix with data_root
        missing = missing_paths(None, self.ann_file, self.data_prefix)
        if missing:
            raise DatasetNotFoundError(
                f"{type(self).__name__}: {', '.join(missing)} not found (data_root="
                f"'{self.data_root}', the other paths relative to it; working directory "
                f"'{osp.abspath('.')}'). {README_HINT}")

    def load_data_list(self) -> List[dict]:
        """Check the paths and load the annotations (reported in :meth:`filter_data`)."""
        self._check_paths()
        self._clipped, self._dropped = [], []
        return super().load_data_list()

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
        """mmdet's filtering, plus images whose instances were all dropped or ignored; then
        one warning with everything dropped, and an error if nothing usable is left."""
        data_list = super().filter_data()
        if not self.test_mode and (self.filter_cfg or {}).get('filter_empty_gt', False):
            data_list = [d for d in data_list
                         if any(not inst['ignore_flag'] for inst in d['instances'])]
        self._report(data_list)
        return data_list

    def _report(self, data_list: List[dict]) -> None:
        mode = 'test_mode' if self.test_mode else 'training'
        name = f'{type(self).__name__}({self.ann_file}, {mode})'
        parts = describe_losses(self._stats)
        if self._clipped:
            parts.append(f'{len(self._clipped)} box(es) clipped to the image (image, ann id, '
                         f'xywh: {self._clipped[:3]})')
        if self._dropped:
            parts.append(f'{len(self._dropped)} degenerate box(es) dropped (narrower/shorter '
                         f'than {self.min_box_size} px after clipping: {self._dropped[:3]})')
        filtered = len(self.data_list) - len(data_list)
        if filtered:
            parts.append(f'{filtered} image(s) filtered out by filter_cfg={self.filter_cfg}')
        usable = sum(not inst['ignore_flag'] for d in data_list for inst in d['instances'])
        summary = (f'{name}: {len(data_list)} image(s), {usable} usable annotation(s) of '
                   f'{self._stats.num_annotations} in the file')
        if not self.test_mode and (usable == 0 or not data_list):
            raise AnnotationError(f'{summary}: nothing to train on ({"; ".join(parts)})')
        if parts:
            print_log(f'{summary}; {"; ".join(parts)}', logger='current', level=logging.WARNING)

    def prepare_data(self, idx: int) -> Optional[dict]:
        """mmdet's pipeline, with the checks of mmcv's ``LoadImageFromFile`` listed in the
        class docstring."""
        loader = self._mmcv_loader
        if loader is None:
            return super().prepare_data(idx)
        path = self.get_data_info(idx)['img_path']
        if loader.color_type != 'unchanged' and idx not in self._depth_checked:
            self._refuse_high_bit_depth(path)
            self._depth_checked.add(idx)
        try:
            data = super().prepare_data(idx)
        except AssertionError as e:  # mmcv asserts on an undecodable file
            if not (loader.ignore_empty and 'failed to load image' in str(e)):
                raise
            return self._skip(path, 'cannot be decoded')
        if data is None and loader.ignore_empty and '://' not in path and not osp.isfile(path):
            return self._skip(path, 'is missing')
        return data

    def _refuse_high_bit_depth(self, path: str) -> None:
        problem = bit_depth_problem(path, self._mmcv_loader.color_type)
        if problem:
            raise ImageReadError(problem)

    def _skip(self, path: str, problem: str) -> None:
        if self.test_mode:
            raise ImageReadError(f"image '{path}' {problem} (test_mode: no sample may be "
                                 'skipped); fix or remove it from the annotations')
        self._skipped += 1
        print_log(f"skipping sample: image '{path}' {problem} (LoadImageFromFile "
                  f'ignore_empty=True); {self._skipped} skipped so far in this process',
                  logger='current', level=logging.WARNING)
        return None
