"""Scale jitter around the image's own size, for fine-tuning on data of any resolution."""
from typing import Optional, Sequence, Tuple

import mmcv
import numpy as np
from mmdet.datasets.transforms import Resize
from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class ScaleJitter(Resize):
    """Resize by a random factor around the native size (or around a keep-ratio ``scale``),
    optionally times a fixed ``factor``.

    mmcv's ``RandomResize(scale=S, ratio_range=r, keep_ratio=True)`` jitters around a fixed
    target ``S``: a 768-px image trained with ``S=256`` shrinks 3x while the test pipeline
    (``Resize(scale_factor=1.0)``) sees it at 1x, and the detector learns objects 3x smaller
    than those it is tested on. Here the factor is drawn around 1 (``scale=None``) or around
    the keep-ratio factor that fits the image into ``scale`` (then test with
    ``Resize(scale=scale, keep_ratio=True)``), so train and test object sizes agree for any
    input resolution.

    Args:
        ratio_range (Sequence[float]): ``(low, high)`` of the uniform random factor.
            Defaults to (0.8, 1.25).
        scale (Sequence[int], optional): ``(W, H)`` target fitted with kept aspect ratio
            before the random factor; None keeps the native size. Defaults to None.
        factor (float): Fixed factor applied on top (``--img-scale-factor``: objects small
            for the model, tested with ``Resize(scale_factor=factor)``). Defaults to 1.0.
        **kwargs: Other arguments of mmdet's ``Resize`` (``clip_object_border``,
            ``interpolation``, ``backend``).
    """

    def __init__(self,
                 ratio_range: Sequence[float] = (0.8, 1.25),
                 scale: Optional[Sequence[int]] = None,
                 factor: float = 1.0,
                 **kwargs) -> None:
        low, high = ratio_range
        if not 0 < low <= high:
            raise ValueError(f'ratio_range must be (low, high) with 0 < low <= high, '
                             f'got {tuple(ratio_range)}')
        if not factor > 0:
            raise ValueError(f'factor must be > 0, got {factor}')
        super().__init__(scale_factor=1.0, keep_ratio=False, **kwargs)
        self.ratio_range = (float(low), float(high))
        self.target = None if scale is None else tuple(int(v) for v in scale)
        self.factor = float(factor)

    def _size(self, width: int, height: int) -> Tuple[int, int]:
        base = self.factor
        if self.target is not None:
            _, fit = mmcv.rescale_size((width, height), self.target, return_scale=True)
            base *= fit
        factor = base * np.random.uniform(*self.ratio_range)
        return max(1, int(width * factor + 0.5)), max(1, int(height * factor + 0.5))

    def transform(self, results: dict) -> dict:
        """Resize image, boxes, masks and segmentation by one random factor."""
        height, width = results['img'].shape[:2]
        self.scale = self._size(width, height)  # mmcv's RandomResize sets its Resize alike
        return super().transform(results)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(ratio_range={self.ratio_range}, '
                f'scale={self.target}, factor={self.factor:g})')
