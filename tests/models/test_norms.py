"""One ``norm_cfg`` for backbone, BiFPN and heads: BN, SyncBN, GN (groups fitted to every width),
frozen BN (``norm_eval``, with or without ``requires_grad``). Each builds, trains a step with a
finite loss and its frozen tensors unchanged, resumes through the checked load path and exports
to ONNX; BatchNorm weights load into a GroupNorm model (affine only, one log line)."""
import copy

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from torch.nn.modules.batchnorm import _BatchNorm

import effdet_plugin  # noqa: F401  (registers the components)
from effdet_plugin.checkpoint import convert_efficientnet, load_checkpoint, weights_check
from effdet_plugin.checkpoint.loading import check_pretrained_inits
from effdet_plugin.deploy.onnx_export import export_onnx
from effdet_plugin.engine import CheckedRunner
from effdet_plugin.models.backbones import EffNet
from effdet_plugin.models.utils import group_count, norm_cfg_for
from tests.conftest import build_tiny_det_cfg

BN = dict(type='BN', eps=1e-3, momentum=0.1)
# name -> (norm_cfg, norm_eval) of all three parts
NORMS = {
    'bn': (BN, False),
    'syncbn': (dict(type='SyncBN', eps=1e-3, momentum=0.1), False),
    'gn': (dict(type='GN', num_groups=32), False),
    'bn_frozen_stats': (BN, True),  # statistics frozen, affine trained
    'bn_frozen': (dict(BN, requires_grad=False), True),  # mmdet's frozen BN
}
PARTS = ('backbone', 'neck', 'bbox_head')


@pytest.fixture(autouse=True)
def _scope():
    torch.manual_seed(0)
    init_default_scope('mmdet')


def detector_cfg(norm: str, num_classes: int = 2) -> dict:
    """A small D0-style detector (EfficientNet-B0, one BiFPN cell and head conv of width 40,
    which 32 groups do not divide), with ``norm`` in every part."""
    norm_cfg, norm_eval = NORMS[norm]
    model = Config.fromfile('configs/_base_/models/efficientdet_d0.py').model
    model.backbone.update(padding='symmetric', drop_path_rate=0., init_cfg=None)
    model.neck.update(out_channels=40, num_repeats=1, pool_padding='symmetric')
    model.bbox_head.update(num_classes=num_classes, in_channels=40, stacked_convs=1)
    model.test_cfg.update(nms=dict(type='nms', iou_threshold=0.5), nms_pre=100)
    for part in PARTS:
        model[part]['norm_cfg'] = copy.deepcopy(norm_cfg)  # replaced, not merged
        model[part]['norm_eval'] = norm_eval
    return model.to_dict()


def norms_of(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, (_BatchNorm, nn.GroupNorm))]


# ------------------------------------------------------------------------------ the group rule
@pytest.mark.parametrize('channels, groups', [(40, 20), (112, 28), (24, 24), (88, 22), (64, 32),
                                              (1152, 32), (37, 1), (16, 16)])
def test_group_count_is_the_largest_divisor_up_to_the_request(channels, groups):
    assert group_count(channels, 32) == groups
    assert norm_cfg_for(dict(type='GN', num_groups=32), channels)['num_groups'] == groups


def test_norm_cfg_for_leaves_other_norms_and_names_a_missing_group_count():
    assert norm_cfg_for(BN, 40) is BN and norm_cfg_for(None, 40) is None
    with pytest.raises(ValueError, match='num_groups'):
        norm_cfg_for(dict(type='GN'), 40)


def test_gn_reaches_every_norm_of_every_part_with_fitting_groups():
    model = MODELS.build(detector_cfg('gn'))
    for part in PARTS:
        norms = norms_of(getattr(model, part))
        assert norms and all(isinstance(m, nn.GroupNorm) for m in norms), part
        for m in norms:
            assert m.num_groups == group_count(m.num_channels, 32), (part, m)
    widths = {m.num_channels for m in norms_of(model)}
    assert {40, 112, 24}.issubset(widths)  # widths 32 groups do not divide
    # a pruned block width (37 is prime) builds too: one group
    assert EffNet('b0', norm_cfg=dict(type='GN', num_groups=32),
                  hidden_channels=[[None]] + [[37] + [None] * (n - 1) for n in
                                              (2, 2, 3, 3, 4, 1)]).layers[2][0].expand_conv.gn \
        .num_groups == 1


@pytest.mark.parametrize('norm', ['bn_frozen_stats', 'bn_frozen'])
def test_norm_eval_keeps_every_part_in_eval_mode(norm):
    model = MODELS.build(detector_cfg(norm)).train()
    for part in PARTS:
        norms = norms_of(getattr(model, part))
        assert norms and not any(m.training for m in norms), part
    frozen_affine = NORMS[norm][0].get('requires_grad', True) is False
    assert all(p.requires_grad != frozen_affine for m in norms_of(model)
               for p in m.parameters())


# ------------------------------------------------------------- train, resume, export per norm
class _Losses(Hook):
    def __init__(self) -> None:
        self.losses = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.losses.append(float(outputs['loss']))


def _runner_cfg(tiny_coco, work_dir, norm: str, iters: int) -> Config:
    cfg = build_tiny_det_cfg(tiny_coco, str(work_dir), batch_size=2)
    cfg.model = detector_cfg(norm)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters)
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
    cfg.optim_wrapper.optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1, by_epoch=False)
    cfg.log_processor = dict(type='LogProcessor', window_size=1, by_epoch=False)
    cfg.runner_type = 'CheckedRunner'
    return cfg


def _frozen_tensors(model: nn.Module) -> dict:
    """Norm tensors that must not change: buffers under norm_eval, parameters without grad."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (_BatchNorm, nn.GroupNorm)):
            tensors = dict(m.named_parameters()) if not any(
                p.requires_grad for p in m.parameters()) else {}
            if not m.training:
                tensors.update(m.named_buffers())
            out.update({f'{name}.{k}': v.detach().clone() for k, v in tensors.items()})
    return out


@pytest.mark.parametrize('norm', list(NORMS))
def test_norm_trains_resumes_and_exports(norm, tiny_coco, tmp_path):
    work = tmp_path / 'work'
    runner = CheckedRunner.from_cfg(_runner_cfg(tiny_coco, work, norm, iters=1))
    losses = _Losses()
    runner.register_hook(losses)
    model = runner.model
    # a CPU run is not distributed: mmengine reverts SyncBN to BN when it wraps the model
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    model.train()
    frozen = _frozen_tensors(model)
    assert bool(frozen) == norm.startswith('bn_frozen')
    before = {k: v.clone() for k, v in model.state_dict().items()}
    runner.train()
    assert len(losses.losses) == 1 and np.isfinite(losses.losses[0])
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in frozen.items())
    assert any(not torch.equal(after[k], v) for k, v in before.items() if k not in frozen)

    cfg = _runner_cfg(tiny_coco, work, norm, iters=2)
    cfg.update(resume=True, load_from=str(work / 'iter_1.pth'))
    resumed = CheckedRunner.from_cfg(cfg)
    resumed.train()
    assert resumed.iter == 2
    assert all(torch.equal(resumed.model.state_dict()[k], v) for k, v in frozen.items())

    detector = resumed.model.eval()
    onnx_file = str(tmp_path / f'{norm}.onnx')
    names = export_onnx(detector, onnx_file, (128, 128), with_nms=False)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        cls_scores, _ = detector.bbox_head(detector.extract_feat(x))
    session = ort.InferenceSession(onnx_file, providers=['CPUExecutionProvider'])
    outputs = dict(zip(names, session.run(names, {'input': x.numpy()})))
    np.testing.assert_allclose(outputs['cls_score_0'], cls_scores[0].numpy(), atol=1e-4)


# ------------------------------------------------------------------- BN weights into GN models
def _bn_to_gn_pair():
    bn = MODELS.build(detector_cfg('bn'))
    with torch.no_grad():
        for m in norms_of(bn):
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_()
    return bn, MODELS.build(detector_cfg('gn'))


def _assert_affine_copied(bn: nn.Module, gn: nn.Module) -> None:
    bn_norms, gn_norms = norms_of(bn), norms_of(gn)
    assert len(bn_norms) == len(gn_norms) > 0
    for a, b in zip(bn_norms, gn_norms):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_bn_checkpoint_loads_into_gn_detector_with_one_log_line(tmp_path, monkeypatch):
    bn, gn = _bn_to_gn_pair()
    checkpoint = tmp_path / 'bn.pth'
    torch.save(dict(state_dict=bn.state_dict()), checkpoint)
    logged = []
    monkeypatch.setattr(weights_check, 'print_log', lambda msg, **kw: logged.append(msg))
    load_checkpoint(gn, str(checkpoint))  # the weights check passes: affine counts as loaded
    _assert_affine_copied(bn, gn)
    layers = len(norms_of(bn))
    assert logged == [f'{checkpoint}: {layers} BatchNorm layers load into GroupNorm layers of '
                      f'SingleStageDetector: affine weight/bias copied, {3 * layers} '
                      'running-statistics tensors dropped']
    # a GN checkpoint into the GN model: nothing to adapt, nothing said
    logged.clear()
    torch.save(dict(state_dict=gn.state_dict()), tmp_path / 'gn.pth')
    load_checkpoint(MODELS.build(detector_cfg('gn')), str(tmp_path / 'gn.pth'))
    assert logged == []


def test_bn_imagenet_weights_initialise_a_gn_backbone(tmp_path):
    """The ``Pretrained`` init_cfg path (mmengine's loader after our check)."""
    bn, _ = _bn_to_gn_pair()
    checkpoint = tmp_path / 'backbone.pth'
    torch.save(dict(state_dict=bn.backbone.state_dict()), checkpoint)
    backbone = EffNet('b0', norm_cfg=dict(type='GN', num_groups=32),
                      init_cfg=dict(type='Pretrained', checkpoint=str(checkpoint)))
    check_pretrained_inits(backbone)
    backbone.init_weights()
    _assert_affine_copied(bn.backbone, backbone)


def test_converter_pairs_bn_weights_with_a_gn_backbone():
    """``convert_efficientnet(..., model=<GN EffNet>)`` writes the BN layout, which loads."""
    bn, _ = _bn_to_gn_pair()
    gn = EffNet('b0', norm_cfg=dict(type='GN', num_groups=32))
    result = convert_efficientnet(bn.backbone.state_dict(), 'effnet', model=gn)
    assert not result.missing and not result.unexpected
    assert gn.load_state_dict(result.state_dict, strict=True)
    _assert_affine_copied(bn.backbone, gn)
