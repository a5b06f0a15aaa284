"""One training step and one predict per config family, with the mmcv kernels each one calls.

Every call into mmcv's compiled extension (``mmcv._ext``) is recorded while a config's model
takes one SGD step (AMP fp16 on CUDA) on a synthetic batch and predicts on it, so the list of
mmcv ops a config reaches is measured, not guessed. On a CPU only the ops of the CPU path show;
mmdet's ``FocalLoss`` calls mmcv's ``sigmoid_focal_loss`` kernel only for CUDA tensors.

    python benchmarks/gpu/config_steps.py [--device cuda] [--size 256] [--json OUT.json]
"""
import argparse
import contextlib
import json
import math
import time
from collections import Counter
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
# config families of the GPU check: (name, config, kind)
CONFIGS = [
    ('D0', 'configs/effdet_b0_coco.py', 'det'),
    ('D3', 'configs/effdet_b3_coco.py', 'det'),
    ('Lite0', 'configs/effdet_lite0_coco.py', 'det'),
    ('RetinaNet', 'configs/swap/retinanet_effnet-b0_fpn_1x_coco.py', 'det'),
    ('FCOS', 'configs/swap/fcos_effnet-b0_fpn_gn-head_1x_coco.py', 'det'),
    ('Faster R-CNN', 'configs/swap/faster-rcnn_effnet-b0_fpn_1x_coco.py', 'det'),
    ('Mask R-CNN (swap)', 'configs/swap/mask-rcnn_effnet-b3_fpn_1x_coco.py', 'mask'),
    ('Mask R-CNN', 'configs/medical/mask-rcnn_effnet-lite0_bifpn-p2_nuclei.py', 'mask'),
    ('RTMDet-Ins', 'configs/medical/rtmdet-ins_effnet-lite0_bifpn-p2_nuclei.py', 'mask'),
    ('semantic', 'configs/medical/effdet-lite0-seg_nuclei.py', 'seg'),
    ('det+seg', 'configs/medical/effdet-lite0-detseg_nuclei.py', 'detseg'),
]


@contextlib.contextmanager
def record_mmcv_kernels():
    """Count the calls into ``mmcv._ext`` made inside the block (yields the Counter)."""
    from mmcv import _ext
    calls = Counter()
    originals = {name: getattr(_ext, name) for name in dir(_ext)
                 if not name.startswith('_') and callable(getattr(_ext, name))}

    def recording(name, fn):
        def call(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return call

    for name, fn in originals.items():
        setattr(_ext, name, recording(name, fn))
    try:
        yield calls
    finally:
        for name, fn in originals.items():
            setattr(_ext, name, fn)


def synthetic_batch(kind: str, num_classes: int, size: int, batch: int, device: str) -> dict:
    """A packed batch as the data pipeline makes it: uint8 images, 3 boxes per image, masks for
    instance segmentation, a binary label map for semantic segmentation."""
    from mmdet.testing import demo_mm_inputs
    from mmengine.structures import PixelData
    packed = demo_mm_inputs(batch_size=batch, image_shapes=[(3, size, size)] * batch,
                            num_items=[3] * batch, num_classes=max(num_classes, 2),
                            with_mask=kind == 'mask')
    for sample in packed['data_samples']:
        sample.gt_instances.labels %= num_classes  # demo_mm_inputs needs 2 classes or more
        if kind in ('seg', 'detseg'):
            label = torch.zeros(1, size, size, dtype=torch.long)
            label[:, size // 4:size // 2, size // 3:size // 2] = 1
            sample.gt_sem_seg = PixelData(sem_seg=label)
    packed['inputs'] = [x.to(device) for x in packed['inputs']]
    return packed


def num_classes_of(model_cfg) -> int:
    for key in ('bbox_head', 'roi_head'):
        head = model_cfg.get(key)
        if head is not None:
            head = head.get('bbox_head', head)
            return head.get('num_classes', 80)
    return 2


def step_and_predict(config: str, kind: str, device: str = 'cpu', size: int = 256,
                     batch: int = 2, amp: bool = True) -> dict:
    """Build ``config``'s model, take one SGD step (fp16 autocast + loss scaling on CUDA when
    ``amp``) and predict, recording the mmcv kernels called. Returns a summary dict."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    cfg = Config.fromfile(str(REPO / config))
    if cfg.model.backbone.get('init_cfg'):
        cfg.model.backbone.init_cfg = None  # random weights: the step, not the score, is checked
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    use_amp = amp and device == 'cuda'
    scaler = torch.amp.GradScaler('cuda', enabled=use_amp)
    packed = synthetic_batch(kind, num_classes_of(cfg.model), size, batch, device)
    start = time.perf_counter()
    with record_mmcv_kernels() as calls:
        data = model.data_preprocessor(packed, True)
        with torch.autocast(device, dtype=torch.float16, enabled=use_amp):
            losses = model(**data, mode='loss')
        loss, _ = model.parse_losses(losses)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        train_calls = dict(calls)
        calls.clear()
        model.eval()
        with torch.no_grad(), torch.autocast(device, dtype=torch.float16, enabled=use_amp):
            results = model(**model.data_preprocessor(packed, False), mode='predict')
        predict_calls = dict(calls)
    if device == 'cuda':
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    outputs = [t for r in results for t in _result_tensors(r)]
    return dict(
        loss=float(loss), finite=math.isfinite(float(loss)),
        outputs_on=sorted({t.device.type for t in outputs}),
        train_kernels=train_calls, predict_kernels=predict_calls,
        seconds=round(seconds, 2))


def _result_tensors(sample):
    if 'pred_instances' in sample:
        inst = sample.pred_instances
        yield from (inst.bboxes, inst.scores)
        if 'masks' in inst:
            yield inst.masks
    if 'pred_sem_seg' in sample:
        yield sample.pred_sem_seg.sem_seg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--json', help='write the per-config results here')
    args = parser.parse_args()
    from mmdet.utils import register_all_modules
    register_all_modules()
    import effdet_plugin  # noqa: F401
    rows = {}
    for name, config, kind in CONFIGS:
        rows[name] = dict(config=config, **step_and_predict(config, kind, args.device, args.size))
        r = rows[name]
        print(f'{name:18s} loss {r["loss"]:8.3f} outputs on {",".join(r["outputs_on"]):4s} '
              f'train: {sorted(r["train_kernels"])} predict: {sorted(r["predict_kernels"])}',
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == '__main__':
    main()
