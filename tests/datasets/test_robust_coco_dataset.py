"""RobustCocoDataset + LoadMedicalImageFromFile on a small dataset with every kind of defect."""
import json
import logging
import warnings

import cv2
import numpy as np
import pytest
from mmdet.registry import DATASETS
from mmdet.utils import register_all_modules
from mmengine.registry import DefaultScope

import effdet_plugin  # noqa: F401  (registers RobustCocoDataset, LoadMedicalImageFromFile)
from effdet_plugin.datasets.checks import AnnotationError
from effdet_plugin.datasets.image_io import ImageReadError
from tests.conftest import log_messages

register_all_modules(init_default_scope=False)  # mmdet's own transforms, by name

H, W = 40, 50


@pytest.fixture(autouse=True)
def _mmdet_scope():
    """Pipelines resolve transform names in the default scope, 'mmdet' as in our configs."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


@pytest.fixture
def logged():
    """Warnings that reach the run's log (mmengine's current logger)."""
    with log_messages(level=logging.WARNING) as messages:
        yield messages


@pytest.fixture
def defective(tmp_path):
    """Images: 16-bit gray, 8-bit RGB, one without annotations, one with only a degenerate
    box, and one corrupt file. Boxes: inside, half outside, degenerate, fully outside."""
    root = tmp_path / 'data'
    (root / 'images').mkdir(parents=True)
    cv2.imwrite(str(root / 'images' / 'gray16.png'),
                np.linspace(0, 60000, H * W).reshape(H, W).astype(np.uint16))
    cv2.imwrite(str(root / 'images' / 'rgb8.png'), np.full((H, W, 3), 100, np.uint8))
    cv2.imwrite(str(root / 'images' / 'empty.png'), np.zeros((H, W), np.uint8))
    cv2.imwrite(str(root / 'images' / 'degenerate.png'), np.zeros((H, W), np.uint8))
    (root / 'images' / 'corrupt.png').write_bytes(b'not an image at all')
    names = ['gray16.png', 'rgb8.png', 'empty.png', 'degenerate.png', 'corrupt.png']
    images = [dict(id=i + 1, file_name=n, height=H, width=W) for i, n in enumerate(names)]
    boxes = [(1, [5, 5, 10, 10]),      # inside
             (1, [40, 30, 20, 20]),    # reaches past the right/bottom border -> clipped
             (1, [-5, -5, 3, 3]),      # outside, nothing left after clipping -> dropped
             (1, [60, 10, 5, 5]),      # fully outside -> dropped
             (2, [0, 0, 50, 40]),
             (4, [10, 39.5, 10, 4]),   # 0.5 px tall after clipping -> dropped
             (5, [1, 1, 5, 5])]
    anns = [dict(id=i + 1, image_id=img, category_id=1, bbox=b, area=b[2] * b[3], iscrowd=0)
            for i, (img, b) in enumerate(boxes)]
    with open(root / 'ann.json', 'w') as f:
        json.dump(dict(images=images, annotations=anns,
                       categories=[dict(id=1, name='lesion')]), f)
    return root


def _build(root, **kwargs):
    cfg = dict(type='RobustCocoDataset', data_root=str(root), ann_file='ann.json',
               data_prefix=dict(img='images/'), metainfo=dict(classes=('lesion',)),
               pipeline=[])
    cfg.update(kwargs)
    return DATASETS.build(cfg)


def _by_name(dataset):
    return {d['img_path'].rsplit('/', 1)[-1]: d for d in
            (dataset.get_data_info(i) for i in range(len(dataset)))}


def test_out_of_image_boxes_are_clipped_and_degenerate_ones_dropped(defective, logged):
    dataset = _build(defective)
    assert len(logged) == 1
    assert '1 box(es) clipped to the image' in logged[0]
    assert '3 degenerate box(es) dropped' in logged[0]
    infos = _by_name(dataset)
    assert [inst['bbox'] for inst in infos['gray16.png']['instances']] == \
        [[5, 5, 15, 15], [40, 30, 50, 40]]
    assert infos['degenerate.png']['instances'] == []


def test_images_without_annotations_are_kept_unless_filtered(defective):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        kept = _build(defective)
        filtered = _build(defective, filter_cfg=dict(filter_empty_gt=True))
        evaluated = _build(defective, filter_cfg=dict(filter_empty_gt=True), test_mode=True)
    assert len(kept) == len(evaluated) == 5
    # 'degenerate.png' has an annotation, but none survives the cleaning: filtered too
    assert sorted(_by_name(filtered)) == ['corrupt.png', 'gray16.png', 'rgb8.png']


def test_unknown_paths_say_where_data_are_expected(tmp_path, defective):
    with pytest.raises(FileNotFoundError, match=r"nowhere/annotations/x\.json.*data/README\.md"):
        _build(tmp_path / 'nowhere', ann_file='annotations/x.json')
    with pytest.raises(FileNotFoundError, match=r"image folder .*train2017.*data/README\.md"):
        _build(defective, data_prefix=dict(img='train2017/'))


def _pipeline(**load_kwargs):
    return [dict(type='LoadMedicalImageFromFile', window='minmax', **load_kwargs),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(type='PackDetInputs')]


def test_gray_16bit_and_rgb_images_load_through_the_pipeline(defective):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        dataset = _build(defective, pipeline=_pipeline(), test_mode=True)
    gray, rgb = dataset[0], dataset[1]
    assert gray['inputs'].shape == rgb['inputs'].shape == (3, H, W)
    # 16-bit ramp: full 8-bit range used, no truncation to the high byte
    assert gray['inputs'].min() == 0 and gray['inputs'].max() == 255
    assert len(gray['inputs'][0].unique()) > 200
    assert gray['data_samples'].gt_instances.bboxes.tensor.tolist() == \
        [[5, 5, 15, 15], [40, 30, 50, 40]]


def test_corrupt_image_fails_by_name_or_is_skipped_when_configured(defective):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        strict = _build(defective, pipeline=_pipeline())
        lenient = _build(defective, pipeline=_pipeline(ignore_empty=True))
    corrupt = list(_by_name(strict)).index('corrupt.png')
    with pytest.raises(OSError, match='corrupt.png'):
        strict[corrupt]
    with pytest.warns(UserWarning, match='skipping sample.*corrupt.png'):
        sample = lenient[corrupt]  # training mode: mmengine fetches another image instead
    assert 'corrupt.png' not in sample['data_samples'].img_path


def _write_ann(root, edit):
    with open(root / 'ann.json') as f:
        coco = json.load(f)
    edit(coco)
    with open(root / 'ann.json', 'w') as f:
        json.dump(coco, f)


def test_log_counts_what_mmdet_would_drop_silently(defective, logged):
    def edit(coco):
        coco['categories'].append(dict(id=2, name='cyst'))
        coco['annotations'][0]['category_id'] = 7   # id not in categories
        coco['annotations'][4]['category_id'] = 2   # a category not in the classes
    _write_ann(defective, edit)
    _build(defective, filter_cfg=dict(filter_empty_gt=True))
    (message, ) = logged
    assert message.startswith(f"RobustCocoDataset({defective / 'ann.json'}, training): "
                              '2 image(s), 2 usable annotation(s) of 7 in the file')
    assert '1 annotation(s) with a category id not in categories dropped (id: count 7: 1)' \
        in message
    assert '1 annotation(s) of categories not in the config classes dropped (cyst: 1)' \
        in message
    # rgb8.png lost its only annotation; empty.png never had one
    assert '2/5 image(s) without any usable annotation' in message
    assert "3 image(s) filtered out by filter_cfg={'filter_empty_gt': True}" in message


def test_no_usable_annotation_stops_training_only(defective, logged):
    _write_ann(defective, lambda coco: [a.update(bbox=[60, 50, 5, 5])
                                        for a in coco['annotations']])  # all outside
    with pytest.raises(AnnotationError, match=r'0 usable annotation\(s\) of 7 in the file: '
                       r'nothing to train on \(.*7 degenerate box\(es\) dropped'):
        _build(defective)
    assert len(_build(defective, test_mode=True)) == 5  # evaluation: logged, not fatal
    assert '0 usable annotation(s)' in logged[-1]


def test_wrong_classes_and_truncated_file_are_named(defective):
    with pytest.raises(AnnotationError, match=r"config classes \['tumour'\], file categories "
                       r"\['lesion'\]"):
        _build(defective, metainfo=dict(classes=('tumour', )))
    text = (defective / 'ann.json').read_text()
    (defective / 'ann.json').write_text(text[:len(text) // 2])
    with pytest.raises(AnnotationError, match=r"ann\.json' \(\d+ bytes\) is not valid JSON"):
        _build(defective)


def _mmcv_pipeline(**kwargs):
    return [dict(type='LoadImageFromFile', **kwargs), dict(type='LoadAnnotations', with_bbox=True),
            dict(type='PackDetInputs')]


def test_mmcv_loader_refuses_16bit_images(defective):
    dataset = _build(defective, pipeline=_mmcv_pipeline())
    gray16 = list(_by_name(dataset)).index('gray16.png')
    with pytest.raises(ImageReadError, match=r"gray16\.png' stores 16-bit values.*"
                       r"LoadMedicalImageFromFile"):
        dataset[gray16]
    rgb8 = list(_by_name(dataset)).index('rgb8.png')
    assert dataset[rgb8]['inputs'].shape == (3, H, W)


def test_mmcv_ignore_empty_skips_are_named_and_counted(defective, logged):
    (defective / 'images' / 'rgb8.png').unlink()
    lenient = _build(defective, pipeline=_mmcv_pipeline(ignore_empty=True))
    names = list(_by_name(lenient))
    assert lenient.prepare_data(names.index('rgb8.png')) is None
    assert lenient.prepare_data(names.index('corrupt.png')) is None  # mmcv would assert
    skips = [m for m in logged if m.startswith('skipping sample')]
    assert len(skips) == 2
    assert "rgb8.png' is missing" in skips[0] and '1 skipped so far' in skips[0]
    assert "corrupt.png' cannot be decoded" in skips[1] and '2 skipped so far' in skips[1]
    evaluated = _build(defective, pipeline=_mmcv_pipeline(ignore_empty=True), test_mode=True)
    with pytest.raises(ImageReadError, match=r"rgb8\.png' is missing \(test_mode"):
        evaluated.prepare_data(names.index('rgb8.png'))
