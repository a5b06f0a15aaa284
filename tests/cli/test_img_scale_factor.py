"""--img-scale-factor: every split resized by one factor around its native size, kept in the
work dir's config, and predictions mapped back to the original pixels."""
import numpy as np
import pytest
from mmengine.config import Config

from effdet_plugin.cli.data_options import apply_data_options, split_datasets
from effdet_plugin.cli.runner import load_config
from tests.data_helpers import data_args, shape_flags

DEMO = 'configs/demo/effdet_lite0_nuclei.py'
COCO = 'configs/effdet_lite0_coco.py'
MASK_RCNN = 'configs/medical/mask-rcnn_effnet-lite0_bifpn-p2_nuclei.py'


def _resize_steps(cfg):
    return {split: [dict(step) for step in split_datasets(cfg, split)[0][1].pipeline
                    if 'Resize' in step['type'] or step['type'] == 'ScaleJitter']
            for split in ('train', 'val', 'test')}


def test_every_split_gets_the_factor_and_reloading_keeps_it(shapes):
    cfg = load_config(DEMO, data_args=data_args(*shape_flags(shapes, '--img-scale-factor',
                                                            '2')))
    steps = _resize_steps(cfg)
    assert steps['train'] == [dict(type='ScaleJitter', ratio_range=(0.8, 1.25), factor=2.0)]
    for split in ('val', 'test'):
        assert steps[split] == [dict(type='Resize', scale_factor=2.0, keep_ratio=True)]
    assert cfg.data.img_scale_factor == 2.0
    # the work dir's config, read again by test.py / infer.py: applied once, not twice
    dumped = Config.fromstring(cfg.pretty_text, '.py')
    apply_data_options(dumped)
    assert _resize_steps(dumped) == steps


def test_fixed_size_configs_resize_around_the_native_size_too():
    cfg = Config.fromfile(COCO)
    apply_data_options(cfg, data_args('--img-scale-factor', '1.5'))
    steps = _resize_steps(cfg)
    jitter, = steps['train']
    assert jitter['type'] == 'ScaleJitter' and jitter['factor'] == 1.5
    assert jitter['ratio_range'] == (0.1, 2.0)  # the config's jitter, kept
    assert steps['test'] == [dict(type='Resize', scale_factor=1.5, keep_ratio=True)]


def test_factor_and_fixed_size_exclude_each_other():
    cfg = Config.fromfile(DEMO)
    with pytest.raises(ValueError, match='exclude each other'):
        apply_data_options(cfg, data_args('--img-scale', '512', '512', '--img-scale-factor',
                                          '2'))
    with pytest.raises(ValueError, match='must be > 0'):
        apply_data_options(Config.fromfile(DEMO), data_args('--img-scale-factor', '0'))


def test_objects_are_factor_times_larger_in_every_split(shapes):
    from mmdet.utils import register_all_modules

    import effdet_plugin  # noqa: F401
    from effdet_plugin.datasets.checks import dataset_stats
    register_all_modules()
    cfg = load_config(DEMO, data_args=data_args(*shape_flags(shapes, '--classes', 'from-json',
                                                            '--img-scale-factor', '2')))
    train, test = dataset_stats(cfg, ('train', 'test'), samples=4)
    assert sorted(test.pipeline_sizes) == pytest.approx(sorted(2 * s for s in
                                                                test.annotated_sizes), rel=0.01)
    ratio = np.mean(train.pipeline_sizes) / np.mean(train.annotated_sizes)
    assert 2 * 0.8 < ratio < 2 * 1.25


def test_predictions_come_back_in_original_pixels(shapes):
    """Boxes and masks of a model run at 2x are in the image's own pixels (what infer.py
    writes and draws)."""
    import cv2
    from mmdet.apis import inference_detector, init_detector
    from mmdet.utils import get_test_pipeline_cfg, register_all_modules
    from mmengine.dataset import Compose

    import effdet_plugin  # noqa: F401
    register_all_modules()
    cfg = load_config(MASK_RCNN, data_args=data_args(*shape_flags(shapes, '--classes',
                                                                'from-json',
                                                                '--img-scale-factor', '2')))
    cfg.model.backbone.pop('init_cfg', None)
    cfg.model.test_cfg.rcnn.score_thr = 0.0  # random weights: keep the boxes there are
    model = init_detector(cfg, None, device='cpu')
    img = cv2.imread(str(shapes / 'images' / 'val_000.png'))
    pipeline = Compose([dict(type='mmdet.LoadImageFromNDArray')]
                       + get_test_pipeline_cfg(cfg)[1:])
    result = inference_detector(model, img, test_pipeline=pipeline)
    assert result.metainfo['scale_factor'] == pytest.approx((2.0, 2.0))
    height, width = img.shape[:2]
    assert result.metainfo['img_shape'] == (2 * height, 2 * width)
    inst = result.pred_instances
    assert len(inst) > 0
    boxes = inst.bboxes.numpy()
    assert boxes[:, [0, 2]].max() <= width and boxes[:, [1, 3]].max() <= height
    assert tuple(inst.masks.shape[-2:]) == (height, width)
