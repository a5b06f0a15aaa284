"""Format detection, arch inference, clear errors, and every way a converted file is loaded
(backbone init_cfg, detector init_cfg, detector load_from)."""
import copy
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.runner import Runner

from effdet_plugin.checkpoint import (
    ArchMismatchError,
    CheckpointReadError,
    convert_efficientnet,
    detect_format,
    infer_arch,
    read_checkpoint,
    save_checkpoint,
    unwrap_state_dict,
)
from effdet_plugin.models.backbones import EffNet

REPO = Path(__file__).resolve().parents[2]
ALL = tuple(range(EffNet.num_layers))


def _meta(builder, *args, **kwargs):
    """A model's structure and shapes without memory or init time."""
    with torch.device('meta'):
        return builder(*args, **kwargs)


@pytest.fixture(scope='module', autouse=True)
def _mmdet_scope():
    register_all_modules()  # detector pieces (DetDataPreprocessor, ...) resolve in mmdet


@pytest.fixture(scope='module')
def tv_b0():
    torch.manual_seed(0)
    return torchvision.models.efficientnet_b0().state_dict()


@pytest.fixture(scope='module')
def files(tv_b0, tmp_path_factory):
    """torchvision b0 converted twice: bare keys and keys under ``backbone.``."""
    root = tmp_path_factory.mktemp('ckpt')
    result = convert_efficientnet(tv_b0)
    return dict(result=result, bare=save_checkpoint(result.checkpoint(), str(root / 'bare.pth')),
                prefixed=save_checkpoint(result.checkpoint('backbone.'), str(root / 'det.pth')),
                root=root)


def load_pretrained(model, checkpoint, strict=False):
    """Read (a path), unwrap and convert ``checkpoint`` for ``model``, then load it."""
    obj = read_checkpoint(checkpoint) if isinstance(checkpoint, str) else checkpoint
    result = convert_efficientnet(unwrap_state_dict(obj), model=model)
    model.load_state_dict(result.state_dict, strict=strict)
    return result


def _same_as(model, state_dict):
    """Every tensor of ``model`` equals the one ``state_dict`` holds under its key."""
    return all(k in state_dict and torch.equal(v, state_dict[k])
               for k, v in model.state_dict().items())


# ------------------------------------------------------------------------------ detection
@pytest.mark.parametrize('keys,expected', [
    (['features.0.0.weight', 'classifier.1.weight'], ('torchvision', '')),
    (['conv_stem.weight', 'blocks.0.0.conv_dw.weight'], ('timm', '')),
    (['backbone.conv_stem.weight', 'fpn.cell.0.x'], ('timm', 'backbone.')),
    (['_conv_stem.weight', '_fc.weight'], ('effnet-pytorch', '')),
    (['backbone.layers.0.conv.weight', 'neck.x'], ('effnet', 'backbone.')),
])
def test_detect_format(keys, expected):
    assert detect_format(dict.fromkeys(keys, torch.zeros(1))) == expected


def test_detect_format_unknown_lists_formats():
    with pytest.raises(ValueError, match=r'conv1\.weight.*features\.0\.0\.weight.*conv_stem'):
        detect_format({'conv1.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match='Unknown source'):
        detect_format({'conv_stem.weight': torch.zeros(1)}, source='keras')


@pytest.mark.parametrize('arch', [f'b{i}' for i in range(8)])
def test_infer_arch_torchvision(arch):
    net = _meta(getattr(torchvision.models, f'efficientnet_{arch}'))
    assert infer_arch(net.state_dict()) == arch


@pytest.mark.parametrize('arch', ['b0', 'b3', 'lite0', 'lite2', 'lite4'])
def test_infer_arch_timm(arch):
    name = f'tf_efficientnet_{arch}'
    assert infer_arch(_meta(timm.create_model, name, pretrained=False).state_dict()) == arch


# ------------------------------------------------------------------------------ errors
def test_wrong_width_names_key_and_both_shapes(tv_b0):
    with pytest.raises(ArchMismatchError) as e:
        load_pretrained(EffNet('b3'), tv_b0)
    msg = str(e.value)
    print(f'\n{msg}')
    assert "'layers.0.conv.weight'" in msg and "'features.0.0.weight'" in msg
    assert '(40, 3, 3, 3)' in msg and '(32, 3, 3, 3)' in msg and "looks like arch 'b0'" in msg


def test_wrong_depth_names_first_unmatched_block(tv_b0):
    with pytest.raises(ArchMismatchError, match=r"Stage 1 has 2 blocks.*'layers\.1\.1\."
                       r"depthwise_conv\.conv\.weight' \(shape \(16, 1, 3, 3\)\)"):
        load_pretrained(EffNet('b1'), tv_b0)


def test_lite_vs_se_mismatch(tv_b0):
    with pytest.raises(ArchMismatchError, match=r"'features\.1\.0\.block\.1\.fc1\.weight' "
                       r'\(shape \(8, 32, 1, 1\)\) has no counterpart in the model'):
        load_pretrained(EffNet('lite0'), tv_b0)


def test_corrupt_file_names_path_and_fix(files, tmp_path):
    bad = tmp_path / 'truncated.pth'
    bad.write_bytes(Path(files['bare']).read_bytes()[:5000])
    with pytest.raises(CheckpointReadError, match=r'truncated\.pth.*convert_weights\.py'):
        load_pretrained(EffNet('b0'), str(bad))
    with pytest.raises(FileNotFoundError, match=r'nowhere\.pth.*convert_weights\.py'):
        load_pretrained(EffNet('b0'), str(tmp_path / 'nowhere.pth'))


def test_mismatch_in_effnet_format_checkpoint(files):
    with pytest.raises(ArchMismatchError, match=r"'layers\.0\.conv\.weight'.*\(40, 3, 3, 3\)"):
        load_pretrained(EffNet('b3'), files['prefixed'])


# ------------------------------------------------------------------------------ loading
def test_load_pretrained_reports(tv_b0, files):
    model = EffNet('b0', norm_cfg=dict(type='BN', eps=1e-5), out_indices=ALL)
    result = load_pretrained(model, {'state_dict': {f'module.{k}': v for k, v in tv_b0.items()}})
    assert result.missing == [] and result.unexpected == []
    assert result.ignored == ['classifier.1.weight', 'classifier.1.bias']
    assert _same_as(model, files['result'].state_dict)
    # The default out_indices (3, 5, 7) build no head conv: its weights are ignored, not lost.
    model = EffNet('b0')
    result = load_pretrained(model, tv_b0)
    assert result.missing == [] and result.unexpected == []
    assert [k for k in result.ignored if k.startswith('features.8.')] == [
        k for k in tv_b0 if k.startswith('features.8.')]
    assert _same_as(model, files['result'].state_dict)
    # A detector backbone without the head conv: reported, and fatal only when strict.
    headless = {k: v for k, v in tv_b0.items() if not k.startswith('features.8.')}
    result = load_pretrained(EffNet('b0', out_indices=ALL), headless)
    assert result.missing == [f'layers.8.{n}' for n in
                              ('conv.weight', 'bn.weight', 'bn.bias', 'bn.running_mean',
                               'bn.running_var')]
    with pytest.raises(RuntimeError, match='layers.8.conv.weight'):
        load_pretrained(EffNet('b0', out_indices=ALL), headless, strict=True)


def test_load_into_detector_backbone(files):
    detector = MODELS.build(_retinanet_cfg())
    load_pretrained(detector.backbone, files['prefixed'])
    assert _same_as(detector.backbone, files['result'].state_dict)


def test_backbone_init_cfg_bare_file(files):
    model = EffNet('b0', init_cfg=dict(type='Pretrained', checkpoint=files['bare']))
    model.init_weights()
    assert _same_as(model, files['result'].state_dict)


def test_backbone_init_cfg_prefixed_file(files):
    model = EffNet('b0', init_cfg=dict(type='Pretrained', checkpoint=files['prefixed'],
                                       prefix='backbone.'))
    model.init_weights()
    assert _same_as(model, files['result'].state_dict)


def _retinanet_cfg(**backbone):
    cfg = dict(
        type='RetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
                               pad_size_divisor=32),
        backbone=dict(type='EffNet', arch='b0', out_indices=(3, 5, 7), **backbone),
        neck=dict(type='FPN', in_channels=[40, 112, 320], out_channels=16, num_outs=3),
        bbox_head=dict(
            type='RetinaHead', num_classes=2, in_channels=16, stacked_convs=1, feat_channels=16,
            anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                                  scales_per_octave=1, ratios=[1.0], strides=[8, 16, 32]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4,
                            target_stds=[1.0] * 4),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                          loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        train_cfg=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4,
                                     min_pos_iou=0, ignore_iof_thr=-1),
                       sampler=dict(type='PseudoSampler'), allowed_border=-1, pos_weight=-1,
                       debug=False),
        test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.05,
                      nms=dict(type='nms', iou_threshold=0.5), max_per_img=20))
    return copy.deepcopy(cfg)


def test_detector_init_cfg_prefixed_file(files):
    cfg = _retinanet_cfg()
    cfg['init_cfg'] = dict(type='Pretrained', checkpoint=files['prefixed'])
    detector = MODELS.build(cfg)
    detector.init_weights()
    assert _same_as(detector.backbone, files['result'].state_dict)


def test_detector_load_from_prefixed_file(files, tiny_det_cfg):
    cfg = tiny_det_cfg()
    cfg.model = _retinanet_cfg()
    cfg.custom_imports = dict(imports=['effdet_plugin'], allow_failed_imports=False)
    cfg.load_from = files['prefixed']
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    assert _same_as(runner.model.backbone, files['result'].state_dict)


# ------------------------------------------------------------------------------ CLI
def _tool():
    from effdet_plugin.cli import convert_weights
    return convert_weights


def test_cli_converts_and_checks_arch(tv_b0, tmp_path, capsys):
    src = tmp_path / 'tv_b0.pth'
    torch.save(tv_b0, src)
    tool = _tool()
    assert tool.main([str(src), str(tmp_path / 'out.pth'), '--prefix', 'backbone.']) == 0
    out = capsys.readouterr().out
    assert 'ignored (classifier): classifier.1.weight, classifier.1.bias' in out
    saved = torch.load(tmp_path / 'out.pth', weights_only=True)
    assert saved['meta']['backbone_cfg']['norm_cfg']['eps'] == 1e-5
    assert all(k.startswith('backbone.layers.') for k in saved['state_dict'])
    assert tool.main([str(src), str(tmp_path / 'b3.pth'), '--arch', 'b3']) == 1
    assert "'layers.0.conv.weight'" in capsys.readouterr().err
    assert not (tmp_path / 'b3.pth').exists()


def test_cli_lite0_package(run_tool, tmp_path):
    dst = tmp_path / 'checkpoints' / 'lite0_imagenet.pth'
    proc = run_tool('tools/convert_weights.py', '--lite0-package', dst)
    assert proc.returncode == 0, proc.stderr
    assert '0 missing, 0 unexpected' in proc.stdout and dst.exists()
    model = EffNet('lite0', padding='tf_same',
                   init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    assert model.state_dict()['layers.0.bn.running_var'].std() > 0  # real statistics


def test_cli_lite2_package_records_its_preprocessing(tmp_path, capsys):
    dst = tmp_path / 'lite2.pth'
    assert _tool().main(['--lite-package', str(dst), '--arch', 'lite2']) == 0
    assert 'mean=[127.0, 127.0, 127.0], std=[128.0, 128.0, 128.0]' in capsys.readouterr().out
    meta = torch.load(dst, weights_only=True)['meta']
    assert meta['arch'] == 'lite2' and meta['preprocessing']['to_rgb'] is True
    with pytest.raises(SystemExit):
        _tool().parse_args(['--lite-package', str(dst), '--arch', 'lite3'])


def test_effnet_checkpoint_into_shallower_model(files):
    model = EffNet('b0', out_indices=(0, 1, 2, 3))
    result = load_pretrained(model, files['prefixed'])
    assert (result.source, result.prefix) == ('effnet', 'backbone.')
    assert result.missing == [] and result.unexpected == []
    assert result.ignored and all(k.split('.')[2] in '45678' for k in result.ignored)
    assert _same_as(model, files['result'].state_dict)
    assert infer_arch(torch.load(files['bare'], weights_only=True)['state_dict']) == 'b0'
