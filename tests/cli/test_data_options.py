"""One set of data options moves every loader, evaluator, head and resize of a config."""
import json

import numpy as np
import pytest
from mmengine.config import Config

from effdet_plugin.cli.data_options import (
    apply_data_options,
    split_datasets,
    split_evaluators,
)
from effdet_plugin.cli.runner import load_config
from effdet_plugin.datasets.checks import (
    DatasetNotFoundError,
    check_dataset_paths,
    check_evaluator_ann_files,
)
from effdet_plugin.datasets.shapes import SHAPE_CLASSES
from tests.data_helpers import data_args, shape_flags

DEMO = 'configs/demo/effdet_lite0_nuclei.py'
DETSEG = 'configs/medical/effdet-lite0-detseg_nuclei.py'
MASK_RCNN = 'configs/medical/mask-rcnn_effnet-lite0_bifpn-p2_nuclei.py'


def test_flags_reach_every_loader_evaluator_and_head(shapes):
    cfg = load_config(MASK_RCNN, data_args=data_args(*shape_flags(shapes, '--classes',
                                                                'from-json')))
    names = tuple(name for name, _, _ in SHAPE_CLASSES)
    for split, ann in (('train', 'train'), ('val', 'val'), ('test', 'val')):
        (_, dataset), = split_datasets(cfg, split)
        assert dataset.data_root == f'{shapes}/'
        assert dataset.ann_file == f'annotations/{ann}.json'
        assert dataset.data_prefix.img == 'images/'
        assert tuple(dataset.metainfo.classes) == names  # the json's category order
    for split in ('val', 'test'):
        (_, metric), = split_evaluators(cfg, split)
        assert metric.ann_file == f'{shapes}/annotations/val.json'
    heads = cfg.model.roi_head
    assert heads.bbox_head.num_classes == heads.mask_head.num_classes == 2
    assert 'num_classes' not in cfg.model.rpn_head or cfg.model.rpn_head.num_classes == 1
    check_dataset_paths(cfg, ('train', 'val', 'test'))
    check_evaluator_ann_files(cfg)
    # the dumped config (what the work dir keeps) names the same data
    dumped = Config.fromstring(cfg.pretty_text, '.py')
    assert dumped.data.classes == list(names) and dumped.data.root == f'{shapes}/'


def test_list_of_evaluators_and_semantic_head(shapes):
    cfg = load_config(DETSEG, data_args=data_args(*shape_flags(shapes, '--test-ann',
                                                            'annotations/train.json')))
    files = {key: m.get('ann_file') for key, m in split_evaluators(cfg, 'test')}
    assert files['test_evaluator[0]'] == f'{shapes}/annotations/train.json'
    assert files['test_evaluator[1]'] is None  # the semantic metric reads no json
    assert cfg.model.seg_head.num_classes == 2  # background + nucleus, untouched
    check_evaluator_ann_files(cfg)


def test_prefix_per_split_classes_by_name_and_block(shapes):
    cfg = Config.fromfile(DEMO)
    cfg.data = dict(root=f'{shapes}/', val_ann='annotations/val.json', classes=['a', 'b'])
    options = apply_data_options(cfg, data_args('--img-prefix', 'tr/', 'va/',
                                            '--classes', 'x', 'y', 'z'))
    assert options['classes'] == ['x', 'y', 'z']  # the flag wins over the block
    assert [split_datasets(cfg, s)[0][1].data_prefix.img for s in ('train', 'val', 'test')] \
        == ['tr/', 'va/', 'va/']
    assert split_datasets(cfg, 'train')[0][1].ann_file == 'annotations/instances_train.json'
    assert cfg.model.bbox_head.num_classes == 3
    cfg.data = dict(rooot='x')
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['rooot'\]"):
        apply_data_options(cfg)


def test_img_scale_moves_train_jitter_and_test_resize_together():
    cfg = load_config(DEMO, data_args=data_args('--img-scale', '512', '384'))
    train = {s['type']: s for s in split_datasets(cfg, 'train')[0][1].pipeline}
    test = {s['type']: s for s in split_datasets(cfg, 'test')[0][1].pipeline}
    assert tuple(train['ScaleJitter']['scale']) == (512, 384)
    assert tuple(test['Resize']['scale']) == (512, 384) and 'scale_factor' not in test['Resize']
    assert test['Resize']['keep_ratio']


def test_base_variable_override_is_caught(shapes):
    """--cfg-options data_root=... changes nothing built from it; moving only the loader
    leaves the evaluator on the old file: that stops with both names."""
    cfg = load_config(DEMO, {'data_root': f'{shapes}/'})
    assert split_datasets(cfg, 'val')[0][1].data_root == 'data/nuclei/'
    cfg = load_config(DEMO, {'val_dataloader.dataset.data_root': f'{shapes}/',
                             'val_dataloader.dataset.ann_file': 'annotations/val.json'})
    with pytest.raises(ValueError) as info:
        check_evaluator_ann_files(cfg, ('val', ))
    message = str(info.value)
    assert "val_evaluator.ann_file 'data/nuclei/annotations/instances_val.json'" in message
    assert f"'{shapes}/annotations/val.json'" in message and '--data-root' in message


def test_missing_dataset_hint_names_the_evaluator(tmp_path):
    cfg = load_config(DEMO, data_args=data_args('--data-root', f'{tmp_path}/nowhere/'))
    with pytest.raises(DatasetNotFoundError) as info:
        check_dataset_paths(cfg, ('test', ))
    message = str(info.value)
    assert 'test_evaluator.ann_file' in message and '--data-root' in message
    assert f'{tmp_path}/nowhere/annotations/instances_val.json' in message


def test_classes_from_json_without_categories(tmp_path):
    (tmp_path / 'a.json').write_text(json.dumps(dict(images=[], annotations=[])))
    cfg = Config.fromfile(DEMO)
    with pytest.raises(ValueError, match='has no categories'):
        apply_data_options(cfg, data_args('--data-root', str(tmp_path), '--train-ann', 'a.json',
                                      '--classes', 'from-json'))


def test_scale_jitter_is_around_the_native_size():
    from effdet_plugin.datasets.transforms import ScaleJitter
    np.random.seed(0)
    jitter = ScaleJitter(ratio_range=(0.8, 1.25))
    shapes = [jitter(dict(img=np.zeros((400, 600, 3), np.uint8)))['img'].shape[:2]
              for _ in range(30)]
    widths = np.array([w for _, w in shapes])
    assert widths.min() >= 480 and widths.max() <= 750 and widths.std() > 20
    assert all(abs(h / w - 400 / 600) < 0.01 for h, w in shapes)
    # around a target: a 600x400 image fitted into 300x300 is halved first
    fitted = ScaleJitter(ratio_range=(1.0, 1.0), scale=(300, 300))
    out = fitted(dict(img=np.zeros((400, 600, 3), np.uint8),
                      gt_bboxes=np.array([[60, 40, 120, 100]], np.float32)))
    assert out['img'].shape[:2] == (200, 300)
    np.testing.assert_allclose(out['gt_bboxes'], [[30, 20, 60, 50]])
    with pytest.raises(ValueError, match='ratio_range'):
        ScaleJitter(ratio_range=(1.2, 0.8))


def test_window_reads_every_split_with_the_medical_loader():
    cfg = load_config(DEMO, data_args=data_args('--window', 'percentile'))
    for split in ('train', 'val', 'test'):
        first = split_datasets(cfg, split)[0][1].pipeline[0]
        assert first == dict(type='LoadMedicalImageFromFile', window='percentile')
    cfg = Config.fromfile(DEMO)
    cfg.data = dict(window=dict(window='fixed', value_range=(0, 4095)))
    apply_data_options(cfg)
    first = split_datasets(cfg, 'test')[0][1].pipeline[0]
    assert first['window'] == 'fixed' and tuple(first['value_range']) == (0, 4095)


def test_window_keeps_the_loader_arguments_and_fixed_needs_a_range():
    cfg = Config.fromfile(DETSEG)
    loader = dict(type='LoadMedicalImageFromFile', window='fixed', value_range=(0, 4095),
                  color_type='grayscale')
    for split in ('train', 'val', 'test'):
        split_datasets(cfg, split)[0][1].pipeline[0] = dict(loader)
    cfg.data = dict(window='fixed')
    apply_data_options(cfg)  # 'fixed' as the config's loader has it: its range is kept
    assert split_datasets(cfg, 'test')[0][1].pipeline[0] == loader
    cfg.data = dict(window='percentile')
    apply_data_options(cfg)
    assert split_datasets(cfg, 'train')[0][1].pipeline[0] == dict(loader, window='percentile')
    # mmcv's loader has no range to keep: 'fixed' stops before any run, naming the fix
    cfg = Config.fromfile(DEMO)
    split_datasets(cfg, 'train')[0][1].pipeline[0] = dict(type='LoadImageFromFile',
                                                          ignore_empty=True)
    with pytest.raises(ValueError, match=r"value_range=\(min, max\).*data = dict\(window=dict"
                       r"\(window='fixed', value_range="):
        apply_data_options(cfg, data_args('--window', 'fixed'))
    apply_data_options(cfg, data_args('--window', 'minmax'))
    assert split_datasets(cfg, 'train')[0][1].pipeline[0] == dict(
        type='LoadMedicalImageFromFile', ignore_empty=True, window='minmax')
