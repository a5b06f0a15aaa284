"""EfficientDet-D0 images/s against efficientdet-pytorch on one device, in the same process.

Training: one SGD step (fp16 autocast + dynamic loss scaling on CUDA; fp32 on the CPU) of ours
(``model.loss``, default and channels-last memory format) and of effdet 0.4.1's
``DetBenchTrain``, the same box in every image. Predict: ours ``model.predict`` (with the
config's NMS) and ``DetBenchPredict``, under the same autocast. Random weights for both: the
speed, not the score, is measured. On CUDA also the peak memory of each model's training step.
"""
import time
from typing import Callable

import torch

REPO_CONFIG = 'configs/effdet_b0_coco.py'


def images_per_second(fn: Callable[[], object], batch: int, steps: int, device: str) -> float:
    def sync():
        if device == 'cuda':
            torch.cuda.synchronize()
    for _ in range(min(3, steps)):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return batch * steps / (time.perf_counter() - start)


def sgd_step(model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor], device: str):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    cuda = device == 'cuda'
    scaler = torch.amp.GradScaler('cuda', enabled=cuda)

    def step():
        with torch.autocast(device, dtype=torch.float16, enabled=cuda):
            loss = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return step


def peak_gib(fn: Callable[[], object], device: str) -> float:
    if device != 'cuda':
        return float('nan')
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**30


def d0_speed_vs_effdet(device: str, size: int = 512, batch: int = 16, steps: int = 20) -> dict:
    import effdet
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmengine.config import Config
    from mmengine.structures import InstanceData
    torch.manual_seed(0)
    cuda = device == 'cuda'
    cfg = Config.fromfile(REPO_CONFIG)
    cfg.model.backbone.init_cfg = None
    ours = MODELS.build(cfg.model).to(device)
    ref = effdet.create_model('tf_efficientdet_d0', pretrained=False, pretrained_backbone=False,
                              image_size=(size, size))
    x = torch.randn(batch, 3, size, size, device=device)
    box = torch.tensor([[40., 60., 200., 240.]], device=device) * size / 512
    samples = []
    for _ in range(batch):
        sample = DetDataSample(metainfo=dict(
            img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size),
            batch_input_shape=(size, size), scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(bboxes=box, labels=torch.tensor([3], device=device))
        samples.append(sample)
    # effdet: boxes as yxyx, classes 1..C
    target = dict(bbox=box[:, [1, 0, 3, 2]].expand(batch, 1, 4).contiguous(),
                  cls=torch.full((batch, 1), 4., device=device))
    result = {}

    def loss_of(model, inputs):
        def fn():
            losses = model(inputs, samples, mode='loss')
            return sum(v if torch.is_tensor(v) else sum(v) for v in losses.values())
        return fn

    train_ref = effdet.DetBenchTrain(ref).to(device).train()
    ref_step = sgd_step(train_ref, lambda: train_ref(x, target)['loss'], device)
    result['effdet_train'] = images_per_second(ref_step, batch, steps, device)
    result['effdet_peak_gib'] = peak_gib(ref_step, device)
    ours.train()
    our_step = sgd_step(ours, loss_of(ours, x), device)
    result['train'] = images_per_second(our_step, batch, steps, device)
    result['peak_gib'] = peak_gib(our_step, device)
    ours_cl = ours.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    result['train_cl'] = images_per_second(
        sgd_step(ours_cl, loss_of(ours_cl, x_cl), device), batch, steps, device)

    ours.eval()
    bench = effdet.DetBenchPredict(train_ref.model).to(device).eval()
    info = dict(img_scale=torch.ones(batch, device=device),
                img_size=torch.full((batch, 2), float(size), device=device))
    with torch.inference_mode(), torch.autocast(device, dtype=torch.float16, enabled=cuda):
        result['predict'] = images_per_second(lambda: ours.predict(x_cl, samples), batch,
                                              steps, device)
        result['effdet_predict'] = images_per_second(lambda: bench(x, img_info=info), batch,
                                                     steps, device)
    result.update(size=size, batch=batch, steps=steps, amp='fp16' if cuda else 'off (CPU)')
    return result
