"""Image loading for medical / microscopy data (16-bit PNG/TIFF, DICOM)."""
import warnings
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS

from ..image_io import ImageReadError, read_image
from ..intensity import WINDOW_MODES, normalize_intensity


@TRANSFORMS.register_module()
class LoadMedicalImageFromFile(BaseTransform):
    """Load an 8/16-bit PNG/TIFF/JPEG or a DICOM file and window it to 8-bit range.

    A drop-in replacement for mmcv's ``LoadImageFromFile`` that never truncates 16-bit data:
    the stored values (DICOM: after RescaleSlope/Intercept) go through an intensity window to
    [0, 255], so mmdet's ``DetDataPreprocessor`` mean/std (ImageNet, 0-255 scale) still apply.
    Colour images come out BGR like mmcv's; DICOM MONOCHROME1 is inverted after windowing.

    Missing or unreadable files raise an error naming the file. With ``ignore_empty=True`` they
    are skipped with a warning instead: the transform returns None and mmengine's
    ``BaseDataset`` fetches another sample (training only; at test time it still fails).

    Required Keys:

    - img_path

    Modified Keys:

    - img
    - img_shape
    - ori_shape

    Args:
        window (str): How raw values map to [0, 255]: 'minmax' (per-image min/max),
            'percentile' (per-image ``percentiles``), 'dicom' (``window_center``/
            ``window_width`` if given, else the file's WindowCenter/WindowWidth tags), 'fixed'
            (``value_range``), or 'none' (raw values; with ``to_float32=False`` only for
            data already in 0-255). Defaults to 'minmax'.
        percentiles (Sequence[float]): Low/high percentiles for 'percentile'.
            Defaults to (1.0, 99.0).
        window_center (float, optional): Window center for 'dicom'. Defaults to None.
        window_width (float, optional): Window width for 'dicom'. Defaults to None.
        value_range (Sequence[float], optional): ``(min, max)`` for 'fixed'. Defaults to None.
        to_float32 (bool): Return float32 in [0, 255] without rounding instead of uint8.
            Defaults to False.
        color_type (str): 'color' (``HxWx3``; grayscale repeated to 3 channels for
            ImageNet-pretrained backbones), 'grayscale' (``HxW``) or 'unchanged'.
            Defaults to 'color'.
        ignore_empty (bool): Skip missing/corrupt files with a warning instead of raising.
            Defaults to False.
        backend_args (dict, optional): mmengine file backend arguments. Defaults to None.
    """

    def __init__(self,
                 window: str = 'minmax',
                 percentiles: Sequence[float] = (1.0, 99.0),
                 window_center: Optional[float] = None,
                 window_width: Optional[float] = None,
                 value_range: Optional[Sequence[float]] = None,
                 to_float32: bool = False,
                 color_type: str = 'color',
                 ignore_empty: bool = False,
                 backend_args: Optional[dict] = None) -> None:
        if window not in WINDOW_MODES:
            raise ValueError(f'window must be one of {WINDOW_MODES}, got {window!r}')
        if window == 'fixed' and (value_range is None or len(value_range) != 2):
            raise ValueError("window='fixed' needs value_range=(min, max), the raw values "
                             'mapped to 0 and 255, e.g. (0, 4095) for 12-bit data; without a '
                             "known range choose window='percentile' or 'minmax'")
        if (window_center is None) != (window_width is None):
            raise ValueError('give both window_center and window_width, or neither')
        if color_type not in ('color', 'grayscale', 'unchanged'):
            raise ValueError(f"color_type must be 'color', 'grayscale' or 'unchanged', "
                             f'got {color_type!r}')
        self.window = window
        self.percentiles = tuple(percentiles)
        self.dicom_window = (None if window_center is None else
                             (float(window_center), float(window_width)))
        self.value_range = None if value_range is None else tuple(value_range)
        self.to_float32 = to_float32
        self.color_type = color_type
        self.ignore_empty = ignore_empty
        self.backend_args = None if backend_args is None else backend_args.copy()

    def _window(self, img: np.ndarray, file_window: Optional[Tuple[float, float]],
                filename: str) -> Optional[np.ndarray]:
        """Return ``img`` scaled to [0, 1], or None for window='none'."""
        if self.window == 'none':
            return None
        window = self.dicom_window or file_window
        if self.window == 'dicom' and window is None:
            raise ValueError(f"window='dicom' but '{filename}' has no WindowCenter/WindowWidth "
                             'tags: set window_center/window_width or use another window mode')
        return normalize_intensity(img, self.window, self.percentiles, self.value_range, window)

    def transform(self, results: dict) -> Optional[dict]:
        """Load and window the image at ``results['img_path']``.

        Args:
            results (dict): Result dict from the dataset.

        Returns:
            dict | None: ``results`` with ``img``; None if skipped (``ignore_empty=True``).
        """
        filename = results['img_path']
        try:
            data = read_image(filename, backend_args=self.backend_args)
        except (FileNotFoundError, ImageReadError) as e:
            if not self.ignore_empty:
                raise
            warnings.warn(f'skipping sample: {e}')
            return None

        unit = self._window(data.array, data.window, filename)
        if unit is None:  # window='none'
            img = data.array.astype(np.float32) if self.to_float32 else data.array
            if img.dtype != np.uint8 and not self.to_float32:
                if img.min() < 0 or img.max() > 255:
                    raise ValueError(
                        f"'{filename}' holds {img.dtype} values in [{img.min()}, {img.max()}]: "
                        "window='none' with to_float32=False would truncate them; choose a "
                        'window mode or set to_float32=True')
                img = img.astype(np.uint8)
        else:
            if data.invert:
                unit = 1.0 - unit
            img = unit * 255.0
            if not self.to_float32:
                img = np.rint(img).astype(np.uint8)

        if self.color_type == 'color' and img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        elif self.color_type == 'grayscale' and img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)

        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(window={self.window!r}, '
                f'percentiles={self.percentiles}, dicom_window={self.dicom_window}, '
                f'value_range={self.value_range}, to_float32={self.to_float32}, '
                f'color_type={self.color_type!r}, ignore_empty={self.ignore_empty}, '
                f'backend_args={self.backend_args})')
