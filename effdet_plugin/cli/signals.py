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
from typing import Iterator, Optional, Tuple


class _Terminated(BaseException):
    """Raised in the main thread by SIGTERM (a BaseException, as KeyboardInterrupt is, so
    that ``except Exception`` blocks do not swallow it)."""


def _signal_behind(error: BaseException) -> Optional[Tuple[str, int]]:
    """``(name, number)`` of the signal that raised ``error`` or an exception it was raised
    while handling: code with a bare ``except:`` turns the signal's exception into its own
    (mmengine's config formatting raises ``SyntaxError`` for any error, Ctrl-C included)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, KeyboardInterrupt):
            return 'Ctrl-C (SIGINT)', signal.SIGINT
        if isinstance(error, _Terminated):
            return 'SIGTERM', signal.SIGTERM
        error = error.__cause__ or error.__context__
    return None


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
    except (KeyboardInterrupt, _Terminated, Exception) as e:
        stop = _signal_behind(e)
        if stop is None:
            raise
        said, signum = stop
        print(f'{what} by {said}', file=sys.stderr)
        sys.exit(128 + signum)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
