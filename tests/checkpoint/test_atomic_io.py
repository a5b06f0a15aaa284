"""atomic_write on a full disk: the target keeps its content and the error names it."""
import errno
import os

import pytest

from effdet_plugin.checkpoint import atomic_io
from effdet_plugin.checkpoint.atomic_io import DiskFullError, atomic_write


@pytest.mark.parametrize('code', [errno.ENOSPC, errno.EDQUOT])
def test_full_disk_keeps_the_target_and_names_it(code, tmp_path, monkeypatch):
    target = tmp_path / 'iter_4.pth'
    target.write_bytes(b'previous')

    def fsync_full(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic_io.os, 'fsync', fsync_full)
    with pytest.raises(DiskFullError) as error:
        atomic_write(target, b'x' * 3 * 2**20)
    assert error.value.errno == code
    what = 'no space left on the device' if code == errno.ENOSPC else 'the disk quota is used up'
    assert str(error.value).startswith(
        f"cannot write '{target}': {what} of '{tmp_path}' (3.0 MB needed, ")
    assert target.read_bytes() == b'previous'
    assert [p.name for p in tmp_path.iterdir()] == ['iter_4.pth']  # no temporary file left


def test_other_write_errors_pass_unchanged(tmp_path, monkeypatch):
    def fsync_broken(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(atomic_io.os, 'fsync', fsync_broken)
    with pytest.raises(OSError) as error:
        atomic_write(tmp_path / 'a.pth', b'x')
    assert type(error.value) is OSError and error.value.errno == errno.EIO
