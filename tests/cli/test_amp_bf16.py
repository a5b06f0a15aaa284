"""``--amp``: bfloat16 autocast on CPU (mmengine's fp16 AmpOptimWrapper needs a GPU)."""
import math

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from effdet_plugin.cli import enable_amp


def test_enable_amp_picks_wrapper_per_device():
    cpu = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD'))))
    assert enable_amp(cpu, cuda=False) == 'BFloat16AmpOptimWrapper'
    assert 'loss_scale' not in cpu.optim_wrapper
    gpu = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD'))))
    assert enable_amp(gpu, cuda=True) == 'AmpOptimWrapper'
    assert gpu.optim_wrapper.loss_scale == 'dynamic'
    # A config that already asks for mixed precision keeps its own settings.
    fixed = Config(dict(optim_wrapper=dict(type='AmpOptimWrapper', loss_scale=512.)))
    assert enable_amp(fixed, cuda=True) == 'AmpOptimWrapper'
    assert fixed.optim_wrapper.loss_scale == 512.


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU fallback')
def test_bf16_training_steps_have_finite_losses(tiny_det_cfg):
    cfg = tiny_det_cfg(max_epochs=2, deterministic=False)
    enable_amp(cfg)
    runner = Runner.from_cfg(cfg)
    dtypes = []
    runner.model.backbone.conv1.register_forward_hook(
        lambda module, args, output: dtypes.append(output.dtype))
    weights_before = runner.model.backbone.conv1.weight.detach().clone()
    runner.train()

    assert type(runner.optim_wrapper).__name__ == 'BFloat16AmpOptimWrapper'
    assert dtypes and set(dtypes) == {torch.bfloat16}  # autocast really was on
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    weights = runner.model.backbone.conv1.weight
    assert weights.dtype == torch.float32  # master weights stay fp32
    assert not torch.equal(weights, weights_before)
