"""Atomic file writes: readers see the old file or the new one, never half of either; and the
keys that tie a kept result to what made it (:func:`content_key`).

A write that fails part-way (a full disk, a file-size limit) removes its temporary file,
leaves the previous file as it was and raises :class:`OSError` naming the file in one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import torch


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: int | None = None) -> Iterator[BinaryIO]:
    """A binary handle whose bytes replace ``path`` when the block ends without an error.

    They go to a temporary file in the same folder, are flushed to disk and renamed over
    ``path``; on any error the temporary file is removed and ``path`` keeps its old bytes.

    Args:
        path: the file to write (its folder is created).
        mode: permission bits of the new file (default: 0o666 less the process's umask, as
            ``open`` creates files, so colleagues can read a shared run folder when the
            umask allows it).

    Raises:
        OSError: a failed write (say ENOSPC), as :func:`write_error`: one line naming ``path``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with atomic_writer(Path(tmp) / "a.bin") as handle:
        ...         _ = handle.write(b"new")
        ...     (Path(tmp) / "a.bin").read_bytes()
        b'new'
    """
    path = Path(path)
    handle, tmp = _open_temp(path)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _default_mode() if mode is None else mode)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise write_error(path, err) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _default_mode() -> int:
    """0o666 less the process's umask: the bits ``open`` gives a new file."""
    try:  # Linux shows the umask without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, then put it back
    os.umask(mask)
    return 0o666 & ~mask


def _open_temp(path: Path) -> tuple[BinaryIO, Path]:
    """A new temporary file beside ``path`` (``.NAME.*.tmp``), open for writing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    return os.fdopen(fd, "wb"), Path(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_writer`)."""
    with atomic_writer(path) as handle:
        handle.write(data)


def write_error(path: Path, err: OSError) -> OSError:
    """``err`` (say ENOSPC) as one line that names the file and says the old one is kept.

    Example:
        >>> import errno
        >>> str(write_error(Path("run/last.pt"), OSError(errno.ENOSPC, "No space left on device")))
        '[Errno 28] could not write run/last.pt (No space left on device); the previous file is unchanged'
    """
    reason = err.strerror or str(err) or type(err).__name__
    return OSError(err.errno, f"could not write {path} ({reason}); the previous file is unchanged")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, as :func:`atomic_write_bytes`.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     atomic_write_text(Path(tmp) / "a" / "note.txt", "hi")
        ...     (Path(tmp) / "a" / "note.txt").read_text()
        'hi'
    """
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON (and a final newline) to ``path`` atomically.

    Values JSON cannot hold (paths, dates...) are written as their ``str``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     atomic_write_json(Path(tmp) / "run.json", {"folder": Path("runs")})
        ...     json.loads((Path(tmp) / "run.json").read_text())
        {'folder': 'runs'}
    """
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` atomically: serialised in memory, then written with
    :func:`atomic_writer`.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     atomic_torch_save(Path(tmp) / "p.pt", {"w": torch.ones(2)})
        ...     torch.load(Path(tmp) / "p.pt", weights_only=True)["w"].tolist()
        [1.0, 1.0]
    """
    # in memory first: torch's writer does not pass on a failed write to a file handle
    # (a full disk ends in "unexpected pos" instead of the OSError)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing, never removed) for the block.

    An advisory ``fcntl.flock``: processes that take the same lock wait for each other, and
    the system drops it when its holder ends, killed or not, so no lock is ever stale. Where
    ``fcntl`` is missing (Windows) it does nothing; writes stay atomic without it.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp, file_lock(Path(tmp) / "x.lock"):
        ...     (Path(tmp) / "x.lock").exists()
        True
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def remove_partial_writes(path: Path) -> list[Path]:
    """Remove the temporary files :func:`atomic_writer` left for ``path`` when its process
    was killed mid-write; returns them. Call it only while holding the lock that every
    writer of ``path`` takes, so no live write is removed."""
    partial = sorted(path.parent.glob(f".{path.name}.*.tmp"))
    for tmp in partial:
        tmp.unlink(missing_ok=True)
    return partial


def file_digest(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, as hex (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_key(files: list[Path], values: Any) -> str:
    """A key of what made a result: the sha256 of the files' digests and the canonical JSON
    (sorted keys, no spaces) of ``values``. A kept result is read back only under the same key.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     (Path(tmp) / "w.pt").write_bytes(b"one")
        ...     a = content_key([Path(tmp) / "w.pt"], {"x": 1, "y": [2]})
        ...     b = content_key([Path(tmp) / "w.pt"], {"y": [2], "x": 1})
        ...     (Path(tmp) / "w.pt").write_bytes(b"two")
        ...     c = content_key([Path(tmp) / "w.pt"], {"x": 1, "y": [2]})
        3
        3
        >>> a == b, a == c
        (True, False)
    """
    text = json.dumps([[file_digest(f) for f in files], values], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read_json_or_none(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing or unreadable (then it is rebuilt)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
