"""Fixtures for the dataset tests: synthetic 16-bit images and DICOM files written offline."""
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest


def write_dicom(path: Path, pixels: np.ndarray, window: Optional[tuple] = None,
                slope: float = 1.0, intercept: float = 0.0,
                photometric: str = 'MONOCHROME2') -> Path:
    """Write a minimal single-frame, uncompressed 16-bit grayscale DICOM with pydicom."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = 'OT'
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = int(pixels.dtype == np.int16)
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def dicom_writer() -> Callable[..., Path]:
    """``dicom_writer(path, pixels, window=None, slope=1, intercept=0, photometric=...)``."""
    return write_dicom


@pytest.fixture
def ramp16() -> np.ndarray:
    """A 16x32 uint16 ramp over 0..61000: distinct values far above 8 bits."""
    return (np.arange(16 * 32, dtype=np.float64).reshape(16, 32) * 119.4).astype(np.uint16)


@pytest.fixture
def real_ct_dicom() -> Path:
    """pydicom's own CT_small.dcm (a real 128x128 CT slice, int16, RescaleIntercept -1024).

    Located on disk next to pydicom rather than through ``get_testdata_file``, which may try
    to download files it does not find locally.
    """
    import pydicom
    path = Path(pydicom.__file__).parent / 'data' / 'test_files' / 'CT_small.dcm'
    if not path.is_file():
        pytest.skip('pydicom test file CT_small.dcm is not installed')
    return path
