"""Run a repository script in a forked copy of the test process.

A tool started with ``python tools/x.py`` spends about 4 s of a 2-core CPU importing torch,
mmcv, mmdet and the plugin before it reads its first argument; the fast suite starts ~100 of
them. A fork of the test process, which has imported all of that already, runs the same script
the same way (``runpy`` as ``__main__``, the given argv, environment, working directory and
``PYTHONPATH``) without paying for the imports again.

What a fork cannot give is a fresh interpreter: it shares the imports and their module-level
state with the test process. So :func:`run_forked` is used only where that does not matter
(see :func:`can_fork`), and mmengine's named global instances (loggers, message hubs,
visualizers, default scopes) are emptied in the child so that the tool builds its own. Tests
that are about a fresh process (what ``import effdet_plugin`` changes, setup scripts, signals,
two concurrent trainings) start real subprocesses.
"""
import io
import logging
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Dict, List

_MULTI_THREADED = False  # this process asked torch for more than one thread at some point


def watch_torch_threads() -> None:
    """Record every ``torch.set_num_threads(n > 1)`` of this process (conftest calls this
    once): after one, its OpenMP pool has run with several threads and forks are unsafe."""
    import torch
    set_num_threads = torch.set_num_threads

    def recording(n: int) -> None:
        global _MULTI_THREADED
        _MULTI_THREADED = _MULTI_THREADED or n > 1
        set_num_threads(n)

    torch.set_num_threads = recording


def can_fork(env: Dict[str, str]) -> bool:
    """Whether a forked child behaves as a fresh single-threaded tool process would.

    GNU OpenMP cannot be used in a fork of a process that ran parallel regions with more than
    one thread (the child waits forever at its first parallel region's barrier), so both this
    process, over its whole life, and the tool must compute single-threaded.
    """
    import torch
    return (hasattr(os, 'fork') and os.environ.get('EFFDET_TEST_SUBPROCESS') != '1'
            and env.get('OMP_NUM_THREADS') == '1' and os.environ.get('OMP_NUM_THREADS') == '1'
            and not _MULTI_THREADED and torch.get_num_threads() == 1)


def _fresh_mmengine_globals() -> None:
    """Empty the instance registries of mmengine's ManagerMixin classes (MMLogger, MessageHub,
    Visualizer, DefaultScope, ...): a fresh process starts without them."""
    from mmengine.utils import ManagerMixin

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    for cls in {ManagerMixin, *subclasses(ManagerMixin)}:
        instances = getattr(cls, '_instance_dict', None)
        if instances is not None:
            instances.clear()


def _redirect_output(out_fd: int, err_fd: int) -> None:
    """Point fds 1 and 2, ``sys.stdout``/``sys.stderr`` and the logging stream handlers made
    before the fork (they hold the test process's streams) at the capture files."""
    old_err = {id(sys.stderr), id(sys.__stderr__)}
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    stdout = io.TextIOWrapper(io.FileIO(1, 'w', closefd=False), line_buffering=True)
    stderr = io.TextIOWrapper(io.FileIO(2, 'w', closefd=False), line_buffering=True)
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    for handler in (h for lg in loggers for h in lg.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler):
            handler.stream = stderr if id(handler.stream) in old_err else stdout
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__ = stdout, stderr


def _child(script: Path, args: List[str], env: Dict[str, str], cwd: Path, out_fd: int,
           err_fd: int) -> None:
    """In the forked child: run ``script`` as ``__main__`` and exit with its status."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _redirect_output(out_fd, err_fd)
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        extra = [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p]
        for path in extra:  # a module imported from there before is imported anew
            for name, module in list(sys.modules.items()):
                if str(getattr(module, '__file__', '') or '').startswith(path + os.sep):
                    del sys.modules[name]
        sys.path[:0] = [str(script.parent)] + extra
        sys.argv = [str(script)] + args
        _fresh_mmengine_globals()
        import torch
        torch.set_num_threads(1)
        runpy.run_path(str(script), run_name='__main__')
        code = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:  # sys.exit('message'): printed to stderr, status 1
            print(e.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 130
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def run_forked(script: Path, args: List[str], env: Dict[str, str], cwd: Path,
               timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run([python, script, *args], ...)`` with output captured as text, run in a
    fork of this process. A timeout kills the child and raises ``subprocess.TimeoutExpired``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:
            _child(script, args, env, cwd, out.fileno(), err.fileno())
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise subprocess.TimeoutExpired([sys.executable, str(script), *args], timeout)
            time.sleep(0.02)
        texts = []
        for f in (out, err):
            f.seek(0)
            texts.append(f.read().decode('utf-8', errors='replace'))
    return subprocess.CompletedProcess([sys.executable, str(script), *args],
                                       os.waitstatus_to_exitcode(status), *texts)
