"""LoadMedicalImageFromFile: faithful 16-bit / DICOM reading and every window mode."""
import cv2
import numpy as np
import pytest
import tifffile
from mmdet.registry import TRANSFORMS

import effdet_plugin  # noqa: F401  (registers the transform)
from effdet_plugin.datasets.image_io import ImageReadError, read_image
from effdet_plugin.datasets.intensity import dicom_window


def _load(path, **kwargs):
    transform = TRANSFORMS.build(dict(type='LoadMedicalImageFromFile', **kwargs))
    return transform(dict(img_path=str(path)))


def _expected_uint8(raw, lo, hi):
    return np.rint(np.clip((raw.astype(np.float64) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


@pytest.fixture
def png16(tmp_path, ramp16):
    path = tmp_path / 'ramp16.png'
    assert cv2.imwrite(str(path), ramp16)
    return path


def test_minmax_16bit_png_is_not_truncated(png16, ramp16):
    results = _load(png16, window='minmax')
    img = results['img']
    assert img.dtype == np.uint8 and img.shape == (16, 32, 3)
    assert results['img_shape'] == results['ori_shape'] == (16, 32)
    # grayscale repeated to 3 channels for ImageNet-pretrained backbones
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])
    np.testing.assert_array_equal(img[..., 0], _expected_uint8(ramp16, ramp16.min(), ramp16.max()))
    # mmcv's default 8-bit decoding would have kept only the high byte
    assert not np.array_equal(img[..., 0], (ramp16 >> 8).astype(np.uint8))


def test_percentile_window_clips_the_tails(png16, ramp16):
    img = _load(png16, window='percentile', percentiles=(5, 95))['img'][..., 0]
    lo, hi = np.percentile(ramp16, (5, 95))
    np.testing.assert_array_equal(img, _expected_uint8(ramp16, lo, hi))
    assert 0.04 < (img == 0).mean() < 0.07 and 0.04 < (img == 255).mean() < 0.07


def test_fixed_window(png16, ramp16):
    img = _load(png16, window='fixed', value_range=(10000, 30000))['img'][..., 0]
    np.testing.assert_array_equal(img, _expected_uint8(ramp16, 10000, 30000))
    assert img[ramp16 <= 10000].max() == 0 and img[ramp16 >= 30000].min() == 255


def test_float32_output_is_not_quantised(png16, ramp16):
    img = _load(png16, window='minmax', to_float32=True)['img']
    assert img.dtype == np.float32
    expected = (ramp16 - ramp16.min()) / float(ramp16.max() - ramp16.min()) * 255
    np.testing.assert_allclose(img[..., 0], expected, rtol=1e-5, atol=1e-3)
    assert not np.allclose(img, np.rint(img))


def test_color_types(png16):
    assert _load(png16, color_type='grayscale')['img'].shape == (16, 32)
    assert _load(png16, color_type='unchanged')['img'].shape == (16, 32)


def test_16bit_rgb_tiff_comes_out_bgr(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint16)
    rgb[..., 0] = 60000  # red
    rgb[..., 2] = 1000  # blue
    path = tmp_path / 'rgb16.tif'
    tifffile.imwrite(path, rgb, photometric='rgb')
    img = _load(path, window='fixed', value_range=(0, 60000))['img']
    assert img.shape == (8, 8, 3)
    assert (img[..., 2] == 255).all() and (img[..., 0] == round(1000 / 60000 * 255)).all()


def test_none_window_refuses_silent_truncation(png16, ramp16):
    with pytest.raises(ValueError, match='truncate'):
        _load(png16, window='none')
    raw = _load(png16, window='none', to_float32=True, color_type='unchanged')['img']
    np.testing.assert_array_equal(raw, ramp16.astype(np.float32))


def test_dicom_window_from_tags_and_given(tmp_path, dicom_writer, ramp16):
    path = dicom_writer(tmp_path / 'a.dcm', ramp16, window=(20000, 20001))
    img = _load(path, window='dicom')['img'][..., 0]
    np.testing.assert_array_equal(img, np.rint(dicom_window(ramp16, 20000, 20001) * 255))
    # a window given in the config wins over the file's tags
    img = _load(path, window='dicom', window_center=40000, window_width=4001)['img'][..., 0]
    np.testing.assert_array_equal(img, np.rint(dicom_window(ramp16, 40000, 4001) * 255))
    assert img[ramp16 < 38000].max() == 0 and img[ramp16 > 42000].min() == 255


def test_dicom_without_window_tags_needs_a_window(tmp_path, dicom_writer, ramp16):
    path = dicom_writer(tmp_path / 'a.dcm', ramp16)
    with pytest.raises(ValueError, match='WindowCenter'):
        _load(path, window='dicom')


def test_dicom_rescale_and_monochrome1(tmp_path, dicom_writer, ramp16):
    stored = (ramp16 // 4).astype(np.uint16)
    path = dicom_writer(tmp_path / 'm1.dcm', stored, slope=2.0, intercept=-1000.0,
                        photometric='MONOCHROME1')
    np.testing.assert_allclose(read_image(path).array, stored * 2.0 - 1000.0)
    img = _load(path, window='minmax')['img'][..., 0]
    # MONOCHROME1: the smallest value is displayed white
    assert img.flat[np.argmin(stored)] == 255 and img.flat[np.argmax(stored)] == 0


def test_real_ct_dicom(real_ct_dicom):
    import pydicom
    ds = pydicom.dcmread(real_ct_dicom)
    hu = read_image(real_ct_dicom).array
    np.testing.assert_array_equal(hu, ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope)
                                  + float(ds.RescaleIntercept))
    assert hu.min() < 0  # Hounsfield units, not stored values
    img = _load(real_ct_dicom, window='dicom', window_center=40, window_width=400)['img']
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[..., 0], np.rint(dicom_window(hu, 40, 400) * 255))


def test_missing_file_names_it(tmp_path):
    missing = tmp_path / 'nope.png'
    with pytest.raises(FileNotFoundError, match='nope.png'):
        _load(missing)


def test_corrupt_file_names_it_or_is_skipped_when_asked(tmp_path):
    bad = tmp_path / 'broken.png'
    bad.write_bytes(b'\x89PNG\r\n\x1a\n' + b'garbage' * 10)
    with pytest.raises(ImageReadError, match='broken.png'):
        _load(bad)
    with pytest.warns(UserWarning, match='broken.png'):
        assert _load(bad, ignore_empty=True) is None


def test_invalid_config_is_rejected_early():
    with pytest.raises(ValueError, match='value_range'):
        TRANSFORMS.build(dict(type='LoadMedicalImageFromFile', window='fixed'))
    with pytest.raises(ValueError, match='window must be'):
        TRANSFORMS.build(dict(type='LoadMedicalImageFromFile', window='hu'))


@pytest.mark.parametrize('shape,expected', [((1, 8, 9), (8, 9)), ((8, 9, 1), (8, 9)),
                                            ((1, 1, 8, 9), (8, 9)), ((3, 8, 9), (8, 9, 3))])
def test_tiff_singleton_and_planar_layouts(tmp_path, shape, expected):
    path = tmp_path / 'x.tif'
    planar = dict(photometric='rgb', planarconfig='separate') if shape[0] == 3 else {}
    tifffile.imwrite(path, np.zeros(shape, np.uint16), **planar)
    assert read_image(path).array.shape == expected


def test_tiff_stack_is_rejected_by_name(tmp_path):
    path = tmp_path / 'stack.tif'
    tifffile.imwrite(path, np.zeros((5, 8, 9), np.uint16))
    with pytest.raises(ImageReadError, match='stack.tif.*2D'):
        read_image(path)
