"""Build COCO instance annotations from masks (shared by every converter)."""
import json
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from pycocotools import mask as mask_utils

SEG_FORMATS = ('rle', 'polygon')


def mask_to_polygons(mask: np.ndarray) -> List[List[float]]:
    """Outline a binary mask as COCO polygons through its border pixel centres (approximate).

    Parts too small for a contour (1-2 pixels) get their bounding square, so every non-empty
    mask yields at least one valid polygon (mmdet drops polygons with fewer than 3 points).

    Args:
        mask (np.ndarray): ``HxW`` binary mask.

    Returns:
        list[list[float]]: Flat ``[x0, y0, x1, y1, ...]`` polygons.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        pts = contour.reshape(-1, 2).astype(np.float64)
        if len(pts) >= 3:
            # index i -> centre of pixel [i, i+1] in COCO's continuous coordinates
            polygons.append((pts + 0.5).ravel().round(2).tolist())
        else:
            x0, y0 = pts.min(0)
            x1, y1 = pts.max(0) + 1
            polygons.append([x0, y0, x1, y0, x1, y1, x0, y1])
    return polygons


def mask_to_annotation(mask: np.ndarray, seg_format: str = 'rle') -> Optional[dict]:
    """Return ``segmentation``, ``area`` and ``bbox`` (xywh) of a binary mask.

    Area and box always come from the exact pixels, whatever ``seg_format``.

    Args:
        mask (np.ndarray): ``HxW`` mask; non-zero pixels belong to the instance.
        seg_format (str): 'rle' (compressed RLE, exact; load with mmdet's
            ``LoadAnnotations(poly2mask=True)``, the default) or 'polygon'. Defaults to 'rle'.

    Returns:
        dict | None: The annotation fields, or None for an empty mask.
    """
    if seg_format not in SEG_FORMATS:
        raise ValueError(f'seg_format must be one of {SEG_FORMATS}, got {seg_format!r}')
    binary = np.asfortranarray(mask != 0, dtype=np.uint8)
    rle = mask_utils.encode(binary)
    area = int(mask_utils.area(rle))
    if area == 0:
        return None
    bbox = [float(v) for v in mask_utils.toBbox(rle)]
    if seg_format == 'rle':
        segmentation = {'size': [int(s) for s in rle['size']],
                        'counts': rle['counts'].decode('ascii')}
    else:
        segmentation = mask_to_polygons(binary)
    return {'segmentation': segmentation, 'area': area, 'bbox': bbox}


def iter_label_instances(labels: np.ndarray) -> Iterator[Tuple[int, np.ndarray]]:
    """Yield ``(instance_id, binary_mask)`` for each non-zero id of an instance-label map."""
    for instance_id in np.unique(labels):
        if instance_id != 0:
            yield int(instance_id), labels == instance_id


class CocoBuilder:
    """Accumulate images and annotations into a COCO instances dict.

    Args:
        categories (Sequence[str]): Category names; ids are 1-based in this order.
        seg_format (str): Segmentation encoding, see :func:`mask_to_annotation`.
            Defaults to 'rle'.
    """

    def __init__(self, categories: Sequence[str], seg_format: str = 'rle') -> None:
        if seg_format not in SEG_FORMATS:
            raise ValueError(f'seg_format must be one of {SEG_FORMATS}, got {seg_format!r}')
        self.seg_format = seg_format
        self.categories = [{'id': i + 1, 'name': name, 'supercategory': name}
                           for i, name in enumerate(categories)]
        self.images: List[dict] = []
        self.annotations: List[dict] = []

    def add_image(self, file_name: str, height: int, width: int, **extra) -> int:
        """Register an image and return its id; ``extra`` keys are stored in its entry."""
        image_id = len(self.images) + 1
        self.images.append({'id': image_id, 'file_name': file_name, 'height': int(height),
                            'width': int(width), **extra})
        return image_id

    def add_mask(self, image_id: int, mask: np.ndarray, category_id: int = 1,
                 iscrowd: int = 0, **extra) -> Optional[int]:
        """Add one instance mask; returns its annotation id, or None if the mask is empty."""
        ann = mask_to_annotation(mask, self.seg_format)
        if ann is None:
            return None
        ann_id = len(self.annotations) + 1
        self.annotations.append({'id': ann_id, 'image_id': image_id, 'category_id': category_id,
                                 'iscrowd': int(iscrowd), **ann, **extra})
        return ann_id

    def to_dict(self) -> Dict[str, list]:
        """Return the COCO dict (``images``, ``annotations``, ``categories``)."""
        return {'images': self.images, 'annotations': self.annotations,
                'categories': self.categories}

    def dump(self, out_file: Union[str, Path]) -> None:
        """Write the COCO json, creating parent folders."""
        out_file = Path(out_file)
        out_file.parent.mkdir(parents=True, exist_ok=True)
        with open(out_file, 'w') as f:
            json.dump(self.to_dict(), f)
