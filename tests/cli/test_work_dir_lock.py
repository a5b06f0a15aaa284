"""The work-dir lock: a stale lock is taken over by exactly one of many processes that find it
at the same instant."""
import json
import multiprocessing
import socket
import subprocess

import pytest

from effdet_plugin.cli.work_dir_lock import LOCK_NAME, WorkDirLock, WorkDirLockedError

CONTENDERS = 16
ROUNDS = 12


def _dead_pid() -> int:
    """The id of a process that has ended (and been reaped) on this host."""
    proc = subprocess.Popen(['true'])
    proc.wait()
    return proc.pid


def _contend(work_dir: str, barrier, results) -> None:
    """Each round: try the lock together with the others, report, then let the winner release
    it only after every contender has tried (a release in between would make a second,
    legitimate winner)."""
    for _ in range(ROUNDS):
        lock = WorkDirLock(work_dir)
        barrier.wait()  # the main process has written a stale lock: start together
        try:
            lock.acquire()
            won = True
        except WorkDirLockedError:
            won = False
        results.put(won)
        barrier.wait()  # everyone has tried
        lock.release()
        barrier.wait()  # released


def test_stale_lock_is_taken_over_by_exactly_one_process(tmp_path):
    ctx = multiprocessing.get_context('fork')
    barrier = ctx.Barrier(CONTENDERS + 1, timeout=60)
    results = ctx.Queue()
    work_dir = tmp_path / 'work_dir'
    work_dir.mkdir()
    procs = [ctx.Process(target=_contend, args=(str(work_dir), barrier, results))
             for _ in range(CONTENDERS)]
    for proc in procs:
        proc.start()
    winners = []
    try:
        for _ in range(ROUNDS):
            stale = dict(pid=_dead_pid(), host=socket.gethostname(), started='before',
                         command='killed run')
            (work_dir / LOCK_NAME).write_text(json.dumps(stale))
            barrier.wait()
            won = [results.get(timeout=60) for _ in range(CONTENDERS)]
            winners.append(sum(won))
            owner = json.loads((work_dir / LOCK_NAME).read_text())
            assert owner['pid'] != stale['pid'], 'the stale lock was not taken over'
            barrier.wait()
            barrier.wait()
            assert not (work_dir / LOCK_NAME).exists()  # the winner released it
    except BaseException:
        barrier.abort()  # frees the contenders still waiting
        raise
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    assert winners == [1] * ROUNDS, f'winners per round: {winners}'


def test_live_lock_is_refused(tmp_path):
    with WorkDirLock(str(tmp_path)):
        with pytest.raises(WorkDirLockedError, match='is running'):
            WorkDirLock(str(tmp_path)).acquire()
    assert not (tmp_path / LOCK_NAME).exists()
