"""Batch-1 CPU latency of the deployment paths: effdet eager vs ours eager, channels-last and
onnxruntime, for EfficientDet-D0 (512x512) and EfficientDet-Lite0 (320x320), same input.

Every model holds the same weights: a random effdet model (``pretrained=False``, scores
spread like a trained model's) converted to our COCO config. Timed per model, interleaved
round by round:

- raw forward: effdet ``model(x)``; ours ``model(x, mode='tensor')`` in the default and the
  channels-last memory format; onnxruntime on a ``--no-nms`` export;
- full prediction with hard NMS 0.5 (the image's 5000 best candidates, 100 out): effdet
  ``DetBenchPredict``; ours ``model.predict`` (both formats); onnxruntime on the export with
  NMS in the graph;
- post-processing alone, on the raw outputs of one forward: effdet ``DetBenchPredict``'s
  steps after ``model(x)`` (top-k over all levels, decoding, torchvision ``batched_nms``);
  ours ``bbox_head.predict_by_feat`` (selection, decoding, rescale, NMS) on the maps of both
  memory formats, and ``predict - forward`` of each (which also holds the batching and result
  wrapping).

Both sides post-process like with like: the image's 5000 best (anchor, class) candidates,
hard NMS at IoU 0.5 per class, the 100 best kept; ours also drops scores <= 0.001 and empty
boxes (the run prints how many of the 5000 pass ``score_thr``).

    python benchmarks/deploy_latency.py [--threads 2] [--repeats 20] [--models d0 lite0]
"""
import argparse
import copy
import os.path as osp
import statistics
import sys
import tempfile
from typing import Dict

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmdet.registry import MODELS  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.config import Config  # noqa: E402

import effdet_plugin  # noqa: E402,F401
from benchmarks.effdet_d0_latency import HARD_NMS, time_rounds  # noqa: E402
from benchmarks.parity import realistic_effdet_predictions  # noqa: E402
from effdet_plugin.checkpoint.effdet_release import convert_effdet_checkpoint  # noqa: E402

# name: (effdet model, our config, input size)
MODELS_UNDER_TEST = {
    'd0': ('tf_efficientdet_d0', 'configs/effdet_b0_coco.py', 512),
    'lite0': ('tf_efficientdet_lite0', 'configs/effdet_lite0_coco.py', 320),
}


# the effdet figure each row is compared with, by the first words of the row's name that match
BASELINES = {
    'predict - forward': 'effdet predict - forward',
    'post-processing': 'effdet post-processing',
    'forward': 'effdet forward',
    'predict': 'effdet DetBenchPredict',
    'DetBenchPredict': 'effdet DetBenchPredict',
}


def build_pair(name: str, size: int):
    """effdet's random model (realistic predictions) and ours with its converted weights."""
    import effdet
    torch.manual_seed(0)
    ref = effdet.create_model(name, pretrained=False, pretrained_backbone=False,
                              image_size=(size, size))
    ref = realistic_effdet_predictions(ref, size, 0)
    ckpt = convert_effdet_checkpoint(ref.state_dict(), name=name, num_classes=90)
    cfg = Config.fromfile(MODELS_UNDER_TEST[name.split('_')[-1]][1])
    cfg.merge_from_dict(ckpt['meta']['cfg_options'])
    ours = MODELS.build(cfg.model)
    ours.load_state_dict(ckpt['state_dict'], strict=True)
    ours.bbox_head.test_cfg = copy.deepcopy(HARD_NMS)
    return ref.eval(), ours.eval()


def onnx_session(model, size: int, with_nms: bool, threads: int, folder: str):
    import onnxruntime as ort

    from effdet_plugin.deploy.onnx_export import export_onnx
    path = osp.join(folder, f'{"nms" if with_nms else "raw"}.onnx')
    export_onnx(copy.deepcopy(model), path, (size, size), with_nms=with_nms)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def bench_model(key: str, args) -> Dict[str, float]:
    import effdet
    from effdet.bench import _batch_detection, _post_process
    name, _, size = MODELS_UNDER_TEST[key]
    ref, ours = build_pair(name, size)
    bench = effdet.DetBenchPredict(ref).eval()
    ours_cl = copy.deepcopy(ours).to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    x_cl = x.contiguous(memory_format=torch.channels_last)
    x_np = x.numpy()
    sample = DetDataSample(metainfo=dict(img_shape=(size, size), scale_factor=(1., 1.),
                                         ori_shape=(size, size)))
    info = dict(img_scale=torch.ones(1), img_size=torch.tensor([[size, size]]).float())
    head = ours.bbox_head
    with torch.inference_mode():
        ref_out, our_out = ref(x), head(ours.extract_feat(x))
        our_out_cl = ours_cl.bbox_head(ours_cl.extract_feat(x_cl))

    def effdet_post_processing():  # DetBenchPredict.forward after model(x)
        cls, box, indices, classes = _post_process(*ref_out, bench.num_levels,
                                                   bench.num_classes, bench.max_detection_points)
        return _batch_detection(1, cls, box, bench.anchors.boxes, indices, classes,
                                info['img_scale'], info['img_size'], bench.max_det_per_image,
                                bench.soft_nms)

    with tempfile.TemporaryDirectory() as folder:
        raw = onnx_session(ours, size, False, args.threads, folder)
        nms = onnx_session(ours, size, True, args.threads, folder)
        fns = {
            'effdet forward': lambda: ref(x),
            'ours forward': lambda: ours(x, mode='tensor'),
            'ours forward channels-last': lambda: ours_cl(x_cl, mode='tensor'),
            'ours forward onnxruntime': lambda: raw.run(None, {'input': x_np}),
            'effdet DetBenchPredict': lambda: bench(x, img_info=info),
            'ours predict': lambda: ours.predict(x, [sample]),
            'ours predict channels-last': lambda: ours_cl.predict(x_cl, [sample]),
            'ours predict onnxruntime': lambda: nms.run(None, {'input': x_np}),
            'effdet post-processing': effdet_post_processing,
            'ours post-processing': lambda: head.predict_by_feat(
                *our_out, batch_img_metas=[sample.metainfo], rescale=True),
            'ours post-processing channels-last': lambda: ours_cl.bbox_head.predict_by_feat(
                *our_out_cl, batch_img_metas=[sample.metainfo], rescale=True),
        }
        times = time_rounds(fns, args.warmup, args.repeats)
    medians = {n: statistics.median(t) for n, t in times.items()}
    medians['effdet predict - forward'] = (medians['effdet DetBenchPredict']
                                           - medians['effdet forward'])
    medians['ours predict - forward'] = medians['ours predict'] - medians['ours forward']
    medians['ours predict - forward channels-last'] = (medians['ours predict channels-last']
                                                       - medians['ours forward channels-last'])
    with torch.inference_mode():
        scores = head.decode_candidates(*our_out, head.prior_generator.grid_priors(
            [c.shape[-2:] for c in our_out[0]], device='cpu'), (size, size))[0]
    print(f'\n{key}: {size}x{size}, batch 1, fp32, {torch.get_num_threads()} threads, median of '
          f'{args.repeats} interleaved rounds; post-processing of both: the image\'s '
          f'{head.test_cfg.nms_pre} best candidates, hard NMS '
          f'{head.test_cfg.nms.iou_threshold}, {head.test_cfg.max_per_img} out '
          f'(ours: {scores.shape[1]} of them above score_thr {head.test_cfg.score_thr})')
    width = max(map(len, medians))
    for n, t in medians.items():
        base = medians[next(b for k, b in BASELINES.items() if k in n)]
        print(f'  {n:<{width}}  {1e3 * t:8.1f} ms  {t / base:5.2f}x effdet')
    return medians


def main(argv=None) -> Dict[str, Dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--models', nargs='+', default=list(MODELS_UNDER_TEST),
                        choices=list(MODELS_UNDER_TEST))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    register_all_modules()
    return {key: bench_model(key, args) for key in args.models}


if __name__ == '__main__':
    main()
