"""Crash-safe file writes: a reader sees the old file or the complete new one, never a part.

mmengine's :class:`~mmengine.fileio.LocalBackend` writes a checkpoint straight into its final
name; a process killed during that write leaves a truncated file under a valid name.
:func:`atomic_write` writes a temporary file in the same directory, flushes and fsyncs it, and
renames it over the target (``os.replace`` is atomic within one file system). The
``'local_atomic'`` file backend routes mmengine's ``put``/``put_text`` through it, so that
``backend_args=dict(backend='local_atomic')`` makes any mmengine writer crash-safe.
A write that finds the disk full raises :class:`DiskFullError` naming the file, the space it
needed and the space left; the target keeps its previous content.
"""
import errno
import glob
import os
import os.path as osp
import shutil
from typing import List, Union

from mmengine.fileio import LocalBackend, register_backend

_TMP_SUFFIX = '.tmp'
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """A write found no space left on its device (or the disk quota used up)."""

    def __init__(self, message: str, errno_: int = errno.ENOSPC) -> None:
        super().__init__(message)
        self.errno = errno_


def _megabytes(num_bytes: int) -> str:
    return f'{num_bytes / 2**20:.1f} MB'


def _disk_full_error(path: str, size: int, error: OSError) -> DiskFullError:
    directory = osp.dirname(path)
    try:
        free = f', {_megabytes(shutil.disk_usage(directory).free)} free'
    except OSError:
        free = ''
    what = 'no space left on the device' if error.errno == errno.ENOSPC else \
        'the disk quota is used up'
    return DiskFullError(
        f"cannot write '{path}': {what} of '{directory}' ({_megabytes(size)} needed{free}); "
        'nothing was written and a previous file of that name is unchanged', error.errno)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _temp_path(path: str) -> str:
    """Hidden temporary name next to ``path``, tagged with this process id."""
    directory, name = osp.split(path)
    return osp.join(directory, f'.{name}.{os.getpid()}{_TMP_SUFFIX}')


def _fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Union[str, os.PathLike], data: Union[bytes, str]) -> None:
    """Write ``data`` to ``path`` so that ``path`` is never seen partially written.

    Args:
        path (str | PathLike): Target file; its directory is created if missing.
        data (bytes | str): Content; ``str`` is written as UTF-8.

    Raises:
        DiskFullError: No space left (or quota used up); ``path`` is unchanged.
    """
    path = osp.abspath(os.fspath(path))
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = _temp_path(path)
    if isinstance(data, str):
        data = data.encode('utf-8')
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if osp.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and e.errno in _DISK_FULL:
            raise _disk_full_error(path, len(data), e) from e
        raise
    _fsync_dir(osp.dirname(path))


def leftover_temp_files(directory: str) -> List[str]:
    """Temporary files of :func:`atomic_write` in ``directory`` whose writer process is gone
    (killed while writing), so they can be deleted."""
    leftovers = []
    for path in glob.glob(osp.join(glob.escape(directory), f'.*{_TMP_SUFFIX}')):
        pid = osp.basename(path)[:-len(_TMP_SUFFIX)].rsplit('.', 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            leftovers.append(path)
    return sorted(leftovers)


@register_backend('local_atomic')
class AtomicLocalBackend(LocalBackend):
    """:class:`~mmengine.fileio.LocalBackend` whose writes go through :func:`atomic_write`."""

    def put(self, obj: bytes, filepath: Union[str, os.PathLike]) -> None:
        """Write bytes to ``filepath`` atomically (temporary file, fsync, rename)."""
        atomic_write(filepath, obj)

    def put_text(self,
                 obj: str,
                 filepath: Union[str, os.PathLike],
                 encoding: str = 'utf-8') -> None:
        """Write text to ``filepath`` atomically (temporary file, fsync, rename)."""
        atomic_write(filepath, obj.encode(encoding))
