"""configs/medical/*: every config builds, its parts fit together, and it trains + evaluates.

Training runs 2 iterations of batch 2 on 128x128 crops of a small nuclei conversion (upscale 1,
128-px tiles) written to a temporary folder, then evaluates on its 128x512 val strip with the
config's own evaluator.
"""
import importlib.util
import uuid
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p.relative_to(REPO).as_posix()
                 for p in (REPO / 'configs' / 'medical').glob('*.py'))
INSTANCE = [c for c in CONFIGS if 'mask-rcnn' in c or 'rtmdet-ins' in c]
SEMANTIC = [c for c in CONFIGS if '-seg_' in c or '-detseg_' in c]
# Lite1/Lite2 train through the same detection path as Lite0 with a wider backbone: their
# training runs are slow-tier; every config is still built and checked in the fast tier.
LARGER_BACKBONES = [c for c in CONFIGS if Path(c).stem in ('effdet-lite1_nuclei',
                                                           'effdet-lite2_nuclei')]
CROP = (128, 128)

pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::UserWarning')


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    """Config paths (checkpoints/, data/) are relative to the repository root."""
    monkeypatch.chdir(REPO)
    register_all_modules()
    import effdet_plugin  # noqa: F401


@pytest.fixture(scope='module')
def small_nuclei(tmp_path_factory) -> Path:
    if importlib.util.find_spec('stardist') is None:
        pytest.skip('stardist (nuclei demo data) is not installed')
    from effdet_plugin.datasets.nuclei import convert_nuclei
    out = tmp_path_factory.mktemp('nuclei_small')
    convert_nuclei(out, upscale=1.0, tile_size=128, overlap=0)
    return out


def tiny_cfg(config: str, data_root: Path, work_dir: Path) -> Config:
    """``config`` shrunk to 2 iterations of batch 2 on 128-px crops of ``data_root``."""
    cfg = Config.fromfile(config)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'tiny_{uuid.uuid4().hex[:8]}'
    cfg.log_level = 'WARNING'
    if not (REPO / cfg.model.backbone.init_cfg.checkpoint).is_file():
        cfg.model.backbone.init_cfg = None
    cfg.train_cfg.update(max_iters=2, val_interval=2)
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=2)]
    cfg.default_hooks.checkpoint.update(interval=2)
    root = f'{data_root}/'
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[name].update(num_workers=0, persistent_workers=False)
        cfg[name].dataset.data_root = root
    cfg.train_dataloader.batch_size = 2
    for step in cfg.train_dataloader.dataset.pipeline:
        if step.type == 'RandomResize':
            step.scale = CROP
        elif step.type == 'RandomCrop':
            step.crop_size = CROP
    evaluators = cfg.val_evaluator if isinstance(cfg.val_evaluator, list) else [cfg.val_evaluator]
    for evaluator in evaluators:
        if 'ann_file' in evaluator:
            evaluator.ann_file = root + 'annotations/instances_val.json'
    cfg.test_evaluator = cfg.val_evaluator
    # an untrained model scores below the configs' thresholds: keep every prediction so that
    # the evaluation code runs on real detections and masks
    for test_cfg in (cfg.model.get('test_cfg') or {}, cfg.model.get('test_cfg', {}).get('rcnn')):
        if test_cfg and 'score_thr' in test_cfg:
            test_cfg.update(score_thr=0.0, max_per_img=20)
    return cfg


def test_the_configs_of_the_issue_exist():
    names = {Path(c).stem for c in CONFIGS}
    assert {'effdet-lite0_nuclei', 'mask-rcnn_effnet-lite0_bifpn-p2_nuclei',
            'rtmdet-ins_effnet-lite0_bifpn-p2_nuclei', 'effdet-lite0-seg_nuclei',
            'effdet-lite0-detseg_nuclei'} <= names
    assert len(INSTANCE) == 2 and len(SEMANTIC) == 2 and len(LARGER_BACKBONES) == 2


@pytest.mark.parametrize('config', CONFIGS)
def test_builds_with_medical_loading_albu_and_strides_that_fit(config):
    cfg = Config.fromfile(config)
    steps = [s.type for s in cfg.train_dataloader.dataset.pipeline]
    assert steps[0] == 'LoadMedicalImageFromFile' and 'AlbuCompat' in steps
    assert cfg.val_dataloader.dataset.pipeline[0].type == 'LoadMedicalImageFromFile'
    init = cfg.model.backbone.init_cfg
    assert init.type == 'Pretrained'
    assert init.checkpoint == f'checkpoints/effnet_{cfg.model.backbone.arch}_imagenet.pth'

    model = MODELS.build(cfg.model)
    # EfficientDet's BN momentum 0.01 leaves running statistics near their init after a few
    # hundred iterations: the short schedules need 0.1 everywhere
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(m.momentum == 0.1 for m in norms)
    neck_strides = list(model.neck.strides)
    assert list(model.backbone.out_channels) == list(model.neck.in_channels)
    if hasattr(model, 'rpn_head'):  # two-stage: anchors and RoI extractors read neck levels
        assert [s[0] for s in model.rpn_head.prior_generator.strides] == neck_strides
        for extractor in (model.roi_head.bbox_roi_extractor, model.roi_head.mask_roi_extractor):
            assert list(extractor.featmap_strides) == neck_strides[:len(extractor.roi_layers)]
        assert neck_strides[0] == 4  # stride-4 level for the small nuclei
    if getattr(model, 'bbox_head', None) is not None:
        head_strides = [s[0] for s in model.bbox_head.prior_generator.strides]
        assert head_strides == neck_strides
    if getattr(model, 'seg_head', None) is not None:
        assert list(model.seg_head.featmap_strides) == neck_strides
        assert model.seg_head.num_classes == 2


@pytest.mark.parametrize('config', [
    pytest.param(c, marks=pytest.mark.slow) if c in LARGER_BACKBONES else c for c in CONFIGS])
def test_trains_two_iterations_and_evaluates(config, small_nuclei, tmp_path):
    from mmengine.runner import Runner

    torch.manual_seed(0)
    cfg = tiny_cfg(config, small_nuclei, tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert (tmp_path / 'iter_2.pth').is_file()
    metrics = runner.val()
    if config in INSTANCE:
        assert {'coco/bbox_mAP_50', 'coco/segm_mAP_50'} <= set(metrics)
    elif config in SEMANTIC:
        assert 0 <= metrics['semseg/IoU.nucleus'] <= 100
        assert ('coco/bbox_mAP' in metrics) == ('detseg' in config)
    else:
        assert 'coco/bbox_mAP_50' in metrics and 'coco/segm_mAP' not in metrics


def _albu_inputs(num: int, shape=(64, 96)) -> dict:
    import numpy as np
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import BitmapMasks
    masks = np.zeros((num, ) + shape, np.uint8)
    for i in range(num):
        masks[i, 8 + 20 * i:20 + 20 * i, 10 + 30 * i:40 + 30 * i] = 1
    return dict(
        img=np.random.RandomState(0).randint(0, 255, shape + (3, ), np.uint8),
        gt_bboxes=BitmapMasks(masks, *shape).get_bboxes(HorizontalBoxes),
        gt_bboxes_labels=np.zeros(num, np.int64), gt_ignore_flags=np.zeros(num, bool),
        gt_masks=BitmapMasks(masks, *shape), gt_seg_map=masks.max(0, initial=0),
        img_shape=shape)


def _albu(transforms):
    from mmdet.registry import TRANSFORMS
    return TRANSFORMS.build(
        dict(type='AlbuCompat', transforms=transforms,
             bbox_params=dict(type='BboxParams', format='pascal_voc',
                              label_fields=['gt_bboxes_labels', 'gt_ignore_flags'],
                              filter_lost_elements=True)))


def test_albu_compat_keeps_masks_boxes_and_semantic_map_together():
    """What the medical pipelines rely on, where mmdet 3.3's ``Albu`` fails: a rotation of a
    non-square image, the semantic map, an image without instances."""
    import numpy as np
    from mmdet.structures.bbox import HorizontalBoxes
    out = _albu([dict(type='RandomRotate90', p=1.0), dict(type='CLAHE', p=1.0)])(
        _albu_inputs(2))
    rotated = out['img'].shape[:2]
    assert rotated in ((64, 96), (96, 64))  # k=0..3 quarter turns
    masks = out['gt_masks']
    assert (masks.height, masks.width) == rotated and masks.masks.shape[1:] == rotated
    assert out['gt_seg_map'].shape == rotated
    np.testing.assert_array_equal(masks.masks.max(0), out['gt_seg_map'])
    np.testing.assert_array_equal(out['gt_bboxes'].tensor,
                                  masks.get_bboxes(HorizontalBoxes).tensor)
    assert out['gt_bboxes_labels'].dtype == np.int64 and out['gt_ignore_flags'].dtype == bool

    empty = _albu([dict(type='ElasticTransform', p=1.0)])(_albu_inputs(0))
    assert len(empty['gt_masks']) == 0 and empty['gt_masks'].masks.shape == (0, 64, 96)
    assert empty['gt_bboxes'].tensor.shape == (0, 4)
    assert empty['gt_bboxes_labels'].dtype == np.int64
