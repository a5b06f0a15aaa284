"""EffDetSegHead: output strides, learning a mask, undoing padding and resize in predict."""
from typing import Tuple

import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.structures import PixelData

import effdet_plugin  # noqa: F401  (registers EffDetSegHead)
from effdet_plugin.models.layers import SeparableConvModule

STRIDES = (8, 16, 32, 64, 128)  # what a P3-P7 BiFPN returns


def build_head(**kwargs):
    cfg = dict(type='EffDetSegHead', num_classes=2, in_channels=8, feat_channels=16)
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def neck_like(images: torch.Tensor, channels: int = 8) -> Tuple[torch.Tensor, ...]:
    """Stand-in BiFPN output: the image average-pooled to each stride, plus fixed noise."""
    gen = torch.Generator().manual_seed(0)
    outs = []
    for stride in STRIDES:
        size = [max(1, s // stride) for s in images.shape[-2:]]
        pooled = F.adaptive_avg_pool2d(images.mean(1, keepdim=True), size)
        noise = torch.randn(images.shape[0], channels - 1, *size, generator=gen)
        outs.append(torch.cat([pooled, 0.1 * noise], dim=1))
    return tuple(outs)


def sample(gt: torch.Tensor, batch_input_shape, ori_shape=None) -> DetDataSample:
    h, w = gt.shape[-2:]
    data_sample = DetDataSample(metainfo=dict(
        batch_input_shape=tuple(batch_input_shape), img_shape=(h, w),
        ori_shape=tuple(ori_shape or (h, w))))
    data_sample.gt_sem_seg = PixelData(sem_seg=gt.view(1, h, w).to(torch.uint8))
    return data_sample


def circle(size: int = 64, radius: float = 18.) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing='ij')
    return (((yy - size / 2 + 3)**2 + (xx - size / 2 - 5)**2) <= radius**2).long()


@pytest.mark.parametrize('out_stride', [4, 8])
@pytest.mark.parametrize('in_levels', [(0, ), (0, 1)])
def test_output_stride(out_stride, in_levels):
    head = build_head(out_stride=out_stride, in_levels=in_levels)
    x = neck_like(torch.rand(2, 3, 64, 96))
    out = head(x)
    assert out['seg_preds'].shape == (2, 2, 64 // out_stride, 96 // out_stride)
    assert out['feats'].shape[:2] == (2, 16)
    assert len(head.upsamples) == {4: 1, 8: 0}[out_stride]


def test_separable_convs_are_the_shared_layer_and_honour_tf_same_padding():
    head = build_head(conv_cfg=dict(type='Conv2dAdaptivePadding'))
    assert all(isinstance(conv, SeparableConvModule) for conv in head.convs)
    x = neck_like(torch.rand(1, 3, 72, 40))
    assert head(x)['feats'].shape[-2:] == (2 * 9, 2 * 5)  # P3 size, upsampled once


def test_out_stride_2_from_p3_adds_two_upsamples():
    head = build_head(out_stride=2)
    assert head(neck_like(torch.rand(1, 3, 64, 64)))['seg_preds'].shape[-2:] == (32, 32)


@pytest.mark.parametrize('kwargs, match', [
    (dict(out_stride=3), 'out_stride'),
    (dict(out_stride=16), 'out_stride'),
    (dict(in_levels=(1, 0)), 'in_levels'),
    (dict(in_levels=(0, 5)), 'in_levels'),
    (dict(loss_seg=dict(type='CrossEntropyLoss', ignore_index=0, avg_non_ignore=True)),
     'ignore_index'),
])
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_head(**kwargs)


def test_learns_a_circle():
    """A few Adam steps on one circle mask: the loss must fall and the mask be recovered."""
    torch.manual_seed(0)
    mask = circle()
    images = mask[None, None].float().expand(1, 3, -1, -1) + 0.05 * torch.rand(1, 3, 64, 64)
    x = neck_like(images)
    samples = [sample(mask, (64, 64))]
    # Cumulative BN statistics: with TF's momentum 0.01, 40 steps leave the running stats
    # near their init and eval-mode predictions say nothing about what was learned.
    head = build_head(out_stride=4, norm_cfg=dict(type='BN', momentum=None))
    optim = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = head.loss(x, samples)['loss_seg']
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    head.eval()
    with torch.no_grad():
        pred = head.predict(x, [samples[0].metainfo])[0].argmax(0)
    iou = ((pred == 1) & (mask == 1)).sum() / ((pred == 1) | (mask == 1)).sum()
    assert losses[-1] < 0.1 * losses[0], losses
    assert iou > 0.9, f'IoU of the learned circle {iou:.3f}'


def test_loss_pads_unpadded_gt_with_ignore_index():
    """Unpadded gt (head pads with 255) and gt padded by DetDataPreprocessor agree."""
    torch.manual_seed(0)
    head = build_head()
    x = neck_like(torch.rand(2, 3, 64, 64))
    gts = [torch.randint(0, 2, (50, 40)), torch.randint(0, 2, (64, 56))]
    unpadded = [sample(gt, (64, 64)) for gt in gts]
    padded = [sample(F.pad(gt, (0, 64 - gt.shape[1], 0, 64 - gt.shape[0]), value=255), (64, 64))
              for gt in gts]
    for s, gt in zip(padded, gts):
        s.set_metainfo(dict(img_shape=tuple(gt.shape)))
    loss = head.loss(x, unpadded)['loss_seg']
    torch.testing.assert_close(loss, head.loss(x, padded)['loss_seg'])
    # Averaged over labelled pixels only: padding does not dilute the loss.
    logits = F.interpolate(head(x)['seg_preds'], size=(64, 64), mode='bilinear')
    expected = torch.cat([
        F.cross_entropy(logits[i:i + 1, :, :gt.shape[0], :gt.shape[1]], gt[None],
                        reduction='none').flatten() for i, gt in enumerate(gts)
    ]).mean()
    torch.testing.assert_close(loss, expected)


def test_loss_rejects_gt_not_matching_image():
    head = build_head()
    bad = sample(torch.zeros(64, 64, dtype=torch.long), (64, 64))
    bad.set_metainfo(dict(img_shape=(32, 32)))  # e.g. loaded after Resize
    bad.gt_sem_seg = PixelData(sem_seg=torch.zeros(1, 48, 48, dtype=torch.uint8))
    with pytest.raises(ValueError, match='gt_sem_seg'):
        head.loss(neck_like(torch.rand(1, 3, 64, 64)), [bad])


class _KnownLogits:
    """Replaces the head's layers: class 1 on the left half of the *image* region."""

    def __init__(self, img_w: int, stride: int):
        self.img_w, self.stride = img_w, stride

    def __call__(self, x) -> dict:
        n, _, h, w = x[0].shape
        h, w = h * 8 // self.stride, w * 8 // self.stride
        logits = torch.zeros(n, 2, h, w)
        logits[:, 1] = -10.  # symmetric around 0, so bilinear crosses 0 at the boundary
        logits[:, 1, :, :self.img_w // 2 // self.stride] = 10.
        return dict(seg_preds=logits)


@pytest.mark.parametrize('rescale, expected_shape', [(True, (100, 80)), (False, (50, 40))])
def test_predict_undoes_padding_and_resize(rescale, expected_shape):
    """Image 100x80 resized to 50x40, padded to 64x64: predictions come back at 100x80 and
    the boundary at the middle of the image, not of the padded batch."""
    head = build_head(out_stride=4)
    head.forward = _KnownLogits(img_w=40, stride=4)
    x = neck_like(torch.rand(2, 3, 64, 64))
    metas = [dict(batch_input_shape=(64, 64), img_shape=(50, 40), ori_shape=(100, 80))] * 2
    preds = head.predict(x, metas, rescale=rescale)
    assert [tuple(p.shape) for p in preds] == [(2, ) + expected_shape] * 2
    labels = preds[0].argmax(0)
    half = expected_shape[1] // 2
    assert (labels[:, :half - 2] == 1).all() and (labels[:, half + 2:] == 0).all()


def test_predict_per_image_shapes_in_a_mixed_batch():
    head = build_head().eval()
    metas = [dict(batch_input_shape=(64, 64), img_shape=(64, 48), ori_shape=(128, 96)),
             dict(batch_input_shape=(64, 64), img_shape=(40, 64), ori_shape=(40, 64))]
    with torch.no_grad():
        preds = head.predict(neck_like(torch.rand(2, 3, 64, 64)), metas)
    assert [tuple(p.shape[-2:]) for p in preds] == [(128, 96), (40, 64)]


@pytest.mark.parametrize('arch, channels, strides', [
    ('d0', 64, (8, 16, 32, 64, 128)),
    ('d3', 160, (8, 16, 32, 64, 128)),
    ('d7x', 384, (8, 16, 32, 64, 128, 256)),
])
def test_arch_gives_bifpn_width_and_strides(arch, channels, strides):
    head = MODELS.build(dict(type='EffDetSegHead', num_classes=2, arch=arch))
    assert head.in_channels == channels and head.featmap_strides == strides
    assert head.conv_seg.in_channels == channels  # feat_channels follows the BiFPN width


@pytest.mark.parametrize('norm_cfg', [dict(type='BN'), dict(type='GN', num_groups=4)])
def test_norm_eval_keeps_the_norms_frozen_in_training(norm_cfg):
    head = build_head(norm_cfg=norm_cfg, norm_eval=True).train()
    norm_types = (torch.nn.BatchNorm2d, torch.nn.GroupNorm)
    norms = [m for m in head.modules() if isinstance(m, norm_types)]
    assert norms and not any(m.training for m in norms)
    assert head.training and head.conv_seg.training
    assert all(m.training for m in build_head(norm_cfg=norm_cfg).train().modules())
    if norm_cfg['type'] == 'BN':  # eval-mode BN: running statistics stay where they were
        before = [m.running_mean.clone() for m in norms]
        head(neck_like(torch.rand(2, 3, 64, 64)))
        assert all(torch.equal(b, m.running_mean) for b, m in zip(before, norms))
