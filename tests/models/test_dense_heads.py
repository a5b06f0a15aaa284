"""EffDetHead: layers, anchors, losses (checked against effdet), prediction, parameter count."""
from pathlib import Path

import effdet
import pytest
import torch
from effdet import anchors as anchors_mod
from effdet import loss as loss_mod
from mmdet.registry import MODELS, TASK_UTILS
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

import effdet_plugin  # noqa: F401  (registers the components)
from effdet_plugin.models.dense_heads import EffDetHead
from effdet_plugin.models.task_modules import EffDetAnchorGenerator
from effdet_plugin.models.task_modules.anchor_generator import CACHED_PRIOR_SETS
from effdet_plugin.models.utils import get_det_scale, topk_candidates
from effdet_plugin.models.utils.candidates import (
    flatten_map,
    is_channels_last,
    select_candidates,
    top_indices,
)
from tests.models.head_settings import official_settings

EFFDET_ASPECTS = [(1.0, 1.0), (1.4, 0.7), (0.7, 1.4)]
CONFIGS = Path(__file__).resolve().parents[2] / 'configs'


def _level_sizes(head, height, width):
    return [(height // s[0], width // s[0]) for s in head.prior_generator.strides]


def _outputs(head, height, width, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    cls, reg = [], []
    for h, w in _level_sizes(head, height, width):
        cls.append(torch.randn(batch, head.num_base_priors * head.num_classes, h, w,
                               generator=g).requires_grad_())
        reg.append((0.2 * torch.randn(batch, head.num_base_priors * 4, h, w,
                                      generator=g)).requires_grad_())
    return cls, reg


def _gt(num_classes, height, width, num=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num, 2, generator=g) * torch.tensor([width - 60., height - 60.])
    wh = torch.rand(num, 2, generator=g) * 50 + 8
    return InstanceData(bboxes=torch.cat([xy, xy + wh], 1),
                        labels=torch.randint(0, num_classes, (num, ), generator=g))


def _metas(height, width, batch=2, scale=1.0):
    ori = (round(height / scale), round(width / scale))
    return [dict(img_shape=(height, width), pad_shape=(height, width), ori_shape=ori,
                 scale_factor=(scale, scale)) for _ in range(batch)]


@pytest.mark.parametrize('arch', ['d0', 'd3', 'd7', 'd7x'])
def test_layers_follow_arch(arch):
    scale = get_det_scale(arch)
    head = MODELS.build(dict(type='EffDetHead', num_classes=3, arch=arch, **official_settings()))
    num_levels = scale.max_level - scale.min_level + 1
    assert head.in_channels == scale.fpn_channels
    assert len(head.cls_convs) == len(head.reg_convs) == scale.head_repeats
    assert head.num_levels == num_levels == len(head.cls_norms) == len(head.reg_norms)
    assert head.prior_generator.octave_base_scale == scale.anchor_scale
    # one norm per level per conv, never shared between levels
    norms = [id(n) for level in head.cls_norms for n in level]
    assert len(set(norms)) == num_levels * scale.head_repeats
    assert head.num_base_priors == 9


def test_forward_shapes_non_square():
    head = EffDetHead(num_classes=5, in_channels=16, stacked_convs=2,
                      **official_settings()).eval()
    feats = [torch.randn(1, 16, 128 // s, 384 // s) for s in (8, 16, 32, 64, 128)]
    with torch.no_grad():
        cls, reg = head(feats)
    for c, r, f in zip(cls, reg, feats):
        assert c.shape == (1, 9 * 5, *f.shape[-2:]) and r.shape == (1, 9 * 4, *f.shape[-2:])
    with pytest.raises(ValueError):
        head(feats[:4])


def test_init_prior_probability():
    head = EffDetHead(num_classes=5, in_channels=16, stacked_convs=1, **official_settings())
    head.init_weights()
    bias = head.cls_pred.pointwise_conv.conv.bias
    assert torch.allclose(bias.sigmoid(), torch.full_like(bias, 0.01), atol=1e-6)
    assert torch.all(head.reg_pred.pointwise_conv.conv.bias == 0)
    # TF variance scaling: std ~ 1/sqrt(fan_in) (fan_in 9 for a 3x3 depthwise conv)
    assert abs(head.cls_convs[0].depthwise_conv.conv.weight.std().item() - 1 / 3) < 0.08


@pytest.mark.parametrize('size,anchor_scale,max_level', [((256, 384), 4.0, 7),
                                                         ((256, 512), 5.0, 8)])
def test_anchors_match_effdet(size, anchor_scale, max_level):
    strides = [2**level for level in range(3, max_level + 1)]
    gen = TASK_UTILS.build(dict(type='EffDetAnchorGenerator', strides=strides,
                                octave_base_scale=anchor_scale))
    sizes = [(size[0] // s, size[1] // s) for s in strides]
    ours = torch.cat(gen.grid_priors(sizes, device='cpu'))
    ref = anchors_mod.Anchors(3, max_level, 3, EFFDET_ASPECTS, anchor_scale, size).boxes
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref[:, [1, 0, 3, 2]], rtol=0, atol=1e-3)


def test_anchor_generator_aspects_are_width_height():
    gen = EffDetAnchorGenerator([8], aspect_ratios=[(1.4, 0.7)], scales_per_octave=1)
    (box, ) = gen.base_anchors[0]
    assert torch.allclose(box[2:] - box[:2], torch.tensor([32 * 1.4, 32 * 0.7]))
    assert torch.allclose((box[2:] + box[:2]) / 2, torch.tensor([4.0, 4.0]))
    with pytest.raises(ValueError):
        EffDetAnchorGenerator([8], aspect_ratios=[(1.0, 1.0, 1.0)])


def test_anchor_generator_keeps_the_anchors_of_recent_sizes():
    gen = EffDetAnchorGenerator([8, 16])
    sizes = [(8, 6), (4, 3)]
    first = gen.grid_priors(sizes, device='cpu')
    assert all(a is b for a, b in zip(first, gen.grid_priors(sizes, device='cpu')))
    other = gen.grid_priors([(6, 8), (3, 4)], device='cpu')
    assert other[0] is not first[0] and not torch.equal(other[0], first[0])
    assert gen.grid_priors(sizes, dtype=torch.float64, device='cpu')[0].dtype == torch.float64
    # inference tensors cannot enter autograd: a training step gets its own
    with torch.inference_mode():
        assert gen.grid_priors(sizes, device='cpu')[0].is_inference()
    assert not gen.grid_priors(sizes, device='cpu')[0].is_inference()
    for size in range(1, CACHED_PRIOR_SETS + 1):  # evicts the oldest
        gen.grid_priors([(size, size), (1, 1)], device='cpu')
    again = gen.grid_priors(sizes, device='cpu')
    assert again[0] is not first[0] and torch.equal(again[0], first[0])


def test_loss_computes_and_backprops():
    head = EffDetHead(num_classes=4, in_channels=16, stacked_convs=1, **official_settings())
    feats = [torch.randn(2, 16, 128 // s, 256 // s, requires_grad=True)
             for s in (8, 16, 32, 64, 128)]
    gts = [_gt(4, 128, 256, num=2, seed=i) for i in range(2)]
    losses = head.loss_by_feat(*head(feats), gts, _metas(128, 256))
    total = sum(sum(v) for v in losses.values())
    assert torch.isfinite(total) and sum(losses['loss_bbox']) > 0
    total.backward()
    assert feats[0].grad.abs().sum() > 0
    assert head.cls_norms[0][0].weight.grad is not None
    assert head.reg_pred.pointwise_conv.conv.weight.grad.abs().sum() > 0


def test_loss_without_objects_is_finite():
    head = EffDetHead(num_classes=4, in_channels=16, stacked_convs=1, **official_settings())
    cls, reg = _outputs(head, 128, 128)
    empty = [InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
             for _ in range(2)]
    losses = head.loss_by_feat(cls, reg, empty, _metas(128, 128))
    assert torch.isfinite(sum(losses['loss_cls'])) and sum(losses['loss_bbox']) == 0


def test_loss_equals_effdet_loss_fn():
    """Same outputs and boxes -> the same focal and Huber losses as efficientdet-pytorch.

    Also checks our MaxIoUAssigner settings reproduce effdet's ArgMaxMatcher, the box coder
    (no target scaling) and the ``num_pos + 1`` normaliser.
    """
    height, width, num_classes = 128, 256, 5
    head = EffDetHead(num_classes=num_classes, arch='d0', **official_settings())
    cls, reg = _outputs(head, height, width)
    gts = [_gt(num_classes, height, width, seed=i) for i in range(2)]
    ours = head.loss_by_feat(cls, reg, gts, _metas(height, width))

    labeler = anchors_mod.AnchorLabeler(
        anchors_mod.Anchors(3, 7, 3, EFFDET_ASPECTS, 4.0, (height, width)), num_classes, 0.5)
    cls_t, box_t, num_pos = labeler.batch_label_anchors(
        [g.bboxes[:, [1, 0, 3, 2]] for g in gts], [g.labels + 1 for g in gts])
    assert num_pos.sum() > 10

    def to_yx(r):  # our (dx, dy, dw, dh) per anchor -> effdet (ty, tx, th, tw)
        return r.reshape(r.shape[0], -1, 4, *r.shape[2:])[:, :, [1, 0, 3, 2]].flatten(1, 2)

    _, ref_cls, ref_box = loss_mod.loss_fn(
        cls, [to_yx(r) for r in reg], cls_t, box_t, num_pos, num_classes=num_classes,
        alpha=0.25, gamma=1.5, delta=0.1, box_loss_weight=50.0)
    torch.testing.assert_close(sum(ours['loss_cls']), ref_cls, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sum(ours['loss_bbox']), 50.0 * ref_box.float(), rtol=1e-5,
                               atol=1e-6)


def test_official_settings_are_the_configs():
    """The head keeps what the config gives it (official: Gaussian soft-NMS, 100 boxes)."""
    head = EffDetHead(num_classes=2, in_channels=16, stacked_convs=1, **official_settings())
    nms = head.test_cfg.nms
    assert (nms.type, nms.method, nms.sigma) == ('soft_nms', 'gaussian', 0.5)
    assert head.test_cfg.max_per_img == 100
    assert head.train_cfg.assigner.pos_iou_thr == 0.5
    hard = EffDetHead(num_classes=2, in_channels=16, stacked_convs=1,
                      **official_settings(nms=dict(type='nms', iou_threshold=0.6)))
    assert hard.test_cfg.nms == dict(type='nms', iou_threshold=0.6)


def test_missing_settings_raise_and_name_the_config():
    with pytest.raises(ValueError, match='needs a test_cfg.*efficientdet_d0.py'):
        EffDetHead(num_classes=2, in_channels=16, stacked_convs=1)
    test_cfg = official_settings()['test_cfg']
    del test_cfg['nms']
    with pytest.raises(ValueError, match='test_cfg lacks nms'):
        EffDetHead(num_classes=2, in_channels=16, stacked_convs=1, test_cfg=test_cfg)
    # without a train_cfg the head predicts, and refuses to compute losses
    head = EffDetHead(num_classes=2, in_channels=16, stacked_convs=1,
                      test_cfg=official_settings()['test_cfg']).eval()
    cls, reg = _outputs(head, 64, 64, batch=1)
    with torch.no_grad():
        assert head.predict_by_feat(cls, reg, batch_img_metas=_metas(64, 64, batch=1))
    with pytest.raises(ValueError, match='without a train_cfg'):
        head.loss_by_feat(cls, reg, [_gt(2, 64, 64)], _metas(64, 64, batch=1))


@pytest.mark.parametrize('nms', [None, dict(type='nms', iou_threshold=0.5)])
def test_predict_caps_detections_in_original_coordinates(nms):
    test_cfg = official_settings()['test_cfg']
    if nms is not None:
        test_cfg = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=nms, max_per_img=100)
    head = EffDetHead(num_classes=3, in_channels=16, stacked_convs=1, test_cfg=test_cfg).eval()
    cls, reg = _outputs(head, 128, 256)
    cls = [c.detach() + 3.0 for c in cls]  # confident everywhere: far more than 100 candidates
    # network input 128x256 was resized by 2 from a 64x128 original image
    metas = _metas(128, 256, scale=2.0)
    results = head.predict_by_feat(cls, [r.detach() for r in reg], batch_img_metas=metas,
                                   rescale=True)
    assert len(results) == 2
    for res in results:
        assert len(res) == 100
        assert res.bboxes.min() >= 0
        assert res.bboxes[:, 0::2].max() <= 128 and res.bboxes[:, 1::2].max() <= 64
        assert res.bboxes[:, 2].max() > 64  # would be impossible in a 64-wide half scale
        assert torch.all(res.scores[:-1] >= res.scores[1:])


def _level_maps(anchors, classes, height, width, batch=1, seed=1):
    """Class logits and deltas of one level, and priors whose x1 is their index."""
    g = torch.Generator().manual_seed(seed)
    cls_score = torch.randn(batch, anchors * classes, height, width, generator=g)
    bbox_pred = torch.randn(batch, anchors * 4, height, width, generator=g)
    priors = torch.arange(height * width * anchors, dtype=torch.float)[:, None].repeat(1, 4)
    return cls_score, bbox_pred, priors


@pytest.mark.parametrize('nms_pre,score_thr', [(1000, 0.05), (50, 0.001), (-1, 0.3)])
def test_topk_candidates_match_mmdet_selection(nms_pre, score_thr):
    from mmdet.models.utils import filter_scores_and_topk
    anchors, classes = 3, 7
    cls_score, bbox_pred, priors = _level_maps(anchors, classes, 40, 30)
    scores, labels, deltas, cand_priors = topk_candidates(
        cls_score, bbox_pred, priors, classes, nms_pre, score_thr)
    flat = cls_score[0].permute(1, 2, 0).reshape(-1, classes)  # mmdet's (prior, class) layout
    ref_deltas = bbox_pred[0].permute(1, 2, 0).reshape(-1, 4)
    ref_scores, ref_labels, ref_priors, ref = filter_scores_and_topk(
        flat.sigmoid(), score_thr, nms_pre if nms_pre > 0 else flat.numel(),
        dict(deltas=ref_deltas))
    scores, labels, deltas = scores[0], labels[0], deltas[0]
    priors = cand_priors[0, :, 0].long()  # the gathered priors say their index
    # same (prior, class) candidates with the same scores; equal scores may come in any order
    assert len(scores) > 0
    keys, ref_keys = priors * classes + labels, ref_priors * classes + ref_labels
    assert set(keys.tolist()) == set(ref_keys.tolist())
    assert torch.equal(scores, ref_scores)
    assert torch.equal(flat[priors, labels].sigmoid(), scores)
    assert torch.equal(deltas[keys.argsort()], ref['deltas'][ref_keys.argsort()])


@pytest.mark.parametrize('nms_pre', [200, 5000])
def test_static_shape_candidates_equal_the_eager_ones(nms_pre):
    """The traceable form keeps exactly nms_pre candidates per image of a batch (padding ones
    with score 0 when the level holds fewer: 1800 scores at 20x15), and its non-zero ones are
    the eager selection of each image, in the same order."""
    anchors, classes, score_thr = 3, 2, 0.3
    for height, width in [(40, 30), (20, 15)]:
        cls_score, bbox_pred, priors = _level_maps(anchors, classes, height, width, batch=2)
        batch = topk_candidates(cls_score, bbox_pred, priors, classes, nms_pre, score_thr,
                                static_shape=True)
        assert batch[0].shape == batch[1].shape == (2, nms_pre)
        assert batch[2].shape == batch[3].shape == (2, nms_pre, 4)
        for i in range(2):
            eager = topk_candidates(cls_score[i:i + 1], bbox_pred[i:i + 1], priors, classes,
                                    nms_pre, score_thr)
            kept = batch[0][i] > 0
            assert kept.sum() == eager[0].shape[1] > 0
            assert (batch[0][i, ~kept] == 0).all()
            for ours, ref in zip(batch, eager):
                assert torch.equal(ours[i][kept], ref[0])
    with pytest.raises(ValueError, match='one image'):
        topk_candidates(cls_score, bbox_pred, priors, classes, nms_pre, score_thr)


@pytest.mark.parametrize('scope,nms_pre', [('level', 300), ('image', 300), ('image', 10**6)])
def test_channels_last_maps_give_the_same_candidates(scope, nms_pre):
    """Maps stored channels-last (the inference default) are read in place, not copied:
    same candidates, in the same order, as from contiguous maps."""
    anchors, classes = 3, 5
    levels = [_level_maps(anchors, classes, size, size + 2, seed=size) for size in (16, 8, 4)]
    cls, reg, priors = zip(*levels)
    stored = cls[0].contiguous(memory_format=torch.channels_last)
    assert is_channels_last(stored) and not is_channels_last(cls[0])
    assert flatten_map(stored, True).data_ptr() == stored.data_ptr()  # a view
    ours = select_candidates(
        [c.contiguous(memory_format=torch.channels_last) for c in cls],
        [r.contiguous(memory_format=torch.channels_last) for r in reg], priors, classes,
        nms_pre, 0.05, scope)
    ref = select_candidates(cls, reg, priors, classes, nms_pre, 0.05, scope)
    assert 300 <= ours[0].shape[1] < sum(c.numel() for c in cls)
    for part, ref_part in zip(ours, ref):
        assert torch.equal(part, ref_part)


@pytest.mark.parametrize('k', [1, 40, 999])
def test_top_indices_prefilter_is_exact(k):
    values = torch.randn(200_000, generator=torch.Generator().manual_seed(k))
    assert set(top_indices(values, k).tolist()) == set(values.topk(k).indices.tolist())
    # ties defeat the sampled threshold: the full top-k runs and still returns k of the best
    tied = torch.zeros(200_000)
    tied[:5] = 1.0
    index = top_indices(tied, k)
    assert len(index) == k and tied[index].sum() == min(k, 5)
    assert torch.equal(top_indices(values[:10], 0), values[:10].argsort(descending=True))


@pytest.mark.parametrize('nms', [None, dict(type='nms', iou_threshold=0.5)])
def test_predict_equals_mmdet_post_processing(nms):
    """Our top-k selection feeds mmdet's post-processing the same candidates as its sort."""
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
    test_cfg = dict(nms_pre=300, min_bbox_size=0, score_thr=0.01, max_per_img=100,
                    nms=nms or dict(type='soft_nms', iou_threshold=0.3, sigma=0.5,
                                    min_score=1e-3, method='gaussian'))
    head = EffDetHead(num_classes=5, in_channels=16, stacked_convs=1, test_cfg=test_cfg).eval()
    cls, reg = _outputs(head, 128, 192, batch=1)
    cls, reg = [c.detach() - 2.0 for c in cls], [r.detach() for r in reg]
    metas = _metas(128, 192, batch=1, scale=2.0)
    ours = head.predict_by_feat(cls, reg, batch_img_metas=metas, rescale=True)[0]
    with pytest.MonkeyPatch.context() as mp:  # mmdet's own single-image path
        mp.setattr(EffDetHead, '_predict_by_feat_single', BaseDenseHead._predict_by_feat_single)
        ref = head.predict_by_feat(cls, reg, batch_img_metas=metas, rescale=True)[0]
    assert len(ours) == len(ref) == 100
    assert torch.equal(ours.labels, ref.labels)
    torch.testing.assert_close(ours.bboxes, ref.bboxes)
    torch.testing.assert_close(ours.scores, ref.scores)


def test_image_scope_keeps_the_best_candidates_of_all_levels():
    test_cfg = dict(nms_pre=200, nms_pre_scope='image', min_bbox_size=-1, score_thr=0.01,
                    nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)
    head = EffDetHead(num_classes=4, in_channels=16, stacked_convs=1, test_cfg=test_cfg).eval()
    cls, reg = _outputs(head, 128, 128, batch=1)
    cls, reg = [c.detach() for c in cls], [r.detach() for r in reg]
    metas = _metas(128, 128, batch=1)
    res = head.predict_by_feat(cls, reg, batch_img_metas=metas, with_nms=False)[0]
    every_score = torch.cat([c[0].permute(1, 2, 0).reshape(-1) for c in cls]).sigmoid()
    assert len(res) == 200
    torch.testing.assert_close(res.scores.sort(descending=True).values,
                               every_score.topk(200).values)
    per_level = head.predict_by_feat(
        cls, reg, batch_img_metas=metas, with_nms=False,
        cfg=ConfigDict(test_cfg, nms_pre_scope='level'))[0]
    above = [int((c.sigmoid() > 0.01).sum()) for c in cls]
    assert len(per_level) == sum(min(200, n) for n in above) > 200
    with pytest.raises(ValueError, match="'level'.*'image'"):
        head.predict_by_feat(cls, reg, batch_img_metas=metas,
                             cfg=ConfigDict(test_cfg, nms_pre_scope='all'))


@pytest.mark.parametrize('nms', [dict(type='nms', iou_threshold=0.5),
                                 dict(type='soft_nms', iou_threshold=0.5, sigma=0.5,
                                      min_score=1e-3, method='gaussian')])
def test_fast_post_processing_equals_the_straightforward_one(nms):
    """A COCO Lite0 whose random weights predict like a trained model's: our prediction (one
    top-k over the unpermuted logits of all levels, decoding of the candidates only, NMS
    class by class) gives the detections of the plain recipe: every score's sigmoid, the
    image's top 5000, decoding, mmcv's batched_nms."""
    from mmcv.ops import batched_nms as mmcv_batched_nms
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from effdet_plugin.deploy.random_weights import realistic_random_detector
    init_default_scope('mmdet')
    cfg = Config.fromfile(str(CONFIGS / 'effdet_lite0_coco.py'))
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    x = torch.randn(1, 3, 320, 320, generator=torch.Generator().manual_seed(0))
    realistic_random_detector(model, x)
    head = model.bbox_head
    test_cfg = ConfigDict(nms_pre=5000, nms_pre_scope='image', min_bbox_size=0,
                          score_thr=0.001, nms=nms, max_per_img=100)
    meta = dict(img_shape=(320, 320), ori_shape=(640, 640), scale_factor=(0.5, 0.5))
    with torch.no_grad():
        cls, reg = head(model.extract_feat(x))
        ours = head.predict_by_feat(cls, reg, batch_img_metas=[meta], cfg=test_cfg,
                                    rescale=True)[0]
    num_classes = head.num_classes
    scores = torch.cat([c[0].permute(1, 2, 0).reshape(-1, num_classes) for c in cls]).sigmoid()
    deltas = torch.cat([r[0].permute(1, 2, 0).reshape(-1, 4) for r in reg])
    priors = torch.cat(head.prior_generator.grid_priors([c.shape[-2:] for c in cls],
                                                        device='cpu'))
    top, index = scores.flatten().topk(5000)
    anchor, labels = index // num_classes, index % num_classes
    boxes = head.bbox_coder.decode(priors[anchor], deltas[anchor], max_shape=(320, 320)) * 2
    wh = boxes[:, 2:] - boxes[:, :2]
    valid = (wh > 0).all(1) & (top > 0.001)
    dets, keep = mmcv_batched_nms(boxes[valid], top[valid], labels[valid], nms)
    assert 0.05 < scores.max() and len(ours) == 100 and len(keep) > 100  # NMS had work
    assert torch.equal(ours.labels, labels[valid][keep][:100])
    torch.testing.assert_close(ours.bboxes, boxes[valid][keep][:100])
    torch.testing.assert_close(ours.scores, dets[:100, -1])


def test_d0_param_count_matches_effdet():
    ref = effdet.create_model('tf_efficientdet_d0', pretrained=False, pretrained_backbone=False)
    head = EffDetHead(num_classes=ref.config.num_classes, arch='d0', **official_settings())
    neck = MODELS.build(dict(type='EffBiFPN', in_channels=[40, 112, 320], arch='d0'))
    count = lambda *mods: sum(p.numel() for m in mods for p in m.parameters())  # noqa: E731
    assert count(head) == count(ref.class_net, ref.box_net) == 88398
    # with effdet's own B0 backbone the whole model is the published 3.880M
    assert count(ref.backbone, neck, head) == count(ref) == 3880067
