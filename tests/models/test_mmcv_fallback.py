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


@pytest.fixture
def cpu_fallback():
    """The fallback made to take CPU tensors: mmcv's kernels unavailable to the ops it covers."""
    routed = mmcv_fallback.enable_mmcv_fallback(force=True, device_type='cpu')
    yield routed
    mmcv_fallback.disable_mmcv_fallback()


def test_fallback_covers_the_modules_our_configs_reach(cpu_fallback):
    import sys
    modules = [sys.modules[name] for name in mmcv_fallback.FALLBACK_MODULES]
    assert 'nms' in cpu_fallback and 'roi_align' in cpu_fallback
    for module in modules:
        assert isinstance(module.ext_module, mmcv_fallback.FallbackExt)
    mmcv_fallback.enable_mmcv_fallback(force=True, device_type='cpu')  # idempotent
    assert not isinstance(modules[0].ext_module._ext, mmcv_fallback.FallbackExt)
    mmcv_fallback.disable_mmcv_fallback()
    assert not any(isinstance(m.ext_module, mmcv_fallback.FallbackExt) for m in modules)


def test_fallback_is_off_where_mmcv_has_the_kernels():
    import sys
    if needs_mmcv_fallback():
        pytest.skip('this machine needs the fallback')
    assert mmcv_fallback.enable_mmcv_fallback() == ''
    assert not isinstance(sys.modules['mmcv.ops.nms'].ext_module, mmcv_fallback.FallbackExt)


def _boxes(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 200
    wh = torch.rand(n, 2, generator=g) * 60 + 4
    return torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g)


def test_batched_nms_equals_mmcv_kernel(cpu_fallback):
    from mmcv.ops import batched_nms
    boxes, scores = _boxes(300)
    labels = torch.randint(0, 3, (300, ), generator=torch.Generator().manual_seed(1))
    dets, keep = batched_nms(boxes, scores, labels, dict(type='nms', iou_threshold=0.5))
    mmcv_fallback.disable_mmcv_fallback()
    ref_dets, ref_keep = batched_nms(boxes, scores, labels, dict(type='nms', iou_threshold=0.5))
    assert 0 < len(keep) < 300
    assert keep.tolist() == ref_keep.tolist()
    torch.testing.assert_close(dets, ref_dets)


def test_roi_align_forward_and_backward_equal_mmcv_kernel(cpu_fallback):
    from mmcv.ops import RoIAlign
    layer = RoIAlign(output_size=7, spatial_scale=0.25, sampling_ratio=0, aligned=True)
    feats = torch.randn(2, 4, 32, 40)
    boxes, _ = _boxes(12)
    rois = torch.cat([torch.arange(12).remainder(2).float()[:, None], boxes * 0.6], 1)
    grad = torch.randn(12, 4, 7, 7)

    def run():
        x = feats.clone().requires_grad_()
        out = layer(x, rois)
        out.backward(grad)
        return out.detach(), x.grad
    out, x_grad = run()
    mmcv_fallback.disable_mmcv_fallback()
    ref_out, ref_grad = run()
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(x_grad, ref_grad, atol=1e-5, rtol=1e-4)


def test_sigmoid_focal_loss_kernel_equals_mmdet_pytorch_loss(cpu_fallback):
    """mmcv has no CPU focal-loss kernel: the fallback answers mmcv's own
    ``sigmoid_focal_loss`` (value and gradient) like mmdet's PyTorch formula."""
    from mmcv.ops import sigmoid_focal_loss
    from mmdet.models.losses.focal_loss import py_sigmoid_focal_loss
    pred = torch.randn(40, 5, requires_grad=True)
    target = torch.randint(0, 6, (40, ))  # 5 = background
    loss = sigmoid_focal_loss(pred, target, 2.0, 0.25, None, 'sum')
    grad, = torch.autograd.grad(loss, pred)
    ref_pred = pred.detach().clone().requires_grad_()
    one_hot = torch.nn.functional.one_hot(target, 6)[:, :5].float()
    ref = py_sigmoid_focal_loss(ref_pred, one_hot, gamma=2.0, alpha=0.25, reduction='sum')
    ref_grad, = torch.autograd.grad(ref, ref_pred)
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grad, ref_grad, atol=1e-6, rtol=1e-5)
