"""Channels-last inference (the default of tools/test.py and tools/infer.py) predicts what the
contiguous model predicts, and the opt-out keeps the model as it is."""
import copy
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import init_default_scope

import effdet_plugin  # noqa: F401
from effdet_plugin.checkpoint import read_checkpoint
from effdet_plugin.cli.memory_format import set_memory_format
from effdet_plugin.deploy.random_weights import realistic_random_detector
from tests.conftest import log_messages

DEMO = Path(__file__).resolve().parents[2] / 'configs/demo/effdet_lite0_nuclei.py'
SIZE = 256


@pytest.fixture(scope='module')
def detector_and_batch():
    """The demo model (hard NMS) with random weights that spread its scores on the batch."""
    init_default_scope('mmdet')
    cfg = Config.fromfile(str(DEMO))
    cfg.model.backbone.init_cfg = None
    cfg.model.test_cfg.nms = dict(type='nms', iou_threshold=0.5)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    image = torch.randint(0, 256, (3, SIZE, SIZE), generator=torch.Generator().manual_seed(0),
                          dtype=torch.uint8)
    sample = DetDataSample(metainfo=dict(img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE),
                                         scale_factor=(1., 1.)))
    data = dict(inputs=[image], data_samples=[sample])
    realistic_random_detector(model, model.data_preprocessor(copy.deepcopy(data))['inputs'])
    return model.eval(), data


def backbone_input_formats(model):
    """Records whether each backbone input is channels-last."""
    seen = []
    model.backbone.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].is_contiguous(
            memory_format=torch.channels_last)))
    return seen


def test_channels_last_gives_the_same_detections(detector_and_batch):
    model, data = detector_and_batch
    fast = copy.deepcopy(model)
    with log_messages() as logged:
        assert set_memory_format(fast) == 'channels_last'
    assert len(logged) == 1 and 'channels-last' in logged[0]
    conv = fast.backbone.layers[0].conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    seen = backbone_input_formats(fast)
    with torch.no_grad():
        ref = model.test_step(copy.deepcopy(data))[0].pred_instances
        out = fast.test_step(copy.deepcopy(data))[0].pred_instances
    assert seen == [True], 'the data preprocessor did not hand over a channels-last batch'
    assert len(ref) > 10, 'too few detections to compare'
    assert len(out) == len(ref)
    assert torch.equal(out.labels, ref.labels)
    # float32 sums in another order (random weights amplify it): seen up to 4.2e-5 in scores
    # and 7.7e-3 px in boxes, depending on the thread count
    torch.testing.assert_close(out.scores, ref.scores, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.bboxes, ref.bboxes, atol=2e-2, rtol=0)


def test_opt_out_keeps_the_format(detector_and_batch):
    model, data = detector_and_batch
    plain = copy.deepcopy(model)
    with log_messages() as logged:
        assert set_memory_format(plain, channels_last=False) == 'contiguous'
    assert len(logged) == 1 and 'NCHW' in logged[0]
    assert plain.backbone.layers[0].conv.weight.is_contiguous()
    seen = backbone_input_formats(plain)
    with torch.no_grad():
        plain.test_step(copy.deepcopy(data))
    assert seen == [False]


def test_wrapped_model_converts_the_detector_inside(detector_and_batch):
    from mmdet.models import DetTTAModel
    model, _ = detector_and_batch
    tta = DetTTAModel(module=copy.deepcopy(model),
                      tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
    set_memory_format(tta)
    set_memory_format(tta)  # twice: one hook, not two
    preprocessor = tta.module.data_preprocessor
    assert len(preprocessor._forward_hooks) == 1
    assert tta.module.backbone.layers[0].conv.weight.is_contiguous(
        memory_format=torch.channels_last)


@pytest.mark.parametrize('tool', ['infer', 'test'])
def test_tools_default_to_channels_last(tool, monkeypatch):
    import sys

    from effdet_plugin.cli import evaluate as test_tool
    from effdet_plugin.deploy import infer
    argv = ['config.py', 'model.pth']
    if tool == 'infer':
        parse = infer.parse_args
    else:
        def parse(args):
            monkeypatch.setattr(sys, 'argv', ['test.py'] + args)
            return test_tool.parse_args()
    assert parse(argv).channels_last is True
    assert parse(argv + ['--no-channels-last']).channels_last is False


def test_train_channels_last_opt_in(tiny_det_cfg, tmp_path, run_tool):
    """tools/train.py --channels-last trains (and checkpoints) a channels-last model; without
    the flag training keeps the default format."""
    cfg_file = tmp_path / 'tiny.py'
    tiny_det_cfg(max_epochs=1).dump(str(cfg_file))
    info = ('--cfg-options', 'log_level=INFO')  # the tiny config logs warnings only
    out = run_tool('tools/train.py', cfg_file, '--work-dir', tmp_path / 'cl', '--channels-last',
                   *info)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'training memory format: channels-last' in out.stdout + out.stderr
    ckpt = read_checkpoint(str(tmp_path / 'cl' / 'epoch_1.pth'))
    conv_weights = [v for k, v in ckpt['state_dict'].items() if v.dim() == 4]
    assert conv_weights and all(torch.isfinite(v).all() for v in conv_weights)
    default = run_tool('tools/train.py', cfg_file, '--work-dir', tmp_path / 'default', *info)
    assert default.returncode == 0, default.stderr[-3000:]
    assert 'memory format' not in default.stdout + default.stderr
