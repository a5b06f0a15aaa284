"""RobustCocoDataset + LoadMedicalImageFromFile on a small dataset with every kind of defect."""
import json
import warnings

import cv2
import numpy as np
import pytest
from mmdet.registry import DATASETS
from mmdet.utils import register_all_modules
from mmengine.registry import DefaultScope

import effdet_plugin  # noqa: F401  (registers RobustCocoDataset, LoadMedicalImageFromFile)

register_all_modules(init_default_scope=False)  # mmdet's own transforms, by name

H, W = 40, 50


@pytest.fixture(autouse=True)
def _mmdet_scope():
    """Pipelines resolve transform names in the default scope, 'mmdet' as in our configs."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


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


def test_out_of_image_boxes_are_clipped_and_degenerate_ones_dropped(defective):
    with pytest.warns(UserWarning, match=r'clipped 1 box\(es\).*dropped 3 degenerate'):
        dataset = _build(defective)
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
