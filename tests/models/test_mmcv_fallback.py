"""Fallback from mmcv's CUDA kernels (NMS, sigmoid focal loss) for a CPU-built mmcv."""
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.structures import InstanceData

import effdet_plugin  # noqa: F401
from effdet_plugin.models.dense_heads import EffDetHead, effdet_head
from effdet_plugin.models.utils import mmcv_fallback
from effdet_plugin.models.utils.mmcv_fallback import OneHotTargets, needs_mmcv_fallback
from tests.models.head_settings import official_settings


@pytest.mark.parametrize('cuda,mmcv_cuda,expected', [
    (False, False, False),  # CPU machine: mmcv's CPU ops are used
    (False, True, False),
    (True, True, False),  # CUDA machine, CUDA mmcv: its kernels
    (True, False, True),  # CUDA machine, CPU mmcv: fallback
])
def test_fallback_selection(cuda, mmcv_cuda, expected):
    assert needs_mmcv_fallback(cuda, mmcv_cuda) is expected


def test_this_mmcv_is_detected():
    from mmcv.ops import get_compiling_cuda_version
    has_cuda = get_compiling_cuda_version() != 'not available'
    assert mmcv_fallback.mmcv_has_cuda_ops() is has_cuda
    assert needs_mmcv_fallback() is (torch.cuda.is_available() and not has_cuda)


def test_one_hot_focal_loss_equals_mmdet_focal_loss():
    loss = MODELS.build(dict(type='FocalLoss', use_sigmoid=True, gamma=1.5, alpha=0.25))
    pred = torch.randn(50, 3)
    target = torch.randint(0, 4, (50, ))  # 3 = background
    weight = torch.rand(50)
    expected = loss(pred, target, weight, avg_factor=7.0)
    wrapped = OneHotTargets(loss)
    assert wrapped.use_sigmoid and wrapped.loss_weight == loss.loss_weight
    torch.testing.assert_close(wrapped(pred, target, weight, avg_factor=7.0), expected)


def test_head_with_fallback_trains_and_predicts_the_same(monkeypatch):
    logged = []
    monkeypatch.setattr(effdet_head, 'needs_mmcv_fallback', lambda: True)
    monkeypatch.setattr(effdet_head, 'log_fallback', lambda owner: logged.append(owner))
    torch.manual_seed(0)
    fallback = EffDetHead(num_classes=3, in_channels=16, stacked_convs=1, **official_settings())
    monkeypatch.setattr(effdet_head, 'needs_mmcv_fallback', lambda: False)
    plain = EffDetHead(num_classes=3, in_channels=16, stacked_convs=1, **official_settings())
    plain.load_state_dict(fallback.state_dict())
    assert logged == ['EffDetHead'] and isinstance(fallback.loss_cls, OneHotTargets)
    feats = [torch.randn(1, 16, 256 // s, 256 // s) for s in (8, 16, 32, 64, 128)]
    gt = InstanceData(bboxes=torch.tensor([[10., 10., 60., 70.]]), labels=torch.tensor([1]))
    metas = [dict(img_shape=(256, 256), pad_shape=(256, 256), ori_shape=(256, 256),
                  scale_factor=(1., 1.))]
    losses = [head.loss_by_feat(*head(feats), [gt], metas) for head in (fallback, plain)]
    for key in losses[1]:
        torch.testing.assert_close(sum(losses[0][key]), sum(losses[1][key]))


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


@pytest.mark.cuda
@cuda
def test_predict_with_nms_on_cuda_equals_cpu():
    torch.manual_seed(0)
    head = EffDetHead(num_classes=3, in_channels=16, stacked_convs=1,
                      **official_settings(nms=dict(type='nms', iou_threshold=0.5))).eval()
    feats = [torch.randn(1, 16, 256 // s, 256 // s) for s in (8, 16, 32, 64, 128)]
    metas = [dict(img_shape=(256, 256), ori_shape=(256, 256), scale_factor=(1., 1.))]
    with torch.no_grad():
        cpu = head.predict_by_feat(*head(feats), batch_img_metas=metas)[0]
        head.cuda()
        gpu = head.predict_by_feat(*head([f.cuda() for f in feats]), batch_img_metas=metas)[0]
    assert gpu.bboxes.is_cuda and len(gpu) == len(cpu)
    torch.testing.assert_close(gpu.scores.cpu(), cpu.scores, atol=1e-4, rtol=0)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize('config', ['configs/effdet_b0_coco.py', 'configs/effdet_b3_coco.py'])
def test_fp16_amp_train_steps_on_cuda(config):
    """Two AMP (fp16) SGD steps of the detector on CUDA, channels-last, finite losses."""
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules()
    model = MODELS.build(Config.fromfile(config).model).cuda().train()
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler('cuda')
    x = torch.randn(2, 3, 256, 256, device='cuda').contiguous(memory_format=torch.channels_last)
    samples = []
    for i in range(2):
        sample = DetDataSample(metainfo=dict(img_shape=(256, 256), pad_shape=(256, 256),
                                             batch_input_shape=(256, 256)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[20., 30., 120., 160.]], device='cuda'),
            labels=torch.tensor([i], device='cuda'))
        samples.append(sample)
    for _ in range(2):
        with torch.autocast('cuda', dtype=torch.float16):
            losses = model(x, samples, mode='loss')
        loss = sum(v if torch.is_tensor(v) else sum(v) for v in losses.values())
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
