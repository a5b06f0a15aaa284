"""Resuming with torch >= 2.6 (``weights_only`` loads) gives exactly an uninterrupted run;
a resume that cannot work stops with one error line before the work dir is touched."""
import hashlib
import io
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer

from effdet_plugin.checkpoint import read_checkpoint
from effdet_plugin.checkpoint.compat import mmengine_globals_allowed, mmengine_safe_globals
from effdet_plugin.engine import CheckedRunner


def _train(cfg) -> CheckedRunner:
    runner = CheckedRunner.from_cfg(cfg)
    runner.train()
    return runner


def _weights(state_dict: dict) -> dict:
    return {k: v.detach().clone() for k, v in state_dict.items()}


def _assert_same_weights(actual: dict, expected: dict) -> None:
    assert list(actual) == list(expected)
    differing = [k for k in expected if not torch.equal(actual[k], expected[k])]
    assert not differing, f'{len(differing)} tensors differ, e.g. {differing[:3]}'


@pytest.fixture(scope='module')
def uninterrupted(tiny_det_cfg_factory, tmp_path_factory) -> dict:
    """Weights after 2 epochs in one go, and the weights after its first epoch."""
    work_dir = tmp_path_factory.mktemp('uninterrupted')
    runner = _train(tiny_det_cfg_factory(work_dir, max_epochs=2))
    epoch1 = read_checkpoint(str(work_dir / 'epoch_1.pth'))['state_dict']
    return dict(final=_weights(runner.model.state_dict()), epoch1=epoch1)


class _Interrupted(Exception):
    pass


class _InterruptAfterEpoch(Hook):
    """Simulates a crash right after the checkpoint of ``epoch`` has been written."""

    priority = 'LOWEST'  # after CheckpointHook (VERY_LOW)

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def after_train_epoch(self, runner) -> None:
        if runner.epoch + 1 == self.epoch:
            raise _Interrupted


@pytest.mark.parametrize('resume_from', ['auto', 'epoch_1.pth'])
def test_runner_resume_matches_uninterrupted(resume_from, tiny_det_cfg, tmp_path, uninterrupted):
    # The first epoch must change the weights, otherwise the comparison proves nothing.
    assert any(not torch.equal(uninterrupted['epoch1'][k], v)
               for k, v in uninterrupted['final'].items())
    work_dir = tmp_path / 'interrupted'
    runner = CheckedRunner.from_cfg(tiny_det_cfg(work_dir, max_epochs=2))
    runner.register_hook(_InterruptAfterEpoch(1))
    with pytest.raises(_Interrupted):
        runner.train()
    epoch1_ckpt = work_dir / 'epoch_1.pth'
    written_at = os.stat(epoch1_ckpt).st_mtime_ns
    assert not (work_dir / 'epoch_2.pth').exists()

    # What tools/train.py --resume [ckpt] sets.
    cfg = tiny_det_cfg(work_dir, max_epochs=2)
    cfg.resume = True
    cfg.load_from = None if resume_from == 'auto' else str(work_dir / resume_from)
    runner = _train(cfg)

    assert (runner.epoch, runner.iter) == (2, 4)
    # Training restarted from scratch would have rewritten epoch_1.pth.
    assert os.stat(epoch1_ckpt).st_mtime_ns == written_at
    _assert_same_weights(_weights(runner.model.state_dict()), uninterrupted['final'])


def test_cli_resume_matches_uninterrupted(tiny_det_cfg, tmp_path, uninterrupted, run_tool):
    cfg_file = tmp_path / 'tiny.py'
    tiny_det_cfg(max_epochs=1).dump(str(cfg_file))
    work_dir = tmp_path / 'cli'
    first = run_tool('tools/train.py', cfg_file, '--work-dir', work_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_tool('tools/train.py', cfg_file, '--work-dir', work_dir, '--resume',
                      '--cfg-options', 'train_cfg.max_epochs=2')
    assert second.returncode == 0, second.stderr[-3000:]
    assert 'Unsupported global' not in second.stderr
    ckpt = read_checkpoint(str(work_dir / 'epoch_2.pth'))
    assert ckpt['meta']['epoch'] == 2
    _assert_same_weights(ckpt['state_dict'], uninterrupted['final'])


def _allowed_names() -> set:
    return {item[1] if isinstance(item, tuple) else f'{item.__module__}.{item.__qualname__}'
            for item in mmengine_safe_globals()}


def test_checkpoint_needs_only_allow_listed_globals(tiny_det_cfg, tmp_path):
    cfg = tiny_det_cfg(max_epochs=1, with_val=True)
    _train(cfg)
    ckpt = tmp_path / 'work_dir' / 'epoch_1.pth'
    # With our allow-list active, nothing in the checkpoint is left unsafe ...
    with mmengine_globals_allowed():
        assert torch.serialization.get_unsafe_globals_in_checkpoint(str(ckpt)) == []
    # ... and outside our loaders torch's list is as it was (importing the plugin added
    # nothing): what the checkpoint needs is exactly covered by our list.
    needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(ckpt)))
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in needed
    assert needed <= _allowed_names()
    with pytest.raises(pickle.UnpicklingError, match='Unsupported global'):
        torch.load(ckpt, map_location='cpu', weights_only=True)
    with mmengine_globals_allowed():
        loaded = torch.load(ckpt, map_location='cpu', weights_only=True)
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and np.isfinite(buffer.mean())


class NotAllowed:
    """Stands for any class a checkpoint should not be able to instantiate."""


class _GetattrGadget:
    """Pickles as ``getattr(HistoryBuffer.min, '__globals__')``: a route to module globals."""

    def __reduce__(self):
        return getattr, (HistoryBuffer.min, '__globals__')


class _GetattrOnHistoryBuffer:
    """Pickles as ``getattr(HistoryBuffer, '__init__')``: not a statistics method."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


@pytest.mark.parametrize('payload, message', [
    (NotAllowed(), 'Unsupported global'),
    (_GetattrGadget(), "getattr.*'__globals__'.*not allowed"),
    (_GetattrOnHistoryBuffer(), "getattr.*'__init__'.*not allowed"),
    (np.array([NotAllowed()], dtype=object), None),
    (np.array(['text']), None),
], ids=['custom-class', 'getattr-globals', 'getattr-init', 'object-array', 'str-array'])
def test_allow_list_rejects_other_globals(payload, message):
    buffer = io.BytesIO()
    torch.save({'x': payload}, buffer)
    buffer.seek(0)
    with mmengine_globals_allowed(), pytest.raises(pickle.UnpicklingError, match=message):
        torch.load(buffer, weights_only=True)


def test_getattr_itself_is_not_allow_listed():
    with mmengine_globals_allowed():
        safe = torch.serialization.get_safe_globals()
    assert getattr not in safe
    assert all(not (isinstance(item, tuple) and item[0] is getattr) for item in safe)


# ------------------------------------------------------------- resumes that cannot work
EMA = dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.1, update_buffers=True,
           priority=49)


@pytest.fixture(scope='module')
def trained_work_dir(tiny_det_cfg_factory, tmp_path_factory, run_tool):
    """(config file, work dir) of a 1-epoch tools/train.py run with EMA (epoch_1.pth)."""
    root = tmp_path_factory.mktemp('trained_cli')
    cfg = tiny_det_cfg_factory(root / 'work_dir', max_epochs=1)
    cfg.custom_hooks = [EMA]
    cfg_file = root / 'tiny_ema.py'
    cfg.dump(str(cfg_file))
    run = run_tool('tools/train.py', cfg_file)
    assert run.returncode == 0, run.stderr[-3000:]
    return cfg_file, root / 'work_dir'


def _work_dir_copy(trained_work_dir, tmp_path) -> Path:
    work_dir = tmp_path / 'work_dir'
    shutil.copytree(trained_work_dir[1], work_dir)
    return work_dir


def _files(work_dir: Path) -> dict:
    """Every file under the work dir with its content's hash and modification time."""
    return {str(p.relative_to(work_dir)): (hashlib.sha1(p.read_bytes()).hexdigest(),
                                           p.stat().st_mtime_ns)
            for p in sorted(work_dir.rglob('*')) if p.is_file()}


def _resume_fails(run_tool, trained_work_dir, work_dir, *args) -> str:
    """Run ``tools/train.py --resume ...``; assert it stopped with exactly one ``error:``
    line, no traceback and the work dir untouched; return that line."""
    before = _files(work_dir)
    run = run_tool('tools/train.py', trained_work_dir[0], '--work-dir', work_dir, '--resume',
                   *args)
    assert run.returncode == 1, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and 'Traceback' not in run.stderr, run.stderr[-3000:]
    assert _files(work_dir) == before  # no log dir, the dumped config not rewritten
    return errors[0]


def test_cli_resume_with_other_class_count_stops_before_writing(trained_work_dir, tmp_path,
                                                                run_tool):
    """A 2-class checkpoint resumed with 3 classes: the weights load (2 class-predictor
    tensors of many differ) but the optimizer's momentum does not fit."""
    work_dir = _work_dir_copy(trained_work_dir, tmp_path)
    error = _resume_fails(run_tool, trained_work_dir, work_dir, '--cfg-options',
                          'model.bbox_head.num_classes=3')
    assert f'{work_dir}/epoch_1.pth does not fit RetinaNet: its optimizer state' in error
    assert 'bbox_head.retina_cls.weight: model (3, 16, 3, 3), optimizer momentum_buffer ' \
        '(2, 16, 3, 3)' in error
    assert 'load_from=CHECKPOINT instead of --resume' in error


@pytest.mark.parametrize('max_epochs', [1, 2], ids=['nothing-left-to-train', 'training-left'])
def test_cli_resume_refuses_nan_in_the_state_dict_ema_copies(max_epochs, trained_work_dir,
                                                             tmp_path, run_tool):
    """``state_dict`` of an EMA run holds the averaged weights, which EMAHook copies into its
    EMA model on resume; NaN there stops the load, also when no iteration is left."""
    work_dir = _work_dir_copy(trained_work_dir, tmp_path)
    checkpoint = read_checkpoint(str(work_dir / 'epoch_1.pth'))
    key = 'neck.fpn_convs.1.conv.weight'
    checkpoint['state_dict'][key].view(-1)[0] = float('nan')
    torch.save(checkpoint, work_dir / 'nan.pth')
    error = _resume_fails(run_tool, trained_work_dir, work_dir, str(work_dir / 'nan.pth'),
                          '--cfg-options', f'train_cfg.max_epochs={max_epochs}')
    assert f'{work_dir}/nan.pth: 1 tensor(s) hold NaN/inf values: {key} (1 NaN, 0 inf' in error


@pytest.mark.parametrize('size', [0, 5000], ids=['empty', 'truncated'])
def test_cli_resume_from_unreadable_checkpoint(size, trained_work_dir, tmp_path, run_tool):
    work_dir = _work_dir_copy(trained_work_dir, tmp_path)
    bad = work_dir / 'bad.pth'
    bad.write_bytes((work_dir / 'epoch_1.pth').read_bytes()[:size])
    error = _resume_fails(run_tool, trained_work_dir, work_dir, str(bad))
    assert f"Cannot read checkpoint '{bad}' ({size} bytes)" in error
    assert ('is empty' if size == 0 else 'truncated') in error
    assert 'use another checkpoint' in error


def test_nan_state_dict_stops_the_runner_load_before_ema_hook(trained_work_dir, tmp_path,
                                                              tiny_det_cfg):
    """The Runner's own load path (what a resume inside train() runs): checked before the
    ``after_load_checkpoint`` hooks (EMAHook) see the checkpoint."""
    from effdet_plugin.checkpoint import NonFiniteWeightsError

    checkpoint = read_checkpoint(str(trained_work_dir[1] / 'epoch_1.pth'))
    checkpoint['ema_state_dict']['module.bbox_head.retina_reg.bias'][0] = float('inf')
    torch.save(checkpoint, tmp_path / 'inf.pth')
    runner = CheckedRunner.from_cfg(tiny_det_cfg(tmp_path / 'in_process'))
    seen = []
    runner.register_hook(type('_Seen', (Hook, ), dict(
        after_load_checkpoint=lambda self, runner, checkpoint: seen.append(1)))())
    with pytest.raises(NonFiniteWeightsError, match=r'inf\.pth \(ema_state_dict\): 1 tensor'):
        runner.load_checkpoint(str(tmp_path / 'inf.pth'))
    assert not seen
