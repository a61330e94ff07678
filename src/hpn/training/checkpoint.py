"""Run-folder ownership: one live run per folder.

A run takes ``out_dir/run.lock`` before it reads or writes anything there and drops it when it
ends. The lock file is created exclusively (``O_CREAT | O_EXCL``) and holds the owner's host
and process id, so a second run into the same folder refuses in one line while the first one
lives, and a lock left by a killed process on this host is recognised as stale and taken over.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = "run.lock"


class RunFolderBusy(ValueError):
    """Another live process owns the run folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_owner(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # vanished, or half-written by a process that died while writing


class RunLock:
    """Exclusive ownership of a run folder, as a context manager.

    Args:
        folder: the run folder (created if missing).

    Raises:
        RunFolderBusy: on entry, when a live process (or one on another host, which cannot be
            checked) holds the folder.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp, RunLock(tmp) as lock:
        ...     lock.path.name
        'run.lock'
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._held = False
        self._created_folder = False

    def __enter__(self) -> RunLock:
        self._created_folder = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(50):
            if self._try_create():
                self._held = True
                return self
            owner = _read_owner(self.path)
            if owner is None and self._young():
                time.sleep(0.1)  # its owner may be writing it right now
                continue
            if owner is not None and not self._stale(owner):
                raise RunFolderBusy(
                    f"{self.folder} is in use by process {owner.get('pid')} on "
                    f"{owner.get('host')} (since {owner.get('started')}); wait for it to end "
                    "or choose another --out"
                )
            self.path.unlink(missing_ok=True)  # stale, or unreadable for long: take it over
        raise RunFolderBusy(f"{self.folder}: could not take {self.path} (contended)")

    def _young(self) -> bool:
        try:
            return time.time() - self.path.stat().st_mtime < 2.0
        except OSError:
            return False

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        with os.fdopen(fd, "w") as file:
            json.dump(owner, file)
        return True

    @staticmethod
    def _stale(owner: dict) -> bool:
        if owner.get("host") != socket.gethostname():
            return False  # another machine's process: cannot tell, so respect it
        pid = owner.get("pid")
        return not isinstance(pid, int) or not _alive(pid)

    def __exit__(self, *exc: object) -> None:
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False
            if self._created_folder and not any(self.folder.iterdir()):
                self.folder.rmdir()  # a run refused before it wrote anything leaves no folder
