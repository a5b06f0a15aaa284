"""Intensity windows: map raw (8/16-bit, signed, float) pixel values to [0, 1].

Shared by :class:`LoadMedicalImageFromFile` and the dataset converters, so a converter that
writes 8-bit PNGs and a pipeline that reads 16-bit originals normalise the same way.
"""
from typing import Optional, Tuple

import numpy as np

WINDOW_MODES = ('minmax', 'percentile', 'dicom', 'fixed', 'none')


def percentile_range(img: np.ndarray, low: float = 1.0, high: float = 99.0) -> Tuple[float, float]:
    """Return the ``low``/``high`` percentiles of ``img`` (all channels together).

    Args:
        img (np.ndarray): Image of any numeric dtype.
        low (float): Lower percentile in [0, 100]. Defaults to 1.0.
        high (float): Upper percentile in [0, 100]. Defaults to 99.0.

    Returns:
        tuple[float, float]: The value range ``(lo, hi)``.
    """
    if not 0 <= low < high <= 100:
        raise ValueError(f'percentiles must satisfy 0 <= low < high <= 100, got ({low}, {high})')
    lo, hi = np.percentile(img, (low, high))
    return float(lo), float(hi)


def linear_window(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``[lo, hi]`` linearly to ``[0, 1]`` and clip; a flat window gives zeros.

    Args:
        img (np.ndarray): Image of any numeric dtype.
        lo (float): Value mapped to 0.
        hi (float): Value mapped to 1.

    Returns:
        np.ndarray: float32 image in [0, 1].
    """
    img = img.astype(np.float32)
    if hi <= lo:  # constant image (or degenerate window): nothing to stretch
        return np.zeros_like(img)
    return np.clip((img - lo) / (hi - lo), 0.0, 1.0)


def dicom_window(img: np.ndarray, center: float, width: float) -> np.ndarray:
    """Apply a DICOM linear VOI window (PS3.3 C.11.2.1.2.1) and scale it to [0, 1].

    Args:
        img (np.ndarray): Modality values (e.g. Hounsfield units after the rescale).
        center (float): Window center.
        width (float): Window width, >= 1.

    Returns:
        np.ndarray: float32 image in [0, 1].
    """
    if width < 1:
        raise ValueError(f'DICOM window width must be >= 1, got {width}')
    img = img.astype(np.float32)
    if width == 1:  # the standard's step function
        return (img > center - 0.5).astype(np.float32)
    # The standard's centre/width are offset by half a value so integer windows line up.
    return np.clip((img - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def normalize_intensity(img: np.ndarray,
                        mode: str = 'minmax',
                        percentiles: Tuple[float, float] = (1.0, 99.0),
                        value_range: Optional[Tuple[float, float]] = None,
                        window: Optional[Tuple[float, float]] = None) -> np.ndarray:
    """Normalise ``img`` to float32 in [0, 1] with one of :data:`WINDOW_MODES` (except 'none').

    Args:
        img (np.ndarray): Raw image.
        mode (str): 'minmax' (image min/max), 'percentile' (``percentiles`` of the image),
            'fixed' (``value_range``) or 'dicom' (``window`` = (center, width)).
            Defaults to 'minmax'.
        percentiles (tuple[float, float]): Used by 'percentile'. Defaults to (1.0, 99.0).
        value_range (tuple[float, float], optional): ``(min, max)`` used by 'fixed'.
            Defaults to None.
        window (tuple[float, float], optional): ``(center, width)`` used by 'dicom'.
            Defaults to None.

    Returns:
        np.ndarray: float32 image in [0, 1], same shape as ``img``.
    """
    if mode == 'minmax':
        return linear_window(img, float(img.min()), float(img.max()))
    if mode == 'percentile':
        return linear_window(img, *percentile_range(img, *percentiles))
    if mode == 'fixed':
        if value_range is None:
            raise ValueError("mode='fixed' needs value_range=(min, max)")
        return linear_window(img, *value_range)
    if mode == 'dicom':
        if window is None:
            raise ValueError("mode='dicom' needs window=(center, width)")
        return dicom_window(img, *window)
    raise ValueError(f'unknown intensity mode {mode!r}; expected one of {WINDOW_MODES[:-1]}')
