"""Official-weight conversion (tools/convert_effdet_weights.py) and class-count changes on load.

effdet models are random (``pretrained=False``) with randomised norms and prediction convs
scaled so that scores spread over (0, 1): a mis-mapped tensor, class row or box coordinate
changes the outputs. Nothing is downloaded.
"""
import copy
import logging
from pathlib import Path
from types import SimpleNamespace

import effdet
import pytest
import torch
import torch.nn as nn
from effdet.config.model_config import efficientdet_model_param_dict
from effdet.data import resolve_input_config
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger
from mmengine.runner import load_checkpoint

from benchmarks.parity import realistic_effdet_predictions
from effdet_plugin.checkpoint.effdet_release import (
    COCO80_CATEGORY_IDS,
    config_overrides,
    effdet_preprocessing,
    parse_effdet_name,
)
from effdet_plugin.checkpoint.efficientdet import infer_variant
from effdet_plugin.engine.hooks import PretrainedInputCheckHook
from effdet_plugin.models.utils import checkpoint_classes

register_all_modules()

REPO = Path(__file__).resolve().parents[2]
TOL = 1e-4
SIZE = 128  # every level down to P7 (1x1) exists


def _load_tool():
    from effdet_plugin.cli import convert_effdet_weights
    return convert_effdet_weights


tool = _load_tool()


def _random_effdet(name: str, seed: int = 0) -> nn.Module:
    """Random effdet model with non-trivial norms and spread-out class/box predictions."""
    torch.manual_seed(seed)
    ref = effdet.create_model(name, pretrained=False, pretrained_backbone=False,
                              image_size=(SIZE, SIZE))
    return realistic_effdet_predictions(ref, SIZE, seed)


def _build_ours(checkpoint_path: str, meta: dict, **model_overrides) -> nn.Module:
    cfg = Config.fromfile(str(REPO / meta['config']))
    cfg.merge_from_dict(meta['cfg_options'])
    cfg.model.update(model_overrides)
    model = MODELS.build(cfg.model)
    load_checkpoint(model, checkpoint_path, map_location='cpu', logger='silent')
    return model.eval()


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    """{variant: (effdet model, our model, meta)} for d0, converted through the CLI."""
    out = {}
    root = tmp_path_factory.mktemp('effdet_ckpt')
    for name in ('tf_efficientdet_d0', 'tf_efficientdet_lite0'):
        ref = _random_effdet(name)
        src = root / f'{name}_random-00000000.pth'  # release-style file name
        torch.save(ref.state_dict(), src)
        dst = root / f'{name}_ours.pth'
        assert tool.main([str(src), str(dst)]) == 0
        ckpt = torch.load(dst, map_location='cpu', weights_only=True)
        out[name] = (ref, _build_ours(str(dst), ckpt['meta']), ckpt['meta'], dst)
    return out


def _coco80(t: torch.Tensor, per: int) -> torch.Tensor:
    """effdet (N, A * 90, H, W) class logits -> the 80 mmdet COCO classes, same layout."""
    sel = torch.tensor([i - 1 for i in COCO80_CATEGORY_IDS])
    return t.reshape(t.shape[0], -1, per, *t.shape[2:])[:, :, sel].flatten(1, 2)


def _box_to_xy(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1, 4, *t.shape[2:])[:, :, [1, 0, 3, 2]].flatten(1, 2)


@pytest.mark.parametrize('name', ['tf_efficientdet_d0', 'tf_efficientdet_lite0'])
def test_raw_outputs_match_effdet(converted, name):
    ref, ours, meta, _ = converted[name]
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref_cls, ref_box = ref(x)
        cls, box = ours(x, mode='tensor')
    assert len(cls) == len(ref_cls) == 5
    d_cls = max((a - _coco80(b, 90)).abs().max().item() for a, b in zip(cls, ref_cls))
    d_box = max((a - _box_to_xy(b)).abs().max().item() for a, b in zip(box, ref_box))
    assert d_cls < TOL and d_box < TOL, (d_cls, d_box)
    assert max(t.abs().max().item() for t in ref_cls) > 3  # far from a trivial output


def test_meta_and_config_hints(converted):
    meta = converted['tf_efficientdet_d0'][2]
    assert meta['variant'] == 'd0' and meta['config'] == 'configs/effdet_b0_coco.py'
    assert meta['cfg_options'] == {} and meta['num_classes'] == 80
    assert meta['dataset_meta']['classes'][11] == 'stop sign'  # COCO id 13 (12 is unused)
    lite = converted['tf_efficientdet_lite0'][2]
    # effdet feeds Lite models inputs scaled to [-1, 1], as our Lite configs do already
    assert lite['config'] == 'configs/effdet_lite0_coco.py' and lite['cfg_options'] == {}
    lite_cfg = Config.fromfile(REPO / lite['config'])
    assert lite_cfg.model.data_preprocessor.std == [127.5] * 3
    assert lite_cfg.model.neck.act_cfg.type == lite_cfg.model.bbox_head.act_cfg.type == 'ReLU6'
    # AdvProp D weights were trained on [-1, 1] inputs too; the D configs are not
    assert config_overrides('d2', 80, advprop=True)['model.data_preprocessor.mean'] == [127.5] * 3


def _official_names():
    """effdet's TF-ported models that have a config here (lite3x has none)."""
    return [n for n in efficientdet_model_param_dict
            if n.startswith('tf_') and n != 'tf_efficientdet_lite3x']


def test_preprocessing_is_what_effdet_feeds_each_official_model():
    """meta['preprocessing'] (0-255 terms) equals effdet's own input config of each model:
    ImageNet mean/std for D0-D7x, [-1, 1] for Lite and AdvProp (_ap)."""
    for name in _official_names():
        trained = resolve_input_config({}, effdet.get_efficientdet_config(name))
        pre = effdet_preprocessing(*parse_effdet_name(name))
        assert pre['mean'] == pytest.approx([255 * m for m in trained['mean']]), name
        assert pre['std'] == pytest.approx([255 * s for s in trained['std']]), name
        assert pre['to_rgb'] is True and pre['padding'] == 'tf_same'


@pytest.mark.parametrize('name', ['tf_efficientdet_d0', 'tf_efficientdet_lite0'])
def test_written_preprocessing_is_checked_by_the_hook(converted, name, log_records):
    """The file the tool wrote records the input; PretrainedInputCheckHook reads it: silent
    for the config the meta names, a warning naming the values to set for another input."""
    _, ours, meta, path = converted[name]
    assert meta['preprocessing'] == effdet_preprocessing(*parse_effdet_name(name))
    checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    hook = PretrainedInputCheckHook()
    hook.after_load_checkpoint(SimpleNamespace(model=ours, _load_from=str(path)), checkpoint)
    assert not [m for m in log_records if 'pretrained weights' in m]
    other = 'tf_efficientdet_lite0' if name == 'tf_efficientdet_d0' else 'tf_efficientdet_d0'
    # the same backbone fed as the other variant's config feeds its input
    wrong = SimpleNamespace(backbone=ours.backbone,
                            data_preprocessor=converted[other][1].data_preprocessor)
    hook.after_load_checkpoint(SimpleNamespace(model=wrong, _load_from=str(path)), checkpoint)
    warned = [m for m in log_records if 'pretrained weights' in m]
    expected = [round(v, 4) for v in meta['preprocessing']['mean']]
    assert len(warned) == 1 and str(path) in warned[0]
    assert f'model.data_preprocessor.mean={expected}'.replace(' ', '') in warned[0]


def _effdet_detections(ref, x):
    bench = effdet.DetBenchPredict(ref).eval()
    info = dict(img_scale=torch.ones(1), img_size=torch.tensor([[SIZE, SIZE]]).float())
    with torch.no_grad():
        det = bench(x, img_info=info)[0]
    # mmdet drops boxes of zero width or height (clipped to a border: min_bbox_size=0)
    # and has no slots for the ten unused COCO ids; effdet keeps both.
    keep = ((det[:, 2] > det[:, 0]) & (det[:, 3] > det[:, 1]) &
            torch.isin(det[:, 5].long(), torch.tensor(COCO80_CATEGORY_IDS)))
    return det[keep]


def _our_detections(model, x):
    model.bbox_head.test_cfg = ConfigDict(  # effdet's default: hard NMS, 100 boxes
        nms_pre=5000, min_bbox_size=0, score_thr=0.0, nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=100)
    sample = DetDataSample(metainfo=dict(img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE),
                                         scale_factor=(1.0, 1.0)))
    with torch.no_grad():
        return model.predict(x, [sample])[0].pred_instances


@pytest.mark.parametrize('name', ['tf_efficientdet_d0', 'tf_efficientdet_lite0'])
def test_decoded_detections_match_effdet(converted, name):
    """Top detections after NMS: same boxes, scores and (mapped) classes.

    effdet keeps the global top 5000 candidates, mmdet the top 5000 per level (a superset),
    so every box kept by effdet above its last kept score is kept by mmdet too.
    """
    ref, ours, _, _ = converted[name]
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    det = _effdet_detections(ref, x)
    res = _our_detections(ours, x)
    n = min(30, len(det))
    assert n >= 20 and len(res) >= n
    id_to_label = {c: i for i, c in enumerate(COCO80_CATEGORY_IDS)}
    labels = torch.tensor([id_to_label[int(c)] for c in det[:n, 5]])
    torch.testing.assert_close(res.scores[:n], det[:n, 4], atol=1e-5, rtol=0)
    torch.testing.assert_close(res.bboxes[:n], det[:n, :4], atol=1e-3, rtol=0)
    assert torch.equal(res.labels[:n], labels)
    assert det[0, 4] > 0.5 and det[:n, 4].unique().numel() == n  # confident, no ties


def test_ninety_slots_and_name_handling(converted, tmp_path):
    ref, _, _, _ = converted['tf_efficientdet_d0']
    src = tmp_path / 'weights.pth'  # no model name in the file name: inferred from weights
    torch.save({'state_dict': {f'model.{k}': v for k, v in ref.state_dict().items()}}, src)
    dst = tmp_path / 'd0_90.pth'
    assert tool.main([str(src), str(dst), '--num-classes', '90']) == 0
    meta = torch.load(dst, map_location='cpu', weights_only=True)['meta']
    assert meta['variant'] == 'd0' and meta['effdet_name'] is None
    assert meta['cfg_options'] == {'model.bbox_head.num_classes': 90}
    assert len(meta['dataset_meta']['classes']) == 90
    ours = _build_ours(str(dst), meta)
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        d = max((a - b).abs().max().item() for a, b in zip(ours(x, mode='tensor')[0], ref(x)[0]))
    assert d < TOL

    assert parse_effdet_name('tf_efficientdet_d7x-f390b87c.pth') == ('d7x', False)
    assert parse_effdet_name('tf_efficientdet_d2_ap-a2995c19.pth') == ('d2', True)
    assert parse_effdet_name('tf_efficientdet_lite3') == ('lite3', False)
    with pytest.raises(ValueError, match='PyTorch-trained'):
        parse_effdet_name('efficientdet_d1-bb7e98fe.pth')
    with pytest.raises(ValueError, match='no config'):
        parse_effdet_name('tf_efficientdet_lite3x')
    assert infer_variant(ref.state_dict()) == 'd0'
    assert tool.main([str(tmp_path / 'missing.pth'), str(dst)]) == 1


# ---------------------------------------------------------------------------------------------
# Loading a checkpoint of another class count (load_from / Pretrained init_cfg)
# ---------------------------------------------------------------------------------------------
class _Records(logging.Handler):

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def log_records():
    logger = MMLogger.get_current_instance()
    handler = _Records()
    logger.addHandler(handler)
    checkpoint_classes.reset_reports()
    yield handler.messages
    logger.removeHandler(handler)


def test_other_class_count_reinitialises_only_cls_pred(converted, log_records):
    _, _, meta, path = converted['tf_efficientdet_d0']
    cfg = Config.fromfile(str(REPO / meta['config']))
    cfg.model.bbox_head.num_classes = 1
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    # mmengine's load_checkpoint: what load_from / a Pretrained init_cfg use
    load_checkpoint(model, str(path), map_location='cpu', logger='current')
    ema_copy = copy.deepcopy(model)  # EMAHook loads the same checkpoint into its copy
    load_checkpoint(ema_copy, str(path), map_location='cpu', logger='current')

    related = [m for m in log_records if 'cls_pred' in m or 'mismatch' in m]
    assert len(related) == 1, log_records
    assert related[0].startswith('EffDetHead: class predictor has 80 classes in the '
                                 'checkpoint, 1 in the model: re-initialised cls_pred '
                                 '(prior prob 0.01)')
    assert not any('size mismatch' in m or 'missing keys' in m for m in log_records)

    state = torch.load(path, map_location='cpu', weights_only=True)['state_dict']
    ours = model.state_dict()
    reinit = {'bbox_head.cls_pred.pointwise_conv.conv.weight',
              'bbox_head.cls_pred.pointwise_conv.conv.bias'}
    for key, value in state.items():
        if key not in reinit:
            assert torch.equal(ours[key], value), key
    weight = ours['bbox_head.cls_pred.pointwise_conv.conv.weight']
    assert weight.shape == (9, 64, 1, 1)
    assert 0.05 < weight.std().item() < 0.25  # fan-in normal: std 1/8
    bias = ours['bbox_head.cls_pred.pointwise_conv.conv.bias']
    torch.testing.assert_close(bias, torch.full((9, ), -4.59512), atol=1e-4, rtol=0)


def test_same_class_count_and_other_mismatches_untouched(converted, log_records):
    ref, ours, _, path = converted['tf_efficientdet_d0']
    head = ours.bbox_head
    state = {f'bbox_head.{k}': v for k, v in head.state_dict().items()}
    assert not checkpoint_classes.adapt_class_predictor(
        head, dict(state), 'bbox_head.', 'cls_pred.pointwise_conv.conv.weight',
        'cls_pred.pointwise_conv.conv.bias', 80, 9)
    # another width is another architecture: left to mmengine's size-mismatch report
    odd = dict(state)
    odd['bbox_head.cls_pred.pointwise_conv.conv.weight'] = torch.zeros(9 * 3, 32, 1, 1)
    assert not checkpoint_classes.adapt_class_predictor(
        head, odd, 'bbox_head.', 'cls_pred.pointwise_conv.conv.weight',
        'cls_pred.pointwise_conv.conv.bias', 80, 9)
    assert not log_records


def test_load_from_in_a_runner_with_ema(converted, tiny_coco, tmp_path, log_records):
    """``load_from=`` a COCO checkpoint in a 2-class fine-tuning config (with EMAHook, which
    loads the checkpoint a second time): one line, and training starts."""
    from mmengine.runner import Runner
    _, _, meta, path = converted['tf_efficientdet_d0']
    cfg = Config.fromfile(str(REPO / meta['config']))
    dataset = dict(
        type='CocoDataset', data_root=tiny_coco.data_root, ann_file=tiny_coco.ann_file,
        data_prefix=dict(img=tiny_coco.img_prefix), metainfo=dict(classes=tiny_coco.classes),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
                  dict(type='PackDetInputs')])
    cfg.merge_from_dict(dict(
        work_dir=str(tmp_path), load_from=str(path), log_level='INFO',
        model=dict(bbox_head=dict(num_classes=len(tiny_coco.classes))),
        train_dataloader=dict(batch_size=2, num_workers=0, persistent_workers=False,
                              dataset=dataset),
        train_cfg=dict(_delete_=True, type='IterBasedTrainLoop', max_iters=1),
        param_scheduler=[], auto_scale_lr=dict(enable=False),
        default_hooks=dict(checkpoint=dict(interval=100, save_best=None),
                           logger=dict(interval=1)),
        val_dataloader=None, val_cfg=None, val_evaluator=None, test_dataloader=None,
        test_cfg=None, test_evaluator=None, sync_bn=None))
    runner = Runner.from_cfg(cfg)
    checkpoint_classes.reset_reports()
    handler = _Records()
    runner.logger.addHandler(handler)
    try:
        runner.train()
    finally:
        runner.logger.removeHandler(handler)
    lines = [m for m in handler.messages + log_records if 'class predictor' in m]
    assert len(set(lines)) == 1 and len(handler.messages + log_records) > 1
    assert len([m for m in handler.messages if 'class predictor' in m]) == 1, lines
    assert lines[0].startswith('EffDetHead: class predictor has 80 classes in the checkpoint, '
                               '2 in the model')
    assert not any('size mismatch' in m for m in handler.messages)
