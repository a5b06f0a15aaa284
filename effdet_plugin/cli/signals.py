"""Ctrl-C and SIGTERM end a tool by unwinding, not where it stands.

Python's default SIGTERM kills the process at once: no ``finally`` runs, so the work-dir lock
stays behind and the dataloader workers outlive their parent until they notice it is gone.
Inside :func:`stop_on_signals` SIGTERM raises like Ctrl-C does, so the stack unwinds (the lock
is released, a checkpoint write in progress is rolled back), Python's exit stops the workers
(daemon processes) and the tool ends with one line and the shell's status for the signal.
"""
import os
import signal
import sys
from contextlib import contextmanager
from typing import Iterator


class _Terminated(BaseException):
    """Raised in the main thread by SIGTERM (a BaseException, as KeyboardInterrupt is, so
    that ``except Exception`` blocks do not swallow it)."""


@contextmanager
def stop_on_signals(what: str = 'stopped') -> Iterator[None]:
    """Run the block; on Ctrl-C (SIGINT) or SIGTERM, unwind it and exit with status 130 or 143
    after printing ``<what> by <signal>`` to stderr."""
    main_pid = os.getpid()

    def on_sigterm(signum, frame) -> None:
        if os.getpid() != main_pid:  # a forked worker: die as SIGTERM would have it
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    # Python leaves SIGINT ignored when it started so (a job started with `&` by a script, a
    # pytest-xdist worker's child): the tool still stops on it, as it says it does.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    except KeyboardInterrupt:
        print(f'{what} by Ctrl-C (SIGINT)', file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except _Terminated:
        print(f'{what} by SIGTERM', file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
