"""--auto-scale-lr: on by default; mmengine's Runner then scales the LR of a changed batch."""
import uuid

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from effdet_plugin.cli.lr_scaling import apply_auto_scale_lr


def _cfg(batch_size: int, base_batch_size=16, lr=0.08) -> Config:
    cfg = Config(dict(
        train_dataloader=dict(batch_size=batch_size),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=lr, momentum=0.9))))
    if base_batch_size is not None:
        cfg.auto_scale_lr = dict(enable=False, base_batch_size=base_batch_size)
    return cfg


def _trained_lr(cfg: Config, work_dir) -> float:
    """The LR the Runner trains with: it builds the optimizer, then applies ``scale_lr``
    (the dataloader is never built)."""
    dataloader = dict(batch_size=cfg.train_dataloader.batch_size, dataset=[],
                      sampler=dict(type='DefaultSampler'))
    runner = Runner(model=torch.nn.Linear(2, 2), work_dir=str(work_dir),
                    experiment_name=f'lr_{uuid.uuid4().hex[:8]}',
                    train_dataloader=dataloader, train_cfg=dict(by_epoch=False, max_iters=1),
                    optim_wrapper=cfg.optim_wrapper.to_dict(),
                    auto_scale_lr=cfg.get('auto_scale_lr'), default_hooks=dict(logger=None),
                    log_level='WARNING')
    optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.scale_lr(optim_wrapper, runner.auto_scale_lr)
    return optim_wrapper.optimizer.param_groups[0]['lr']


@pytest.mark.parametrize('batch,expected_lr', [(4, 0.02), (16, 0.08), (32, 0.16)])
def test_default_scales_a_changed_batch(batch, expected_lr, tmp_path):
    cfg = _cfg(batch)
    assert apply_auto_scale_lr(cfg) is True
    assert _trained_lr(cfg, tmp_path) == pytest.approx(expected_lr)


def test_opt_out_keeps_the_config_lr(tmp_path):
    cfg = _cfg(4)
    assert apply_auto_scale_lr(cfg, requested=False) is False
    assert _trained_lr(cfg, tmp_path) == pytest.approx(0.08)


def test_config_without_base_batch_size():
    cfg = _cfg(4, base_batch_size=None)
    assert apply_auto_scale_lr(cfg) is False  # nothing declared: nothing to scale by
    with pytest.raises(ValueError, match='base_batch_size'):
        apply_auto_scale_lr(cfg, requested=True)


def test_effdet_on_one_gpu_trains_at_an_eighth_of_the_lr(tmp_path):
    """The headline config on one GPU: batch 16, an LR set for a total batch of 128."""
    cfg = Config.fromfile('configs/effdet_b3_coco.py')
    assert cfg.auto_scale_lr.base_batch_size == 8 * cfg.train_dataloader.batch_size
    assert apply_auto_scale_lr(cfg) is True
    lr = _trained_lr(cfg, tmp_path)
    assert lr == pytest.approx(cfg.optim_wrapper.optimizer.lr / 8)
