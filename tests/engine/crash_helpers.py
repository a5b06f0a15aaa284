"""Crashes for the crash-safety tests, loaded into tools/train.py through ``custom_imports``.

``KillAtIterationHook`` ends the process like ``kill -9`` (``os._exit``: no cleanup, no
``finally``) after an iteration. ``EFFDET_TEST_KILL`` kills it in the middle of a checkpoint
save instead:

- ``serialize:N``: during the N-th ``torch.save`` (mmengine serialises a checkpoint before it
  writes anything; plain CheckpointHook has already deleted the oldest checkpoint by then);
- ``rename:NAME``: when the complete temporary file is about to be renamed to ``NAME``.

``EFFDET_TEST_DISK_FULL=NAME`` makes the write of ``NAME``'s temporary file fail like a full
disk (``ENOSPC`` after half of the bytes).
"""
import builtins
import errno
import os

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

KILLED = 137  # the exit status of a process killed by SIGKILL


@HOOKS.register_module()
class KillAtIterationHook(Hook):
    """``os._exit(137)`` right after iteration ``iteration`` (1-based) and its hooks."""

    priority = 'LOWEST'

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.iteration:
            os._exit(KILLED)


@HOOKS.register_module()
class ScaleBatchNormStatsHook(Hook):
    """Multiply every BatchNorm ``running_var`` by ``factor`` after iteration ``iteration``:
    the buffers overflow to inf while parameters (and the next losses) can stay finite."""

    priority = 'LOWEST'

    def __init__(self, iteration: int, factor: float = float('inf')) -> None:
        self.iteration, self.factor = iteration, factor

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.iteration:
            for name, buffer in runner.model.named_buffers():
                if name.endswith('running_var'):
                    buffer.mul_(self.factor)


def _install_kill_point(spec: str) -> None:
    kind, _, arg = spec.partition(':')
    if kind == 'serialize':
        save, calls = torch.save, [0]

        def killing_save(*args, **kwargs):
            calls[0] += 1
            if calls[0] == int(arg):
                os._exit(KILLED)
            return save(*args, **kwargs)

        torch.save = killing_save
    elif kind == 'rename':
        replace = os.replace

        def killing_replace(src, dst, *args, **kwargs):
            if os.path.basename(dst) == arg:
                os._exit(KILLED)
            return replace(src, dst, *args, **kwargs)

        os.replace = killing_replace
    else:
        raise ValueError(f'unknown EFFDET_TEST_KILL {spec!r}')


def _install_disk_full(name: str) -> None:
    real_open = builtins.open

    def open_filling_the_disk(file, mode='r', *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if 'w' in mode and os.path.basename(str(file)).startswith(f'.{name}.'):
            write = f.write

            def write_until_full(data):
                write(data[:len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            f.write = write_until_full
        return f

    builtins.open = open_filling_the_disk


if os.environ.get('EFFDET_TEST_DISK_FULL'):
    _install_disk_full(os.environ['EFFDET_TEST_DISK_FULL'])
if os.environ.get('EFFDET_TEST_KILL'):
    _install_kill_point(os.environ['EFFDET_TEST_KILL'])
