"""Kills, divergence and concurrent runs through tools/train.py lose no checkpoint (issue 10).

Every test trains the tiny RetinaNet of conftest.py for a few iterations in a subprocess;
crashes come from tests/engine/crash_helpers.py, imported by the config (``custom_imports``).
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from effdet_plugin.checkpoint import read_checkpoint
from effdet_plugin.cli.work_dir_lock import LOCK_NAME

HELPERS_DIR = Path(__file__).resolve().parent
REPO_ROOT = HELPERS_DIR.parents[1]


def iter_cfg(tiny_det_cfg, work_dir, max_iters=6, interval=2, max_keep_ckpts=1, hooks=()):
    """The tiny config, iteration based (as the demo and medical configs): a checkpoint every
    ``interval`` iterations through the stock ``CheckpointHook`` type (tools/train.py makes it
    safe), ``hooks`` from crash_helpers added."""
    cfg = tiny_det_cfg(work_dir)
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
    cfg.train_dataloader.pop('batch_sampler')
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=1000)
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                                end=3)]
    cfg.log_processor.by_epoch = False
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False,
                                        interval=interval, max_keep_ckpts=max_keep_ckpts)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1, log_metric_by_epoch=False)
    cfg.custom_hooks = [dict(type='NonFiniteLossHook'), *hooks]
    cfg.custom_imports = dict(imports=['crash_helpers'], allow_failed_imports=False)
    return cfg


def train(run_tool, cfg, tmp_path, *args, kill=None, disk_full=None, name='cfg.py'):
    cfg_file = tmp_path / name
    cfg.dump(str(cfg_file))
    env = dict(PYTHONPATH=str(HELPERS_DIR), OMP_NUM_THREADS='1')
    if kill:
        env['EFFDET_TEST_KILL'] = kill
    if disk_full:
        env['EFFDET_TEST_DISK_FULL'] = disk_full
    return run_tool('tools/train.py', cfg_file, *args, env=env)


def read_last_checkpoint(work_dir: Path) -> Path:
    """The checkpoint last_checkpoint names: its file name, relative to the work dir."""
    name = (work_dir / 'last_checkpoint').read_text()
    assert name == Path(name).name, name
    return work_dir / name


def load(path: Path) -> dict:
    return read_checkpoint(str(path))


@pytest.mark.parametrize('kill', ['serialize:2', 'rename:iter_4.pth'])
def test_kill_during_checkpoint_save_keeps_previous_and_resumes(kill, tiny_det_cfg, tmp_path,
                                                                run_tool):
    """``max_keep_ckpts=1`` (the configs' former value): CheckpointHook deleted iter_2.pth
    before writing iter_4.pth, so a kill during that write left nothing to resume from."""
    work_dir = tmp_path / 'work_dir'
    cfg = iter_cfg(tiny_det_cfg, work_dir, max_iters=6, interval=2, max_keep_ckpts=1)
    killed = train(run_tool, cfg, tmp_path, kill=kill)
    assert killed.returncode == 137, killed.stderr[-3000:]

    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['iter_2.pth']
    assert read_last_checkpoint(work_dir) == work_dir / 'iter_2.pth'
    assert load(work_dir / 'iter_2.pth')['meta']['iter'] == 2
    leftovers = list(work_dir.glob('.iter_4.pth.*.tmp'))
    assert len(leftovers) == (1 if kill.startswith('rename') else 0)
    assert (work_dir / LOCK_NAME).exists()  # a kill cannot release the lock

    # the work dir moves (e.g. with its clone) before the run is resumed there
    work_dir = work_dir.rename(tmp_path / 'moved')
    resumed = train(run_tool, cfg, tmp_path, '--resume', '--work-dir', work_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'Taking over the stale lock' in resumed.stderr + resumed.stdout
    assert not (work_dir / LOCK_NAME).exists()
    assert not list(work_dir.glob('.*.tmp'))  # the interrupted write was cleaned up
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['iter_6.pth']
    assert read_last_checkpoint(work_dir) == work_dir / 'iter_6.pth'
    assert load(work_dir / 'iter_6.pth')['meta']['iter'] == 6
    # Resumed, not restarted: iter_2.pth of the first run was the starting point.
    assert 'Advance dataloader 2 steps' in resumed.stderr + resumed.stdout


def test_inf_batchnorm_statistics_are_never_written(tiny_det_cfg, tmp_path, run_tool):
    """The issue's lr 1e6 run: BatchNorm variances overflowed to inf while the loss was still
    finite, and that checkpoint was written. Here they are made inf after iteration 3."""
    work_dir = tmp_path / 'work_dir'
    cfg = iter_cfg(tiny_det_cfg, work_dir, max_iters=6, interval=2, max_keep_ckpts=2,
                   hooks=[dict(type='ScaleBatchNormStatsHook', iteration=3)])
    run = train(run_tool, cfg, tmp_path)
    assert run.returncode != 0
    assert 'error: Checkpoint of epoch 0, iteration 4 not written' in run.stderr
    assert 'running_var' in run.stderr and 'inf' in run.stderr
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['iter_2.pth']
    assert read_last_checkpoint(work_dir) == work_dir / 'iter_2.pth'
    state = load(work_dir / 'iter_2.pth')['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert not (work_dir / LOCK_NAME).exists()  # released on the error


def test_disk_full_during_save_names_the_file_and_keeps_the_previous(tiny_det_cfg, tmp_path,
                                                                     run_tool):
    """No space left while iter_4.pth is written: one error line naming the file, the
    checkpoint kept and what to do; iter_2.pth stays the resumable checkpoint."""
    work_dir = tmp_path / 'work_dir'
    cfg = iter_cfg(tiny_det_cfg, work_dir, max_iters=6, interval=2, max_keep_ckpts=1)
    run = train(run_tool, cfg, tmp_path, disk_full='iter_4.pth')
    assert run.returncode == 1, run.stderr[-3000:]
    assert 'Traceback' not in run.stderr, run.stderr[-3000:]
    message = run.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: Checkpoint not written: cannot write '{work_dir}/"
                              "iter_4.pth': no space left on the device"), message
    assert f'latest kept: {work_dir}/iter_2.pth' in message
    assert 'Free space on that disk' in message and '--resume' in message
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['iter_2.pth']
    assert not list(work_dir.glob('.*.tmp'))  # the half-written file is removed
    assert read_last_checkpoint(work_dir) == work_dir / 'iter_2.pth'
    assert not (work_dir / LOCK_NAME).exists()


def test_second_training_into_live_work_dir_refused(tiny_det_cfg, tmp_path, run_tool):
    work_dir = tmp_path / 'work_dir'
    cfg = iter_cfg(tiny_det_cfg, work_dir, max_iters=400, interval=1000)
    cfg_file = tmp_path / 'first.py'
    cfg.dump(str(cfg_file))
    env = dict(os.environ, PYTHONPATH=str(HELPERS_DIR), OMP_NUM_THREADS='1')
    first = subprocess.Popen([sys.executable, 'tools/train.py', str(cfg_file)], cwd=REPO_ROOT,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (work_dir / LOCK_NAME).exists():
            assert first.poll() is None and time.time() < deadline, 'first run did not start'
            time.sleep(0.2)
        second = train(run_tool, iter_cfg(tiny_det_cfg, work_dir), tmp_path, name='second.py')
        assert first.poll() is None, 'the first run must still be training'
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 1
    message = second.stderr
    assert f'work dir {work_dir} is in use' in message
    assert f'process {first.pid}' in message and 'is running' in message
    assert 'another --work-dir' in message and LOCK_NAME in message
    # Refused before the Runner existed: no log dir, no checkpoint of the second run.
    assert len([p for p in work_dir.iterdir() if p.is_dir()]) <= 1


def demo_like_cfg(tiny_det_cfg, work_dir, seed_hook=True, hooks=()):
    """Iteration-based like configs/demo: EfficientNet with drop path (random in the training
    process), random crops and flips in a persistent dataloader worker, EMA, validation."""
    cfg = iter_cfg(tiny_det_cfg, work_dir, max_iters=8, interval=4, max_keep_ckpts=2)
    backbone = dict(type='EffNet', arch=1.0, scaling=dict(alpha=0.5, beta=0.25),
                    drop_path_rate=0.3, out_indices=(3, 5, 7))
    cfg.model.backbone = backbone
    cfg.model.neck.in_channels = [16, 32, 80]
    cfg.train_dataloader.dataset.pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='RandomCrop', crop_size=(48, 48), allow_negative_crop=True),
        dict(type='RandomFlip', prob=[0.3, 0.3], direction=['horizontal', 'vertical']),
        dict(type='PackDetInputs'),
    ]
    cfg.train_dataloader.update(num_workers=1, persistent_workers=True)
    cfg.train_cfg.val_interval = 4
    cfg.val_dataloader = dict(cfg.test_dataloader, num_workers=1, persistent_workers=True)
    cfg.val_evaluator, cfg.val_cfg = cfg.test_evaluator, dict(type='ValLoop')
    cfg.custom_hooks = [
        dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.01, gamma=100,
             update_buffers=True, priority=49),
        *([dict(type='IterationSeedHook')] if seed_hook else []), *cfg.custom_hooks, *hooks]
    return cfg


def _run_killed_and_resumed(run_tool, tiny_det_cfg, tmp_path, seed_hook):
    """The same 8 iterations straight, and killed (like ``kill -9``) after iteration 6 then
    resumed from iter_4.pth; returns both final checkpoints."""
    straight_dir, killed_dir = tmp_path / 'straight', tmp_path / 'killed'
    straight = train(run_tool, demo_like_cfg(tiny_det_cfg, straight_dir, seed_hook),
                     tmp_path, name='straight.py')
    assert straight.returncode == 0, straight.stderr[-3000:]
    kill = dict(type='KillAtIterationHook', iteration=6)
    cfg = demo_like_cfg(tiny_det_cfg, killed_dir, seed_hook, hooks=[kill])
    killed = train(run_tool, cfg, tmp_path, name='killed.py')
    assert killed.returncode == 137, killed.stderr[-3000:]
    assert read_last_checkpoint(killed_dir) == killed_dir / 'iter_4.pth'
    cfg.custom_hooks.remove(kill)
    resumed = train(run_tool, cfg, tmp_path, '--resume', name='killed.py')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'Advance dataloader 4 steps' in resumed.stderr + resumed.stdout
    return load(straight_dir / 'iter_8.pth'), load(killed_dir / 'iter_8.pth')


def _differing(expected: dict, actual: dict) -> list:
    assert list(expected) == list(actual)
    return [k for k in expected if not torch.equal(expected[k], actual[k])]


def test_resume_after_kill_is_bit_identical(tiny_det_cfg, tmp_path, run_tool):
    """Like the demo config (drop path, random crops/flips in a persistent worker, EMA,
    validation between), with IterationSeedHook: model, EMA, optimizer and LR schedule after
    the resumed run equal the uninterrupted run's exactly."""
    expected, actual = _run_killed_and_resumed(run_tool, tiny_det_cfg, tmp_path, True)
    assert not _differing(expected['state_dict'], actual['state_dict'])
    assert not _differing(expected['ema_state_dict'], actual['ema_state_dict'])
    torch.testing.assert_close(actual['optimizer']['state'], expected['optimizer']['state'],
                               rtol=0, atol=0)
    assert actual['param_schedulers'] == expected['param_schedulers']
    assert actual['meta']['iter'] == expected['meta']['iter'] == 8


@pytest.mark.slow
def test_resume_diverges_without_iteration_seed_hook(tiny_det_cfg, tmp_path, run_tool):
    """The cause: without IterationSeedHook the drop-path masks after the resume differ (this
    also shows the tiny model above does draw random numbers in the training process)."""
    expected, actual = _run_killed_and_resumed(run_tool, tiny_det_cfg, tmp_path, False)
    assert _differing(expected['state_dict'], actual['state_dict'])


FINE_TUNE_CONFIGS = sorted(str(p.relative_to(REPO_ROOT)) for folder in ('demo', 'medical')
                           for p in (REPO_ROOT / 'configs' / folder).glob('*.py'))


@pytest.mark.parametrize('config', FINE_TUNE_CONFIGS + ['configs/effdet_b0_coco.py'])
def test_configs_keep_two_safe_checkpoints_and_seed_by_iteration(config):
    from mmengine.config import Config
    cfg = Config.fromfile(REPO_ROOT / config)
    checkpoint = cfg.default_hooks.checkpoint
    assert checkpoint.type == 'SafeCheckpointHook'
    assert checkpoint.max_keep_ckpts >= 2
    assert 'IterationSeedHook' in [hook.type for hook in cfg.custom_hooks]


class _Killed(BaseException):
    pass


def test_previous_best_deleted_only_after_new_best_is_written(tiny_det_cfg, tmp_path,
                                                              monkeypatch):
    """CheckpointHook deletes best_*.pth before writing the new best: a crash in between
    left no best checkpoint."""
    from mmengine.runner import Runner

    import effdet_plugin  # noqa: F401
    from effdet_plugin.engine.hooks import SafeCheckpointHook
    runner = Runner.from_cfg(tiny_det_cfg(max_epochs=1))
    hook = SafeCheckpointHook(by_epoch=False, save_best='acc', rule='greater')
    hook.before_train(runner)
    hook._save_best_checkpoint(runner, {'acc': 0.5})
    first_best = tmp_path / 'work_dir' / 'best_acc_iter_0.pth'
    assert first_best.exists()

    runner.train_loop._iter = 3
    save = torch.save

    def crash(*args, **kwargs):
        raise _Killed

    monkeypatch.setattr(torch, 'save', crash)
    with pytest.raises(_Killed):
        hook._save_best_checkpoint(runner, {'acc': 0.7})
    assert first_best.exists()
    assert not list(first_best.parent.glob('*iter_3*'))

    monkeypatch.setattr(torch, 'save', save)
    hook._save_best_checkpoint(runner, {'acc': 0.8})
    assert sorted(p.name for p in first_best.parent.glob('*.pth')) == ['best_acc_iter_3.pth']


@pytest.mark.parametrize('save_best', [None, 'coco/bbox_mAP'])
def test_validation_alone_with_the_checkpoint_hook(save_best, tiny_det_cfg):
    """``Runner.val()`` outside training (the SE study evaluates pruned models so) runs the
    hook's after_val_epoch without before_train: nothing to save, and no crash."""
    import effdet_plugin  # noqa: F401
    from effdet_plugin.cli import build_runner
    cfg = tiny_det_cfg(with_val=True)
    cfg.default_hooks.checkpoint = dict(type='SafeCheckpointHook', interval=1,
                                        save_best=save_best, rule='greater')
    metrics = build_runner(cfg).val()
    assert 'coco/bbox_mAP' in metrics
    assert not list((Path(cfg.work_dir)).glob('*.pth'))
