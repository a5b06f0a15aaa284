"""Datasets, data transforms and dataset converters.

Importing this package registers ``RobustCocoDataset`` (mmdet ``DATASETS``) and
``LoadMedicalImageFromFile`` (mmdet ``TRANSFORMS``).
"""
from .coco_builder import CocoBuilder, mask_to_annotation
from .image_io import ImageData, ImageReadError, read_image
from .intensity import normalize_intensity
from .medical import convert_masks_to_coco
from .nuclei import convert_nuclei
from .robust_coco import RobustCocoDataset
from .transforms import LoadMedicalImageFromFile

__all__ = [
    'CocoBuilder', 'mask_to_annotation', 'ImageData', 'ImageReadError', 'read_image',
    'normalize_intensity', 'convert_masks_to_coco', 'convert_nuclei', 'RobustCocoDataset',
    'LoadMedicalImageFromFile'
]
