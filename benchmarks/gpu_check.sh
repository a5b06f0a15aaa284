#!/usr/bin/env bash
# One command for a CUDA machine: mmcv CUDA ops (or the PyTorch fallback), the `cuda` tests,
# and D0 inference / training images/s against efficientdet-pytorch on the same GPU.
#   bash benchmarks/gpu_check.sh            (EFFDET_INSTALL_MMCV_CUDA=1 also tries a CUDA mmcv)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-.venv/bin/python}"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'; \
print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__, '| CUDA', torch.version.cuda)"
if ! "$PY" -c "from effdet_plugin.models.utils.mmcv_fallback import mmcv_has_cuda_ops as f; assert f()" 2>/dev/null; then
  echo "[gpu_check] mmcv has no CUDA ops: EffDetHead falls back to CPU NMS / PyTorch focal loss"
  if [[ "${EFFDET_INSTALL_MMCV_CUDA:-0}" == 1 ]]; then
    start=$(date +%s)
    MMCV_WITH_OPS=1 FORCE_CUDA=1 "$PY" -m pip install --no-build-isolation --no-binary mmcv \
      --force-reinstall --no-deps "mmcv==2.1.0" || echo "[gpu_check] mmcv CUDA build failed"
    echo "[gpu_check] mmcv install/build took $(( $(date +%s) - start )) s"
  fi
fi
"$PY" -m pytest -m cuda tests/ -q -p no:randomly
"$PY" - <<'PY'
import time, torch, effdet
from mmengine.config import Config
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
import effdet_plugin  # noqa: F401
register_all_modules()
batch, size, steps = 8, 512, 20
x = torch.randn(batch, 3, size, size, device='cuda')

def rate(fn):
    for _ in range(3):
        fn()
    torch.cuda.synchronize(); start = time.perf_counter()
    for _ in range(steps):
        fn()
    torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)

ours = MODELS.build(Config.fromfile('configs/effdet_b0_coco.py').model).cuda().eval()
ref = effdet.create_model('tf_efficientdet_d0', pretrained=False, pretrained_backbone=False)
bench = effdet.DetBenchPredict(ref).cuda().eval()
samples = [DetDataSample(metainfo=dict(img_shape=(size, size), scale_factor=(1., 1.),
                                       ori_shape=(size, size))) for _ in range(batch)]
info = dict(img_scale=torch.ones(batch, device='cuda'),
            img_size=torch.full((batch, 2), float(size), device='cuda'))
with torch.inference_mode(), torch.autocast('cuda', dtype=torch.float16):
    r_ours = rate(lambda: ours.predict(x, samples))
    r_ref = rate(lambda: bench(x, img_info=info))
print(f'D0 {size} inference (fp16, batch {batch}, with NMS): ours {r_ours:.0f} img/s, '
      f'effdet {r_ref:.0f} img/s ({r_ours / r_ref:.2f}x)')

# training: one AMP SGD step on the same boxes (ours xyxy + label, effdet yxyx + class 1..C)
from mmengine.structures import InstanceData
box = torch.tensor([[40., 60., 200., 260.]], device='cuda')
for s in samples:
    s.set_metainfo(dict(pad_shape=(size, size), batch_input_shape=(size, size)))
    s.gt_instances = InstanceData(bboxes=box, labels=torch.tensor([3], device='cuda'))
target = dict(bbox=box[:, [1, 0, 3, 2]].expand(batch, 1, 4).contiguous(),
              cls=torch.full((batch, 1), 4., device='cuda'))
train_ref = effdet.DetBenchTrain(ref).cuda().train()
ours.train()

def step(model, loss_fn):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler('cuda')
    def run():
        with torch.autocast('cuda', dtype=torch.float16):
            loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return run

ours_loss = lambda: sum(v if torch.is_tensor(v) else sum(v)
                        for v in ours(x, samples, mode='loss').values())
t_ours = rate(step(ours, ours_loss))
t_ref = rate(step(train_ref, lambda: train_ref(x, target)['loss']))
print(f'D0 {size} training (AMP fp16, batch {batch}, SGD): ours {t_ours:.0f} img/s, '
      f'effdet {t_ref:.0f} img/s ({t_ours / t_ref:.2f}x)')
PY
