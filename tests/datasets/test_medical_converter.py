"""convert_masks_to_coco: label masks, per-instance mask folders, DICOM, and its errors."""
import json
import runpy
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from pycocotools import mask as mask_utils

from effdet_plugin.datasets.medical import convert_masks_to_coco

REPO = Path(__file__).resolve().parents[2]
# pycocotools' decode under numpy 2; not ours
pytestmark = pytest.mark.filterwarnings(
    'ignore:__array__ implementation:DeprecationWarning')


def _labels(shape=(20, 30)):
    """Three instances, one with an id above 255 (needs a 16-bit mask)."""
    labels = np.zeros(shape, np.uint16)
    labels[2:6, 3:9] = 1
    labels[10:18, 12:15] = 300
    labels[1:4, 20:29] = 7
    return labels


def _decode(ann):
    return mask_utils.decode(ann['segmentation']).astype(bool)


def _load_json(path):
    with open(path) as f:
        return json.load(f)


def test_label_masks_16bit_png_and_tiff(tmp_path):
    img_dir, mask_dir = tmp_path / 'images', tmp_path / 'masks'
    img_dir.mkdir(), mask_dir.mkdir()
    labels = _labels()
    cv2.imwrite(str(img_dir / 'a.png'), (labels * 100).astype(np.uint16))
    tifffile.imwrite(img_dir / 'b.tif', np.full((20, 30), 40000, np.uint16))
    cv2.imwrite(str(mask_dir / 'a_mask.png'), labels)
    tifffile.imwrite(mask_dir / 'b_mask.tif', np.zeros((20, 30), np.uint16))
    out = tmp_path / 'ann.json'
    with pytest.warns(UserWarning, match=r"1 image\(s\) have no instances.*b.tif"):
        counts = convert_masks_to_coco(img_dir, mask_dir, out, category='cell',
                                       mask_suffix='_mask')
    assert counts == dict(images=2, instances=3, negatives=1)
    coco = _load_json(out)
    assert [c['name'] for c in coco['categories']] == ['cell']
    assert [(i['file_name'], i['height'], i['width']) for i in coco['images']] == \
        [('a.png', 20, 30), ('b.tif', 20, 30)]
    anns = {a['source']: a for a in coco['annotations']}
    assert set(anns) == {'a_mask.png:1', 'a_mask.png:7', 'a_mask.png:300'}
    for instance_id in (1, 7, 300):
        ann = anns[f'a_mask.png:{instance_id}']
        truth = labels == instance_id
        assert np.array_equal(_decode(ann), truth) and ann['area'] == truth.sum()
        ys, xs = np.nonzero(truth)
        assert ann['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                               ys.max() - ys.min() + 1]
        assert ann['iscrowd'] == 0 and ann['image_id'] == 1


def test_instance_mask_folders(tmp_path):
    img_dir, mask_dir = tmp_path / 'images', tmp_path / 'masks'
    img_dir.mkdir(), mask_dir.mkdir()
    labels = _labels()
    for stem in ('x', 'y'):
        cv2.imwrite(str(img_dir / f'{stem}.png'), np.zeros((20, 30, 3), np.uint8))
        (mask_dir / stem).mkdir()
    for instance_id in (1, 300):
        cv2.imwrite(str(mask_dir / 'x' / f'{instance_id}.png'),
                    (labels == instance_id).astype(np.uint8) * 255)
    cv2.imwrite(str(mask_dir / 'x' / 'blank.png'), np.zeros((20, 30), np.uint8))
    with pytest.warns(UserWarning) as record:
        counts = convert_masks_to_coco(img_dir, mask_dir, tmp_path / 'ann.json',
                                       layout='folders', seg_format='polygon')
    messages = ' '.join(str(w.message) for w in record)
    assert 'blank.png' in messages and "['y.png']" in messages
    assert counts == dict(images=2, instances=2, negatives=1)
    anns = _load_json(tmp_path / 'ann.json')['annotations']
    assert sorted(a['source'] for a in anns) == ['x/1.png', 'x/300.png']
    for ann in anns:
        assert isinstance(ann['segmentation'], list) and len(ann['segmentation'][0]) >= 6


def test_dicom_images_with_label_masks(tmp_path, dicom_writer, real_ct_dicom):
    img_dir, mask_dir = tmp_path / 'dicom', tmp_path / 'masks'
    img_dir.mkdir(), mask_dir.mkdir()
    shutil.copy(real_ct_dicom, img_dir / 'ct.dcm')
    dicom_writer(img_dir / 'synthetic.dcm', np.zeros((20, 30), np.uint16))
    ct_labels = np.zeros((128, 128), np.uint8)
    ct_labels[40:60, 50:90] = 1
    cv2.imwrite(str(mask_dir / 'ct.png'), ct_labels)
    cv2.imwrite(str(mask_dir / 'synthetic.png'), _labels())
    counts = convert_masks_to_coco(img_dir, mask_dir, tmp_path / 'ann.json')
    assert counts == dict(images=2, instances=4, negatives=0)
    images = _load_json(tmp_path / 'ann.json')['images']
    assert [(i['file_name'], i['height'], i['width']) for i in images] == \
        [('ct.dcm', 128, 128), ('synthetic.dcm', 20, 30)]


def test_missing_mask_names_the_image_and_the_fix(tmp_path):
    img_dir, mask_dir = tmp_path / 'images', tmp_path / 'masks'
    img_dir.mkdir(), mask_dir.mkdir()
    cv2.imwrite(str(img_dir / 'lonely.png'), np.zeros((4, 4), np.uint8))
    with pytest.raises(FileNotFoundError, match=r"lonely\.png.*mask_suffix"):
        convert_masks_to_coco(img_dir, mask_dir, tmp_path / 'ann.json')
    with pytest.raises(FileNotFoundError, match=r"lonely\.png.*<stem>/"):
        convert_masks_to_coco(img_dir, mask_dir, tmp_path / 'ann.json', layout='folders')
    assert not (tmp_path / 'ann.json').exists()


def test_shape_mismatch_names_both_files(tmp_path):
    img_dir, mask_dir = tmp_path / 'images', tmp_path / 'masks'
    img_dir.mkdir(), mask_dir.mkdir()
    cv2.imwrite(str(img_dir / 'a.png'), np.zeros((20, 30), np.uint8))
    cv2.imwrite(str(mask_dir / 'a.png'), np.zeros((30, 20), np.uint8))
    with pytest.raises(ValueError, match=r"masks/a\.png' is 30x20.*images/a\.png' is 20x30"):
        convert_masks_to_coco(img_dir, mask_dir, tmp_path / 'ann.json')


def test_empty_folder_and_colour_mask(tmp_path):
    img_dir, mask_dir = tmp_path / 'images', tmp_path / 'masks'
    img_dir.mkdir(), mask_dir.mkdir()
    with pytest.raises(FileNotFoundError, match='no images'):
        convert_masks_to_coco(img_dir, mask_dir, tmp_path / 'ann.json')
    with pytest.raises(FileNotFoundError, match="mask folder .*does not exist"):
        convert_masks_to_coco(img_dir, tmp_path / 'nowhere', tmp_path / 'ann.json')
    cv2.imwrite(str(img_dir / 'a.png'), np.zeros((4, 4), np.uint8))
    cv2.imwrite(str(mask_dir / 'a.png'), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match='single-channel'):
        convert_masks_to_coco(img_dir, mask_dir, tmp_path / 'ann.json')


def test_cli(tmp_path, monkeypatch, capsys):
    img_dir, mask_dir = tmp_path / 'images', tmp_path / 'masks'
    img_dir.mkdir(), mask_dir.mkdir()
    cv2.imwrite(str(img_dir / 'a.png'), np.zeros((20, 30), np.uint16))
    cv2.imwrite(str(mask_dir / 'a.png'), _labels())
    out = tmp_path / 'out' / 'ann.json'
    monkeypatch.setattr('sys.argv', ['medical_to_coco.py', str(img_dir), str(mask_dir),
                                     str(out), '--category', 'cell'])
    runpy.run_path(str(REPO / 'tools/dataset_converters/medical_to_coco.py'),
                   run_name='__main__')
    assert '1 images, 3 instances, 0 negatives' in capsys.readouterr().out
    assert len(_load_json(out)['annotations']) == 3
