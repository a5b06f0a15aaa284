"""Batch-1 CPU latency of our EfficientDet-D0 against efficientdet-pytorch's tf_efficientdet_d0.

Both models hold the same weights: a random effdet model (``pretrained=False``; prediction
convs scaled so that scores spread like a trained model's) converted to our
``configs/effdet_b0_coco.py`` with its 90 class slots, so the raw outputs are identical and
post-processing sees the same candidates. Timed, on the same 512x512 input:

- raw network forward: ours ``model(x, mode='tensor')``, effdet ``model(x)``;
- full prediction with NMS: ours ``model.predict`` (the config's Gaussian soft-NMS, and
  effdet's hard NMS 0.5), effdet ``DetBenchPredict`` (top 5000 candidates, hard NMS);
- ours runs in channels-last memory format, as tools/test.py and tools/infer.py do
  (``--no-channels-last``: contiguous NCHW); effdet in its default format, and optionally
  (``--effdet-channels-last``) its raw forward in channels-last too;
- optionally (``--mmdet-selection``) our hard-NMS prediction with mmdet's per-level
  ``nms_pre``, once with ``EffDetHead``'s partial top-k and once with mmdet's stock
  candidate selection (a full sort of every score above the threshold); the detections of
  the two are checked to be the same.

Runs are interleaved (one of each variant per round) so that load changes on a shared machine
hit all variants alike; medians over ``--repeats`` rounds after ``--warmup``.

    python benchmarks/effdet_d0_latency.py [--threads 2] [--repeats 20] [--no-channels-last]
                                            [--effdet-channels-last] [--mmdet-selection]
"""
import argparse
import contextlib
import copy
import os.path as osp
import statistics
import sys
import time
from typing import Callable, Dict, List

import torch
import torch.nn as nn

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmdet.registry import MODELS  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.config import Config, ConfigDict  # noqa: E402

import effdet_plugin  # noqa: E402,F401
from benchmarks.parity import realistic_effdet_predictions  # noqa: E402
from effdet_plugin.checkpoint.effdet_release import convert_effdet_checkpoint  # noqa: E402
from effdet_plugin.cli import memory_format  # noqa: E402

CONFIG = 'configs/effdet_b0_coco.py'
SIZE = 512
# effdet's DetBenchPredict: the image's 5000 best candidates, hard NMS 0.5, 100 out
HARD_NMS = ConfigDict(nms_pre=5000, nms_pre_scope='image', min_bbox_size=0, score_thr=0.001,
                      nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)
# mmdet's meaning of nms_pre: 5000 per level
HARD_NMS_PER_LEVEL = ConfigDict(HARD_NMS, nms_pre_scope='level')


def effdet_model(seed: int = 0) -> nn.Module:
    """Random tf_efficientdet_d0 with realistic norms and spread-out predictions."""
    import effdet
    torch.manual_seed(seed)
    ref = effdet.create_model('tf_efficientdet_d0', pretrained=False, pretrained_backbone=False)
    return realistic_effdet_predictions(ref, SIZE, seed)


def our_model(ref: nn.Module) -> nn.Module:
    ckpt = convert_effdet_checkpoint(ref.state_dict(), name='tf_efficientdet_d0', num_classes=90)
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(ckpt['meta']['cfg_options'])
    model = MODELS.build(cfg.model)
    model.load_state_dict(ckpt['state_dict'], strict=True)
    return model.eval()


@contextlib.contextmanager
def mmdet_selection(head: nn.Module):
    """Run ``head`` on mmdet's stock single-image post-processing for the duration."""
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
    head._predict_by_feat_single = BaseDenseHead._predict_by_feat_single.__get__(head)
    try:
        yield
    finally:
        del head._predict_by_feat_single


def same_detections(a, b) -> bool:
    """Equal sets of (score, label, box); detections of equal score may come in any order."""
    def rows(res):
        return sorted(zip(res.scores.tolist(), res.labels.tolist(), res.bboxes.tolist()))
    return rows(a) == rows(b)


def time_rounds(fns: Dict[str, Callable[[], object]], warmup: int, repeats: int,
                grad: bool = False) -> Dict[str, List[float]]:
    """Seconds per call of every function, interleaved round by round; in inference mode
    unless ``grad`` (training steps)."""
    times = {name: [] for name in fns}
    with torch.enable_grad() if grad else torch.inference_mode():
        for i in range(warmup + repeats):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                if i >= warmup:
                    times[name].append(time.perf_counter() - start)
    return times


def main(argv=None) -> Dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=20)
    memory_format.add_memory_format_arg(parser)
    parser.add_argument('--effdet-channels-last', action='store_true',
                        help="also time effdet's raw forward in channels-last format")
    parser.add_argument('--mmdet-selection', action='store_true',
                        help="also time our prediction with mmdet's sort-based candidate "
                        'selection')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    register_all_modules()
    import effdet

    ref = effdet_model()
    ours = our_model(ref)
    fmt = memory_format.set_memory_format(ours, args.channels_last)
    bench = effdet.DetBenchPredict(ref).eval()
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    x_cl = x.contiguous(memory_format=torch.channels_last)
    x_ours = x_cl if args.channels_last else x
    with torch.inference_mode():
        diff = max((a - b).abs().max().item()
                   for a, b in zip(ours(x_ours, mode='tensor')[0], ref(x)[0]))
    sample = DetDataSample(metainfo=dict(img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE),
                                         scale_factor=(1.0, 1.0)))
    soft_nms = copy.deepcopy(ours.bbox_head.test_cfg)
    info = dict(img_scale=torch.ones(1), img_size=torch.tensor([[SIZE, SIZE]]).float())

    def predict(cfg, stock: bool = False):
        def run():
            ours.bbox_head.test_cfg = cfg
            with mmdet_selection(ours.bbox_head) if stock else contextlib.nullcontext():
                return ours.predict(x_ours, [sample])
        return run

    fns = {
        'ours forward': lambda: ours(x_ours, mode='tensor'),
        'effdet forward': lambda: ref(x),
        'ours predict (soft-NMS, config)': predict(soft_nms),
        'ours predict (hard NMS 0.5)': predict(HARD_NMS),
        'effdet DetBenchPredict (hard NMS 0.5)': lambda: bench(x, img_info=info),
    }
    if args.mmdet_selection:
        with torch.inference_mode():
            fast = predict(HARD_NMS_PER_LEVEL)()[0].pred_instances
            stock = predict(HARD_NMS_PER_LEVEL, True)()[0].pred_instances
        assert same_detections(stock, fast), "top-k and mmdet's selection disagree"
        fns['ours predict (hard NMS 0.5), per level, top-k'] = predict(HARD_NMS_PER_LEVEL)
        fns["ours predict (hard NMS 0.5), per level, mmdet's sort"] = predict(
            HARD_NMS_PER_LEVEL, True)
    if args.effdet_channels_last:
        ref_cl = copy.deepcopy(ref).to(memory_format=torch.channels_last)
        fns['effdet forward (channels_last)'] = lambda: ref_cl(x_cl)
    times = time_rounds(fns, args.warmup, args.repeats)
    medians = {name: statistics.median(t) for name, t in times.items()}

    print(f'EfficientDet-D0, 1x3x{SIZE}x{SIZE}, fp32, CPU, {torch.get_num_threads()} threads, '
          f'ours {fmt}, median of {args.repeats} interleaved rounds after {args.warmup} warm-up '
          f'(raw outputs differ by {diff:.1e})')
    width = max(map(len, medians))
    for name, t in medians.items():
        spread = statistics.quantiles(times[name], n=4) if len(times[name]) > 1 else [t, t, t]
        print(f'  {name:<{width}}  {1e3 * t:8.1f} ms  (IQR {1e3 * spread[0]:.1f}-'
              f'{1e3 * spread[2]:.1f}, min {1e3 * min(times[name]):.1f})')
    pairs = [('forward', 'ours forward', 'effdet forward'),
             ('predict, same NMS', 'ours predict (hard NMS 0.5)',
              'effdet DetBenchPredict (hard NMS 0.5)')]
    if args.mmdet_selection:
        pairs += [('predict, nms_pre per level, top-k',
                   'ours predict (hard NMS 0.5), per level, top-k',
                   'effdet DetBenchPredict (hard NMS 0.5)'),
                  ("predict, nms_pre per level, mmdet's sort",
                   "ours predict (hard NMS 0.5), per level, mmdet's sort",
                   'effdet DetBenchPredict (hard NMS 0.5)')]
    if args.effdet_channels_last:
        pairs.append(('forward, both channels_last', 'ours forward',
                      'effdet forward (channels_last)'))
    for label, a, b in pairs:
        print(f'ratio ours/effdet, {label}: {medians[a] / medians[b]:.3f} of medians, '
              f'{min(times[a]) / min(times[b]):.3f} of minima')
    return medians


if __name__ == '__main__':
    main()
