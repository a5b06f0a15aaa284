"""Read 8/16-bit PNG/TIFF/JPEG and DICOM files without losing bit depth.

mmcv's ``imfrombytes(flag='color')`` turns a 16-bit PNG into 8 bits and cannot read DICOM; this
module keeps the stored values (DICOM: after the modality rescale) and reports the DICOM window.
The file format is recognised from its first bytes, so extension-less DICOM files work too.
"""
import io
import os
import os.path as osp
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import cv2
import numpy as np
from mmengine import fileio

DICOM_EXTS = ('.dcm', '.dicom')
MASK_EXTS = ('.png', '.tif', '.tiff')
IMAGE_EXTS = ('.png', '.tif', '.tiff', '.jpg', '.jpeg', '.bmp') + DICOM_EXTS


class ImageReadError(OSError):
    """An image file exists but cannot be decoded (corrupt, truncated, unsupported layout)."""


@dataclass
class ImageData:
    """A decoded image.

    Attributes:
        array (np.ndarray): ``HxW`` (grayscale) or ``HxWx3`` (BGR, like mmcv) with the stored
            dtype; DICOM values are modality values (RescaleSlope/Intercept applied).
        window (tuple[float, float], optional): DICOM (WindowCenter, WindowWidth), if tagged.
        invert (bool): True for DICOM MONOCHROME1, where low values are displayed bright.
    """
    array: np.ndarray
    window: Optional[Tuple[float, float]] = None
    invert: bool = False


def _is_dicom(buf: bytes) -> bool:
    return len(buf) > 132 and buf[128:132] == b'DICM'


def _is_tiff(buf: bytes) -> bool:
    return buf[:4] in (b'II*\x00', b'MM\x00*', b'II+\x00', b'MM\x00+')


def _to_hw_or_hwc(arr: np.ndarray, name: str) -> np.ndarray:
    """Bring a decoded array to ``HxW`` or ``HxWx3``; reject stacks and odd channel counts."""
    while arr.ndim > 3 and arr.shape[0] == 1:  # e.g. ImageJ TZCYX stacks of one plane
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    elif arr.ndim == 3 and arr.shape[0] == 1 and arr.shape[-1] not in (3, 4):
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] not in (3, 4) and arr.shape[0] in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar (CxHxW) TIFF
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]  # drop alpha
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3):
        return arr
    raise ImageReadError(f"'{name}' has shape {arr.shape}: expected a single 2D image (HxW or "
                         'HxWx3); multi-page/volumetric stacks must be split into 2D files first')


def _read_dicom(buf: bytes, name: str) -> ImageData:
    import pydicom
    from pydicom.multival import MultiValue
    try:
        from pydicom.pixels import apply_modality_lut  # pydicom >= 3
    except ImportError:  # pragma: no cover - pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_modality_lut

    force = osp.splitext(name)[1].lower() in DICOM_EXTS  # allow files without the preamble
    ds = pydicom.dcmread(io.BytesIO(buf), force=force)
    if int(ds.get('NumberOfFrames', 1) or 1) > 1:
        raise ImageReadError(f"'{name}' is a multi-frame DICOM ({ds.NumberOfFrames} frames); "
                             'export the frames as single-frame files first')
    arr = ds.pixel_array
    photometric = str(ds.get('PhotometricInterpretation', 'MONOCHROME2'))
    if arr.ndim == 2:
        arr = apply_modality_lut(arr, ds)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
    else:
        arr = np.ascontiguousarray(arr[..., ::-1])  # pydicom gives RGB; mmcv convention is BGR
    window = None
    if 'WindowCenter' in ds and 'WindowWidth' in ds:
        center, width = ds.WindowCenter, ds.WindowWidth
        # Multi-valued windows list alternatives (e.g. lung / mediastinum); take the first.
        center = center[0] if isinstance(center, MultiValue) else center
        width = width[0] if isinstance(width, MultiValue) else width
        window = (float(center), float(width))
    return ImageData(_to_hw_or_hwc(arr, name), window, photometric == 'MONOCHROME1')


def decode_image(buf: bytes, name: str = '<bytes>') -> ImageData:
    """Decode the bytes of a PNG/JPEG/BMP, TIFF or DICOM file, keeping its bit depth.

    Args:
        buf (bytes): File content.
        name (str): File name, used in error messages and to allow DICOM files without the
            128-byte preamble when it ends in ``.dcm``/``.dicom``. Defaults to '<bytes>'.

    Returns:
        ImageData: The decoded image.
    """
    try:
        if _is_dicom(buf) or osp.splitext(name)[1].lower() in DICOM_EXTS:
            return _read_dicom(buf, name)
        if _is_tiff(buf):
            import tifffile
            arr = _to_hw_or_hwc(tifffile.imread(io.BytesIO(buf)), name)
            # tifffile returns RGB samples; the mmcv convention (and cv2's decode) is BGR.
            return ImageData(np.ascontiguousarray(arr[..., ::-1]) if arr.ndim == 3 else arr)
        arr = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_UNCHANGED)
    except ImageReadError:
        raise
    except Exception as e:  # decoders raise many unrelated types for a corrupt file
        raise ImageReadError(f"cannot decode image '{name}' ({type(e).__name__}: {e}); the file "
                             'is corrupt or not an image: re-export it or remove it from the '
                             'annotations') from e
    if arr is None:
        raise ImageReadError(f"cannot decode image '{name}' (OpenCV could not read it); the file "
                             'is corrupt or not an image: re-export it or remove it from the '
                             'annotations')
    return ImageData(_to_hw_or_hwc(arr, name))


def stored_bit_depth(filename: str) -> Optional[int]:
    """Bits per sample of a local PNG or TIFF, read from its header; None for other files.

    Cheap enough to call per sample: a PNG's depth is byte 24 of the file, a TIFF's is read
    from its first page's tags without decoding pixels.
    """
    if '://' in filename or not osp.isfile(filename):
        return None
    with open(filename, 'rb') as f:
        head = f.read(32)
    if head[:8] == b'\x89PNG\r\n\x1a\n' and head[12:16] == b'IHDR':
        return head[24]
    if _is_tiff(head):
        import tifffile
        try:
            with tifffile.TiffFile(filename) as tif:
                return int(tif.pages[0].bitspersample)
        except Exception:  # a corrupt TIFF is reported by the loader itself
            return None
    return None


def bit_depth_problem(filename: str, color_type: str = 'color') -> Optional[str]:
    """Why mmcv's ``LoadImageFromFile`` would lose the values of ``filename``, or None.

    mmcv's loader cuts 16-bit PNG/TIFF to 8 bits (near-black for 12-bit data) unless
    ``color_type='unchanged'``; the depth is read from the file header
    (:func:`stored_bit_depth`).
    """
    depth = stored_bit_depth(filename) if color_type != 'unchanged' else None
    if depth is None or depth <= 8:
        return None
    return (f"'{filename}' stores {depth}-bit values: mmcv's LoadImageFromFile "
            f"(color_type='{color_type}') would cut them to 8 bits (near-black for 12/16-bit "
            "data). Load the images with dict(type='LoadMedicalImageFromFile', "
            "window='percentile') (docs/medical.md)")


def read_image(filename: Union[str, os.PathLike],
               backend_args: Optional[dict] = None) -> ImageData:
    """Read an image file through mmengine's file backends, keeping its bit depth.

    Args:
        filename (str | PathLike): Local path or backend URI.
        backend_args (dict, optional): mmengine file backend arguments. Defaults to None.

    Returns:
        ImageData: The decoded image.

    Raises:
        FileNotFoundError: The file does not exist (the message names it).
        ImageReadError: The file exists but cannot be decoded.
    """
    filename = str(filename)
    try:
        buf = fileio.get(filename, backend_args=backend_args)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"image file not found: '{filename}'; check data_root and "
                                'data_prefix in the dataset config') from e
    if len(buf) == 0:
        raise ImageReadError(f"image file '{filename}' is empty (0 bytes)")
    return decode_image(buf, filename)
