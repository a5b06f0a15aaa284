"""RTMDet-Ins export: boxes and masks from onnxruntime match PyTorch's predict instance by
instance.

The nuclei RTMDet-Ins config runs with random weights made to predict like a trained model
(:func:`realistic_random_detector`: spread scores, boxes a few strides wide, masks that are
blobs around each point rather than empty or everywhere), on 256x256 of the nuclei strip.
"""
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from effdet_plugin.deploy import OnnxRuntimeDetector, infer, postprocess_masks, preprocess
from effdet_plugin.deploy import export as export_tool
from effdet_plugin.deploy.compare import match_instances
from effdet_plugin.deploy.instance_export import instance_mask_logits
from effdet_plugin.deploy.onnx_export import export_onnx, preprocess_metadata

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'configs/medical/rtmdet-ins_effnet-lite0_bifpn-p2_nuclei.py'


@pytest.fixture(scope='module')
def ins_model(nuclei_image, random_detector):
    """The RTMDet-Ins model with realistic random weights on the image, and the image's
    network input and meta."""
    from mmengine.config import Config
    pre = Config.fromfile(str(CONFIG)).model.data_preprocessor
    batch, meta = preprocess(nuclei_image, pre.mean, pre.std, to_rgb=True)
    cfg, model = random_detector(CONFIG, torch.from_numpy(batch))
    return cfg, model, batch, meta


@pytest.fixture(scope='module')
def ins_export(ins_model, tmp_path_factory):
    """The model exported with dynamic batch, height and width, traced at 128x128."""
    cfg, model, batch, _ = ins_model
    onnx_file = str(tmp_path_factory.mktemp('ins') / 'rtmdet_ins.onnx')
    export_onnx(model, onnx_file, (128, 128), dynamic=True, dynamic_hw=True,
                metadata=preprocess_metadata(cfg, None, ('nucleus', )))
    return onnx_file


def pytorch_instances(model, batch: np.ndarray, meta: dict) -> dict:
    """PyTorch's predict (the head's own post-processing, rescaled to the image)."""
    sample = DetDataSample(metainfo=dict(
        img_shape=meta['img_shape'], ori_shape=meta['ori_shape'], pad_shape=batch.shape[-2:],
        batch_input_shape=batch.shape[-2:], scale_factor=meta['scale_factor']))
    with torch.no_grad():
        inst = model.predict(torch.from_numpy(batch), [sample])[0].pred_instances.numpy()
    return dict(boxes=inst.bboxes, scores=inst.scores, labels=inst.labels, masks=inst.masks)


def test_mask_logits_equal_the_head(ins_model):
    """The batched dynamic convs equal RTMDetInsHead._mask_predict_by_feat_single per image."""
    _, model, _, _ = ins_model
    head = model.bbox_head
    gen = torch.Generator().manual_seed(0)
    mask_feat = torch.randn(2, head.num_prototypes, 12, 20, generator=gen)
    kernels = torch.randn(2, 5, head.num_gen_params, generator=gen)
    strides = torch.tensor([4.0, 8.0, 16.0])[torch.randint(3, (2, 5, 1), generator=gen)]
    priors = torch.cat([torch.rand(2, 5, 2, generator=gen) * 60, strides, strides], dim=-1)
    ours = instance_mask_logits(head, mask_feat, kernels, priors)
    for b in range(2):
        ref = head._mask_predict_by_feat_single(mask_feat[b], kernels[b], priors[b])
        torch.testing.assert_close(ours[b], ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('scale', [(1.0, 1.0), (0.5, 0.5), (0.8, 0.75)])
def test_masks_rescaled_as_the_head(ins_model, scale):
    """postprocess_masks (numpy) makes the masks RTMDetInsHead._bbox_mask_post_process makes
    from the same instances, for images the pipeline resized too."""
    _, model, batch, _ = ins_model
    head = model.bbox_head
    with torch.no_grad():
        _, _, kernel_preds, mask_feat = head(model.extract_feat(torch.from_numpy(batch)))
    # 10 points of P2 far apart (no NMS suppression), their predicted kernels
    index = torch.arange(10) * 403
    kernels = kernel_preds[0][0].flatten(1).t()[index]
    priors = head.prior_generator.single_level_grid_priors(
        kernel_preds[0].shape[-2:], level_idx=0, device='cpu', with_stride=True)[index]
    h, w = batch.shape[-2:]
    ori_shape = (int(h / scale[1]), int(w / scale[0]))
    results = InstanceData(bboxes=torch.cat([priors[:, :2] - 4, priors[:, :2] + 4], dim=1),
                           scores=torch.linspace(0.9, 0.5, 10), labels=torch.zeros(10).long(),
                           kernels=kernels, priors=priors)
    meta = dict(img_shape=(h, w), ori_shape=ori_shape, scale_factor=scale)
    with torch.no_grad():
        ref = head._bbox_mask_post_process(results, mask_feat[0], head.test_cfg, rescale=True,
                                           img_meta=meta).masks.numpy()
        logits = instance_mask_logits(head, mask_feat, kernels[None], priors[None])[0].numpy()
    ours = postprocess_masks(logits, meta, stride=4, threshold=head.test_cfg.mask_thr_binary)
    assert ours.shape == (10, ) + ori_shape
    # mmdet divides the height by the width factor: its masks can be smaller than the image
    rh, rw = ref.shape[1:]
    assert rh >= ori_shape[0] - 25 and rw >= ori_shape[1] - 25
    assert not ours[:, rh:].any() and not ours[:, :, rw:].any()
    assert ref.any(axis=(1, 2)).sum() >= 5, 'masks mostly empty: the test compares little'
    assert (ours[:, :rh, :rw] != ref).mean() < 1e-4


def test_onnxruntime_masks_match_pytorch(ins_model, ins_export):
    """Every instance: same box (IoU >= 0.999) and score, mask IoU >= 0.99 (or one pixel
    apart: in a mask under 100 px one pixel at the threshold, where the runtimes' float32
    rounding decides, is more than 1%); the file traced at 128x128 runs at 256x256."""
    _, model, batch, meta = ins_model
    ref = pytorch_instances(model, batch, meta)
    detector = OnnxRuntimeDetector(ins_export)
    assert detector.mask_args == dict(stride=4, threshold=0.5)
    ours = detector.run_batch(batch, [meta])[0]
    assert ours['masks'].shape == (len(ours['scores']), ) + meta['ori_shape']
    stats = match_instances(ref, ours)
    assert stats['unmatched_ours'] == stats['unmatched_ref'] == 0
    nonempty = (stats['mask_area'] > 0).sum()
    print(f"{len(ref['scores'])} instances ({nonempty} masks not empty, median "
          f"{np.median(stats['mask_area'])} px): box IoU min {stats['box_iou'].min():.5f}, "
          f"score diff max {stats['score_diff'].max():.1e}, mask IoU min "
          f"{stats['mask_iou'].min():.4f} median {np.median(stats['mask_iou']):.4f}")
    assert len(ref['scores']) >= 50 and nonempty >= len(ref['scores']) // 2
    assert stats['box_iou'].min() >= 0.999
    assert stats['score_diff'].max() <= 1e-3
    assert ((stats['mask_iou'] >= 0.99) | (stats['mask_diff'] <= 1)).all()
    assert (stats['mask_iou'][stats['mask_area'] >= 100] >= 0.99).all()


def test_parity_check_catches_a_wrong_mask_threshold(ins_model, ins_export):
    """The parity check above can fail: masks made at threshold 0.6 instead of the head's
    0.5 fall below mask IoU 0.99."""
    _, model, batch, meta = ins_model
    ref = pytorch_instances(model, batch, meta)
    detector = OnnxRuntimeDetector(ins_export)
    detector.mask_args = dict(detector.mask_args, threshold=0.6)
    stats = match_instances(ref, detector.run_batch(batch, [meta])[0])
    assert stats['box_iou'].min() >= 0.999  # same instances, other masks
    assert stats['mask_iou'].min() < 0.99


def test_batch_of_two_keeps_images_apart(ins_model, ins_export):
    _, _, batch, meta = ins_model
    detector = OnnxRuntimeDetector(ins_export)
    flipped = np.ascontiguousarray(batch[..., ::-1])
    single = [detector.run_batch(x, [meta])[0] for x in (batch, flipped)]
    pair = detector.run_batch(np.concatenate([batch, flipped]), [meta, meta])
    for one, two in zip(single, pair):
        stats = match_instances(one, two)
        assert stats['unmatched_ours'] == 0 and stats['mask_iou'].min() >= 0.99


def test_export_cli_chooses_the_instance_export(tmp_path):
    out = tmp_path / 'ins.onnx'
    export_tool.main([str(CONFIG), 'none', '--out', str(out), '--shape', '128', '96',
                      '--no-nms'])
    session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    assert names == [f'{kind}_{i}' for kind in ('cls_score', 'bbox_pred', 'kernel_pred')
                     for i in range(3)] + ['mask_feat']
    outputs = dict(zip(names, session.run(None, {'input': np.zeros((1, 3, 128, 96),
                                                                    np.float32)})))
    assert outputs['kernel_pred_0'].shape == (1, 169, 32, 24)
    assert outputs['mask_feat'].shape == (1, 8, 32, 24)


def test_infer_onnxruntime_draws_the_masks_pytorch_draws(ins_model, ins_export, nuclei_image,
                                                         tmp_path):
    """tools/infer.py: both backends write the same detections.json and draw the masks on
    the same pixels."""
    import json
    _, model, _, _ = ins_model
    image = tmp_path / 'images' / 'crop.png'
    image.parent.mkdir()
    cv2.imwrite(str(image), nuclei_image)
    checkpoint = tmp_path / 'ins.pth'
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(classes=('nucleus', )))), checkpoint)
    results = {}
    for backend in ('pytorch', 'onnxruntime'):
        out_dir = tmp_path / backend
        infer.main([str(CONFIG), str(checkpoint), str(image.parent), '--out-dir', str(out_dir),
                    '--backend', backend, '--onnx', ins_export, '--score-thr', '0.3',
                    '--workers', '0'])
        detections = json.loads((out_dir / 'detections.json').read_text())[str(image)]
        results[backend] = (detections, cv2.imread(str(out_dir / 'crop.png')))
    (ref, ref_png), (ours, png) = results['pytorch'], results['onnxruntime']
    assert len(ours) == len(ref) and sum(d['score'] >= 0.3 for d in ref) >= 10
    np.testing.assert_allclose([d['bbox'] for d in ours[:10]], [d['bbox'] for d in ref[:10]],
                               atol=0.05)
    # mmdet's visualizer jitters each mask's colour at random: compare what was drawn on
    drawn, ref_drawn = ((p != nuclei_image).any(axis=-1) for p in (png, ref_png))
    assert ref_drawn.mean() > 0.05, 'nothing drawn'
    assert (drawn != ref_drawn).mean() < 0.01 * ref_drawn.mean()
