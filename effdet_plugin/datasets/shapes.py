"""A small synthetic COCO dataset of discs and squares, to try the own-data recipe on.

Unlike the nuclei demo data (256-px tiles, ~20-px objects, one class, category id 1), these
are 600x400 images with 40-80 px objects of two classes whose category ids are 5 and 9, so a
pipeline or config that only works for the nuclei is caught.
"""
from pathlib import Path
from typing import Dict, Tuple, Union

import cv2
import numpy as np

from .coco_builder import CocoBuilder

#: (name, COCO category id, BGR colour)
SHAPE_CLASSES = (('disc', 5, (60, 200, 250)), ('square', 9, (240, 140, 60)))


def _draw_shapes(rng: np.random.RandomState, size: Tuple[int, int],
                 object_size: Tuple[int, int], max_objects: int):
    """One noisy image and ``(class index, binary mask)`` per shape, without overlaps."""
    width, height = size
    img = rng.randint(20, 90, (height, width, 3)).astype(np.uint8)
    img = cv2.GaussianBlur(img, (7, 7), 0)
    occupied = np.zeros((height, width), bool)
    shapes = []
    for _ in range(rng.randint(2, max_objects + 1) * 4):  # attempts
        if len(shapes) == max_objects:
            break
        label = int(rng.randint(len(SHAPE_CLASSES)))
        side = int(rng.randint(object_size[0], object_size[1] + 1))
        x, y = int(rng.randint(0, width - side)), int(rng.randint(0, height - side))
        mask = np.zeros((height, width), np.uint8)
        if SHAPE_CLASSES[label][0] == 'disc':
            cv2.circle(mask, (x + side // 2, y + side // 2), side // 2, 1, -1)
        else:
            cv2.rectangle(mask, (x, y), (x + side - 1, y + side - 1), 1, -1)
        mask = mask.astype(bool)
        if (mask & occupied).any():
            continue
        occupied |= mask
        img[mask] = SHAPE_CLASSES[label][2]
        shapes.append((label, mask))
    noise = rng.normal(0, 8, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8), shapes


def write_shapes_coco(root: Union[str, Path],
                      num_train: int = 16,
                      num_val: int = 4,
                      size: Tuple[int, int] = (600, 400),
                      object_size: Tuple[int, int] = (40, 80),
                      max_objects: int = 6,
                      seed: int = 0) -> Dict[str, int]:
    """Write ``root/images/*.png`` and ``root/annotations/{train,val}.json``.

    Args:
        root (str | Path): Output folder.
        num_train (int): Training images. Defaults to 16.
        num_val (int): Validation (= test) images. Defaults to 4.
        size (tuple[int, int]): Image ``(W, H)``. Defaults to (600, 400).
        object_size (tuple[int, int]): Min / max object side (px). Defaults to (40, 80).
        max_objects (int): Shapes per image at most. Defaults to 6.
        seed (int): Random seed. Defaults to 0.

    Returns:
        dict[str, int]: Number of instances per split.
    """
    root = Path(root)
    (root / 'images').mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    counts = {}
    for split, num in (('train', num_train), ('val', num_val)):
        builder = CocoBuilder([name for name, _, _ in SHAPE_CLASSES], seg_format='polygon')
        for category, (_, cat_id, _) in zip(builder.categories, SHAPE_CLASSES):
            category['id'] = cat_id
        for i in range(num):
            img, shapes = _draw_shapes(rng, size, object_size, max_objects)
            file_name = f'{split}_{i:03d}.png'
            cv2.imwrite(str(root / 'images' / file_name), img)
            image_id = builder.add_image(file_name, img.shape[0], img.shape[1])
            for label, mask in shapes:
                builder.add_mask(image_id, mask, category_id=SHAPE_CLASSES[label][1])
        builder.dump(root / 'annotations' / f'{split}.json')
        counts[split] = len(builder.annotations)
    return counts
