"""One training per work dir: a lock file naming the owner (pid, host), stale locks taken over.

Two trainings writing into one work dir overwrite each other's checkpoints and
``last_checkpoint``. :class:`WorkDirLock` creates ``<work_dir>/train.lock`` atomically (a
hard link of a complete temporary file, so the lock never exists half-written) and removes it
on exit. A lock whose process is gone (killed, machine rebooted) is taken over with a warning,
by exactly one of the processes that find it (they take turns under an ``flock`` on the work
dir); a lock of a live process, or of another host (whose processes cannot be checked), stops the
new run with a message saying how to proceed.
"""
import contextlib
import fcntl
import json
import logging
import os
import os.path as osp
import socket
import sys
import time
from typing import Iterator, Optional

from mmengine.logging import print_log

from ..checkpoint.atomic_io import pid_alive

LOCK_NAME = 'train.lock'


class WorkDirLockedError(RuntimeError):
    """Another training holds the work dir."""


class WorkDirLock:
    """Hold ``<work_dir>/train.lock`` while training; a context manager.

    Args:
        work_dir (str): The run's work dir; created if missing.
    """

    def __init__(self, work_dir: str) -> None:
        self.work_dir = work_dir
        self.path = osp.join(work_dir, LOCK_NAME)
        self.owner = dict(pid=os.getpid(), host=socket.gethostname(),
                          started=time.strftime('%Y-%m-%d %H:%M:%S'),
                          command=' '.join(sys.argv))
        self._held = False

    def _read_owner(self) -> Optional[dict]:
        try:
            with open(self.path) as f:
                owner = json.load(f)
            return owner if isinstance(owner, dict) else None
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return None

    def _create(self) -> bool:
        """Create the lock with its content in one step; False if it already exists."""
        os.makedirs(self.work_dir, exist_ok=True)
        tmp = f'{self.path}.{os.getpid()}.tmp'
        with open(tmp, 'w') as f:
            json.dump(self.owner, f)
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            os.remove(tmp)

    def _refuse(self, reason: str) -> WorkDirLockedError:
        return WorkDirLockedError(
            f'work dir {self.work_dir} is in use: {reason}. Two trainings in one work dir '
            'overwrite each other\'s checkpoints. Wait for that run to finish, pass another '
            f'--work-dir, or, if you are sure no training uses it, delete {self.path}.')

    def acquire(self) -> None:
        """Take the lock, or raise :class:`WorkDirLockedError` naming its owner."""
        for _ in range(3):  # retries after a stale lock was removed or released meanwhile
            if self._create():
                self._held = True
                return
            owner = self._read_owner()
            if owner == {}:  # released between our two steps
                continue
            if owner is None or 'pid' not in owner:
                raise self._refuse(f'{self.path} exists but cannot be read')
            who = f'process {owner["pid"]} on {owner.get("host", "?")}, started ' \
                  f'{owner.get("started", "?")} ({owner.get("command", "?")})'
            if owner.get('host') != self.owner['host']:
                raise self._refuse(f'locked by {who}, another host: its state cannot be '
                                   'checked from here')
            if pid_alive(int(owner['pid'])):
                raise self._refuse(f'training {who} is running')
            if self._take_over(owner, who):
                self._held = True
                return
        raise self._refuse(f'{self.path} was re-created by another process')

    def _take_over(self, stale: dict, who: str) -> bool:
        """Replace the stale lock of ``stale`` by ours; False if another process came first.

        Processes that find the same stale lock take turns under an OS lock on the work dir
        (``flock``, released by the kernel even if the holder dies), and each removes the lock
        file only if it still names the dead owner: without the turns, a late process would
        delete the lock its faster peer had just created, and both would train.
        """
        fd = os.open(self.work_dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if self._read_owner() != stale:
                return False
            print_log(f'Taking over the stale lock {self.path} of {who}: that process has '
                      'ended without releasing it (killed?).', logger='current',
                      level=logging.WARNING)
            os.remove(self.path)
            return self._create()
        finally:
            os.close(fd)  # releases the flock

    def release(self) -> None:
        """Remove the lock if this object holds it."""
        if self._held and (self._read_owner() or {}).get('pid') == self.owner['pid']:
            os.remove(self.path)
        self._held = False

    def __enter__(self) -> 'WorkDirLock':
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def hold_work_dir(work_dir: str) -> Iterator[None]:
    """Hold the work dir lock for the duration of the block, or exit with the lock's message.

    Only the first process of a distributed run (``RANK`` 0 or unset) takes the lock.
    """
    if int(os.environ.get('RANK', 0)) != 0:
        yield
        return
    lock = WorkDirLock(work_dir)
    try:
        lock.acquire()
    except WorkDirLockedError as e:
        sys.exit(f'error: {e}')
    try:
        yield
    finally:
        lock.release()
