"""EMA (mmdet's ExpMomentumEMA through mmengine's EMAHook, as in the EfficientDet configs):
saved checkpoints carry the EMA weights, and validation runs on them."""
import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.runner import Runner

from effdet_plugin.checkpoint import read_checkpoint


@HOOKS.register_module(force=True)
class _RecordValWeights(Hook):
    """Test helper: snapshot the model's weights as validation starts (after EMAHook swaps)."""
    priority = 'LOWEST'
    seen = []

    def before_val_epoch(self, runner) -> None:
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        type(self).seen.append({k: v.clone() for k, v in model.state_dict().items()})


def test_checkpoint_and_validation_use_ema_weights(tiny_det_cfg):
    cfg = tiny_det_cfg(max_epochs=2, with_val=True)
    cfg.custom_hooks = [
        dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.1, update_buffers=True,
             priority=49),
        dict(type='_RecordValWeights'),
    ]
    cfg.train_cfg.val_interval = 2
    _RecordValWeights.seen.clear()
    runner = Runner.from_cfg(cfg)
    runner.train()

    ckpt = read_checkpoint(f'{cfg.work_dir}/epoch_2.pth')
    # EMAHook swaps the two on saving: 'state_dict' holds the averaged weights (what a user
    # deploys or fine-tunes from), 'ema_state_dict' the raw training weights.
    swapped = {k[len('module.'):]: v for k, v in ckpt['ema_state_dict'].items()
               if k.startswith('module.')}
    raw = runner.model.state_dict()  # training weights, swapped back after validation
    name = 'bbox_head.retina_cls.weight'
    assert torch.equal(swapped[name], raw[name])
    assert not torch.allclose(ckpt['state_dict'][name], raw[name])  # EMA differs from raw
    assert len(_RecordValWeights.seen) == 1
    assert torch.equal(_RecordValWeights.seen[0][name], ckpt['state_dict'][name])  # val on EMA
