"""Fixtures shared by the test folders."""

import errno
from collections.abc import Callable
from fnmatch import fnmatch

import pytest

import hpn.files


class _FullDisk:
    """A file handle that takes half of the first write, then fails as a full disk does."""

    def __init__(self, handle):
        self._handle = handle

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self._handle.write(view[: len(view) // 2])
        self._handle.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()


@pytest.fixture
def full_disk(monkeypatch) -> Callable[..., None]:
    """``full_disk("last.pt", ...)``: from then on, every atomic write (:mod:`hpn.files`) of a
    file whose name matches one of the globs fails part-way with ENOSPC; ``full_disk()``: the
    disk has room again."""
    real, patterns = hpn.files._open_temp, []

    def open_temp(path):
        handle, tmp = real(path)
        if any(fnmatch(path.name, p) for p in patterns):
            return _FullDisk(handle), tmp
        return handle, tmp

    def fill(*globs: str) -> None:
        patterns[:] = globs

    monkeypatch.setattr(hpn.files, "_open_temp", open_temp)
    return fill
