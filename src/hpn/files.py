"""Atomic file writes: readers see the old file or the new one, never half of either; and the
keys that tie a kept result to what made it (:func:`content_key`).

A write that fails part-way (a full disk, a file-size limit) removes its temporary file,
leaves the previous file as it was and raises :class:`OSError` naming the file in one line.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(path, err) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    """``torch.save(obj)`` to ``path`` atomically: serialised in memory, then written.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     atomic_torch_save(Path(tmp) / "p.pt", {"w": torch.ones(2)})
        ...     torch.load(Path(tmp) / "p.pt")["w"].tolist()
        [1.0, 1.0]
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


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
