"""Ctrl-C or SIGTERM on tools/train.py: the run unwinds and no dataloader worker outlives it."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from effdet_plugin.cli.signals import stop_on_signals
from effdet_plugin.cli.work_dir_lock import LOCK_NAME

REPO = Path(__file__).resolve().parents[2]


def _cmdline(pid: int) -> bytes:
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            return f.read()
    except FileNotFoundError:
        return b''


def _workers(pid: int) -> list:
    """The dataloader workers of ``pid``: its forked children (same command line). Other
    children, such as the shell and nvcc that mmengine's environment report starts during
    set-up, do not count."""
    out = subprocess.run(['ps', '-o', 'pid=', '--ppid', str(pid)], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split() if _cmdline(int(p)) == _cmdline(pid)]


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize('sig, said', [(signal.SIGINT, 'Ctrl-C (SIGINT)'),
                                       (signal.SIGTERM, 'SIGTERM')])
def test_signal_leaves_no_worker_behind(sig, said, tiny_det_cfg, tmp_path):
    """A training with 2 persistent dataloader workers gets the signal once they run: it ends
    with the signal's status and one line, its workers are gone by the time it has exited, and
    its work-dir lock is released (the stack unwound). Python's default SIGTERM left both
    workers running after the parent's exit."""
    work_dir = tmp_path / 'work_dir'
    cfg = tiny_det_cfg(work_dir)
    cfg.train_dataloader.update(num_workers=2, persistent_workers=True,
                                sampler=dict(type='InfiniteSampler', shuffle=True))
    cfg.train_dataloader.pop('batch_sampler')
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=100000, val_interval=100000)
    cfg.param_scheduler = []
    cfg.log_processor.by_epoch = False
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=100000)
    cfg_file = tmp_path / 'long.py'
    cfg.dump(str(cfg_file))
    log_file = tmp_path / 'train.log'
    with open(log_file, 'w') as log:
        proc = subprocess.Popen([sys.executable, 'tools/train.py', str(cfg_file)], cwd=REPO,
                                env=dict(os.environ, OMP_NUM_THREADS='1'), stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while len(_workers(proc.pid)) < 2:
            assert proc.poll() is None, log_file.read_text()[-3000:]
            assert time.time() < deadline, 'the dataloader workers did not start'
            time.sleep(0.2)
        workers = _workers(proc.pid)
        proc.send_signal(sig)
        assert proc.wait(timeout=120) == 128 + sig, log_file.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log_file.read_text()
    assert output.rstrip().endswith(f'training stopped by {said}'), output[-3000:]
    assert 'Traceback' not in output, output[-3000:]
    assert not [pid for pid in workers if _alive(pid)]
    assert not (work_dir / LOCK_NAME).exists()


def _swallowing(raise_signal) -> None:
    """Code that turns any error into its own, as mmengine's config formatting does."""
    try:
        raise_signal()
        time.sleep(5)  # the SIGTERM handler raises at the next bytecode
    except:  # noqa: E722
        raise SyntaxError('Failed to format the config file')


@pytest.mark.parametrize('raise_signal, said, status', [
    (lambda: os.kill(os.getpid(), signal.SIGTERM), 'SIGTERM', 143),
    (lambda: signal.raise_signal(signal.SIGINT), 'Ctrl-C (SIGINT)', 130)])
def test_a_signal_another_error_swallowed_still_stops_with_its_status(raise_signal, said, status,
                                                                      capsys):
    with pytest.raises(SystemExit) as stopped:
        with stop_on_signals('training stopped'):
            _swallowing(raise_signal)
    assert stopped.value.code == status
    assert capsys.readouterr().err == f'training stopped by {said}\n'
    with pytest.raises(SyntaxError):  # no signal behind it: the error as it is
        with stop_on_signals():
            _swallowing(lambda: 1 / 0)
