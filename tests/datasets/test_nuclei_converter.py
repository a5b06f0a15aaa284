"""Nuclei demo converter on stardist's real image: split, border rule, COCO loading, re-runs."""
import importlib.util
import json
import runpy
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from mmdet.datasets import CocoDataset
from pycocotools import mask as mask_utils

from effdet_plugin.datasets import nuclei
from effdet_plugin.datasets.nuclei import convert_nuclei, stardist_demo_files, tile_starts

REPO = Path(__file__).resolve().parents[2]
SPLIT_X = 384

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec('stardist') is None,
                       reason='stardist (nuclei demo data) is not installed'),
    # pycocotools' decode under numpy 2; not ours
    pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning'),
]


@pytest.fixture(scope='module')
def source():
    img_file, mask_file = stardist_demo_files()
    return tifffile.imread(img_file), tifffile.imread(mask_file)


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp('nuclei')
    return out, convert_nuclei(out)


def _coco(out, split):
    with open(out / 'annotations' / f'instances_{split}.json') as f:
        return json.load(f)


def _majority_ids(labels, inside):
    """Nuclei with at least half of their pixels where ``inside`` is True."""
    ids = np.unique(labels[labels > 0])
    return {int(i) for i in ids if (inside & (labels == i)).sum() * 2 >= (labels == i).sum()}


def test_loads_in_mmdet_coco_dataset_with_the_right_instances(converted, source):
    out, summary = converted
    _, labels = source
    left = np.zeros(labels.shape, bool)
    left[:, :SPLIT_X] = True
    expected = {'train': _majority_ids(labels, left), 'val': _majority_ids(labels, ~left)}
    assert len(expected['train'] | expected['val']) == len(np.unique(labels)) - 1 == 125
    for split in ('train', 'val'):
        dataset = CocoDataset(data_root=str(out), ann_file=f'annotations/instances_{split}.json',
                              data_prefix=dict(img=f'{split}/', seg=f'semantic/{split}/'),
                              metainfo=dict(classes=('nucleus',)), pipeline=[],
                              test_mode=split == 'val')
        instances = [inst for i in range(len(dataset))
                     for inst in dataset.get_data_info(i)['instances']]
        kept = [inst for inst in instances if not inst['ignore_flag']]
        assert len(dataset) == summary[split]['images']
        assert len(kept) == summary[split]['instances'] > 0
        assert len(instances) - len(kept) == summary[split]['ignored']
        kept_ids = {a['nucleus_id'] for a in _coco(out, split)['annotations'] if not a['iscrowd']}
        assert kept_ids == expected[split]
    # the val strip is one image holding each of its nuclei once
    assert summary['val']['images'] == 1 and summary['val']['instances'] == len(expected['val'])
    assert summary['train']['images'] == 4 * 5  # 768x1024 in 256-px tiles, 64-px overlap


def test_train_and_val_regions_are_disjoint(converted, source):
    out, _ = converted
    _, labels = source
    for split in ('train', 'val'):
        for img in _coco(out, split)['images']:
            x0, _, x1, _ = img['source_box']
            assert (x1 <= SPLIT_X) if split == 'train' else (x0 >= SPLIT_X)
    # pixel level: the val semantic mask is exactly the upscaled x >= 384 strip of the labels
    val_sem = cv2.imread(str(out / 'semantic' / 'val' / 'val_000.png'), cv2.IMREAD_UNCHANGED)
    strip = np.repeat(np.repeat(labels[:, SPLIT_X:] > 0, 2, axis=0), 2, axis=1)
    assert np.array_equal(val_sem.astype(bool), strip)


def test_masks_images_and_semantic_maps_agree(converted):
    out, _ = converted
    for split in ('train', 'val'):
        coco = _coco(out, split)
        for img in coco['images']:
            pixels = cv2.imread(str(out / split / img['file_name']), cv2.IMREAD_UNCHANGED)
            assert pixels.shape == (img['height'], img['width'], 3) and pixels.dtype == np.uint8
            sem = cv2.imread(str(out / 'semantic' / split / img['file_name']),
                             cv2.IMREAD_UNCHANGED)
            union = np.zeros(sem.shape, bool)
            for ann in coco['annotations']:
                if ann['image_id'] == img['id']:
                    mask = mask_utils.decode(ann['segmentation']).astype(bool)
                    assert not (union & mask).any()  # instances do not overlap
                    assert (ann['iscrowd'] == 1) == (ann['visible_fraction'] < 0.5)
                    union |= mask
            assert set(np.unique(sem)) <= {0, 1} and np.array_equal(union, sem == 1)


def test_rerun_is_a_no_op_and_changed_options_leave_no_stale_files(tmp_path):
    first = convert_nuclei(tmp_path, upscale=1, tile_size=64, overlap=0)
    pngs = sorted(tmp_path.rglob('*.png'))
    mtimes = [p.stat().st_mtime_ns for p in pngs]
    again = convert_nuclei(tmp_path, upscale=1, tile_size=64, overlap=0)
    assert again['skipped'] and not first['skipped']
    assert {k: v for k, v in again.items() if k != 'skipped'} == \
        {k: v for k, v in first.items() if k != 'skipped'}
    assert [p.stat().st_mtime_ns for p in pngs] == mtimes
    assert first['train']['images'] == 6 * 8 and first['val']['images'] == 1

    (tmp_path / 'train' / 'train_000.png').unlink()  # a missing output forces a rebuild
    assert not convert_nuclei(tmp_path, upscale=1, tile_size=64, overlap=0)['skipped']

    changed = convert_nuclei(tmp_path, upscale=1, tile_size=None, val_tiles=True)
    assert changed['train']['images'] == 1 and changed['val']['images'] == 1
    assert len(list(tmp_path.rglob('*.png'))) == 2 * 2  # image + semantic map per image


def test_val_tiles_have_no_overlap(tmp_path):
    summary = convert_nuclei(tmp_path, upscale=1, tile_size=128, val_tiles=True)
    boxes = [img['source_box'] for img in _coco(tmp_path, 'val')['images']]
    assert summary['val']['images'] == 4
    assert sorted(b[1] for b in boxes) == [0, 128, 256, 384]


def test_tile_starts_cover_the_length_with_full_tiles():
    assert tile_starts(768, 256, 64) == [0, 192, 384, 512]
    assert tile_starts(100, 256, 64) == [0]
    with pytest.raises(ValueError, match='overlap'):
        tile_starts(768, 256, 256)


def test_missing_stardist_says_how_to_fix(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(nuclei.importlib.util, 'find_spec',
                        lambda name, *a: None if name == 'stardist' else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match='make setup'):
        stardist_demo_files()


def test_cli_prints_counts(converted, monkeypatch, capsys):
    out, summary = converted
    monkeypatch.setattr('sys.argv', ['nuclei_to_coco.py', '--out-dir', str(out)])
    runpy.run_path(str(REPO / 'tools/dataset_converters/nuclei_to_coco.py'), run_name='__main__')
    printed = capsys.readouterr().out
    assert 'up to date' in printed
    assert f"{summary['val']['instances']} instances" in printed
