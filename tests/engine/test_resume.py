"""Resuming with torch >= 2.6 (``weights_only`` loads) gives exactly an uninterrupted run."""
import io
import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner

from effdet_plugin.checkpoint.compat import mmengine_safe_globals


def _train(cfg) -> Runner:
    runner = Runner.from_cfg(cfg)
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
    epoch1 = torch.load(work_dir / 'epoch_1.pth', map_location='cpu')['state_dict']
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
    runner = Runner.from_cfg(tiny_det_cfg(work_dir, max_epochs=2))
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
    ckpt = torch.load(work_dir / 'epoch_2.pth', map_location='cpu', weights_only=True)
    assert ckpt['meta']['epoch'] == 2
    _assert_same_weights(ckpt['state_dict'], uninterrupted['final'])


def _allowed_names() -> set:
    return {item[1] if isinstance(item, tuple) else f'{item.__module__}.{item.__qualname__}'
            for item in mmengine_safe_globals()}


def test_checkpoint_needs_only_allow_listed_globals(tiny_det_cfg, tmp_path):
    cfg = tiny_det_cfg(max_epochs=1, with_val=True)
    _train(cfg)
    ckpt = tmp_path / 'work_dir' / 'epoch_1.pth'
    # With our allow-list registered, nothing in the checkpoint is left unsafe ...
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(ckpt)) == []
    # ... and without it, what the checkpoint needs is exactly covered by the list.
    registered = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(ckpt)))
    finally:
        torch.serialization.add_safe_globals(registered)
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in needed
    assert needed <= _allowed_names()
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
    with pytest.raises(pickle.UnpicklingError, match=message):
        torch.load(buffer, weights_only=True)


def test_getattr_itself_is_not_allow_listed():
    safe = torch.serialization.get_safe_globals()
    assert getattr not in safe
    assert all(not (isinstance(item, tuple) and item[0] is getattr) for item in safe)
