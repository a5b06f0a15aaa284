"""NonFiniteLossHook stops training at the first NaN loss and says where and why."""
import pytest
import torch
from mmengine.runner import Runner

from effdet_plugin.engine import NonFiniteLossError, NonFiniteLossHook


def test_stops_at_injected_nan_with_iteration_and_causes(tiny_det_cfg, tmp_path):
    cfg = tiny_det_cfg(max_epochs=3)
    cfg.custom_hooks = [dict(type='NonFiniteLossHook')]  # as a config would name it
    runner = Runner.from_cfg(cfg)
    model, loss = runner.model, runner.model.loss

    def loss_with_nan_at_third_iteration(*args, **kwargs):
        losses = loss(*args, **kwargs)
        if runner.iter == 2:  # 0-based: iteration 3 = epoch 2, batch 1
            # RetinaHead returns one loss term per pyramid level.
            losses['loss_cls'] = [term * float('nan') for term in losses['loss_cls']]
        return losses

    model.loss = loss_with_nan_at_third_iteration
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()

    message = str(info.value)
    assert 'iteration 3 (epoch 2, batch 1)' in message
    assert 'loss_cls=nan' in message and 'loss=nan' in message
    assert 'loss_bbox=nan' not in message  # only the broken term is reported as nan
    for cause in ('learning rate', 'annotations', 'fp16'):
        assert cause in message
    # Raised before the checkpoint hook: the NaN weights of epoch 2 are never saved.
    assert (tmp_path / 'work_dir' / 'epoch_1.pth').exists()
    assert not (tmp_path / 'work_dir' / 'epoch_2.pth').exists()


def test_inf_is_caught_and_finite_passes():
    class FakeRunner:
        iter, epoch, rank = 6, 0, 0

        class logger:
            @staticmethod
            def error(msg):
                pass

    hook = NonFiniteLossHook()
    finite = dict(loss=torch.tensor(1.0), loss_cls=torch.tensor(0.5), acc=torch.tensor(90.))
    hook.after_train_iter(FakeRunner, 6, outputs=finite)
    # Non-loss entries (accuracies) are not checked.
    hook.after_train_iter(FakeRunner, 6, outputs=dict(finite, acc=torch.tensor(float('nan'))))
    with pytest.raises(NonFiniteLossError, match='iteration 7 .*loss_bbox=inf'):
        hook.after_train_iter(
            FakeRunner, 6, outputs=dict(finite, loss_bbox=torch.tensor(float('inf'))))


def test_interval_skips_iterations_and_is_validated():
    class FakeRunner:
        iter, epoch, rank = 0, 0, 0

    nan = dict(loss=torch.tensor(float('nan')))
    NonFiniteLossHook(interval=2).after_train_iter(FakeRunner, 0, outputs=nan)  # not checked
    with pytest.raises(ValueError):
        NonFiniteLossHook(interval=0)


def test_weights_and_buffers_checked_before_validation():
    """A finite loss does not prove finite weights: BN statistics and the EMA copy count."""
    from types import SimpleNamespace

    from mmengine.hooks import EMAHook

    from effdet_plugin.checkpoint import NonFiniteWeightsError
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    ema = EMAHook()
    ema.ema_model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    runner = SimpleNamespace(model=model, hooks=[ema], iter=12)
    hook = NonFiniteLossHook()
    hook.before_val_epoch(runner)  # all finite

    model[1].running_var[2] = float('inf')
    with pytest.raises(NonFiniteWeightsError,
                       match=r'iteration 12.*model:1\.running_var \(0 NaN, 1 inf of 4\)'):
        hook.before_val_epoch(runner)
    NonFiniteLossHook(check_weights=False).before_val_epoch(runner)

    model[1].running_var.fill_(1.)
    ema.ema_model[0].weight.data[0, 0] = float('nan')
    with pytest.raises(NonFiniteWeightsError, match=r'EMAHook\.ema_model:0\.weight \(1 NaN'):
        hook.before_val_epoch(runner)
