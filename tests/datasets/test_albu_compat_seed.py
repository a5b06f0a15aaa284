"""AlbuCompat augments reproducibly: seeded from numpy, like every other mmdet transform."""
import numpy as np
from mmdet.registry import TRANSFORMS

import effdet_plugin  # noqa: F401  (registers AlbuCompat)


def _augment(numpy_seed: int) -> np.ndarray:
    """A fresh AlbuCompat (as in a new run) on one image, numpy seeded with ``numpy_seed``."""
    albu = TRANSFORMS.build(dict(
        type='AlbuCompat', transforms=[
            dict(type='RandomBrightnessContrast', brightness_limit=0.5, contrast_limit=0.5,
                 p=1.0),
            dict(type='GaussNoise', p=1.0)]))
    np.random.seed(numpy_seed)
    image = np.full((32, 32, 3), 128, np.uint8)
    return albu.transform(dict(img=image.copy(), img_shape=(32, 32)))['img']


def test_same_numpy_seed_same_augmentation():
    first, again, other = _augment(0), _augment(0), _augment(1)
    assert not np.array_equal(first, np.full_like(first, 128))  # it did augment
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
