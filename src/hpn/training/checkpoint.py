"""The state of a run that survives the process: checkpoints, random state, the folder lock.

``last.pt`` (every epoch) holds the model, optimiser, schedule, random state, epoch, best
validation score and the metrics rows so far, so ``--resume`` continues exactly where the run
stopped; ``best.pt`` holds the model of the best validation epoch. Both are written
atomically (:func:`hpn.files.atomic_torch_save`): a killed run leaves the previous file.

Both hold tensors and plain types only (numpy's random state is stored as a tensor and
numbers) and every reader goes through :func:`read_checkpoint`, which loads with
``torch.load(..., weights_only=True)``: a file that asks for anything else (a pickled object
whose ``__reduce__`` runs code, or numpy's state pickled by hpn before this format) is refused
in one line and nothing in it runs.

A run takes ``out_dir/run.lock`` before it reads or writes anything there and drops it when it
ends. The lock file is created exclusively (``O_CREAT | O_EXCL``) and holds the owner's host
and process id, so a second run into the same folder refuses in one line while the first one
lives, and a lock left by a killed process on this host is recognised as stale and taken over.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from hpn.files import atomic_torch_save

LOCK_NAME = "run.lock"
LAST, BEST = "last.pt", "best.pt"


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


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (the order matters for resumes)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The global generators' state: torch, numpy, Python, and CUDA's when in use; tensors
    and plain types only (see :func:`numpy_state_to_plain`)."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": numpy_state_to_plain(cast(tuple, np.random.get_state())),  # noqa: NPY002
        "python": random.getstate(),  # (version, tuple of 625 ints, float or None)
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()  # dropout masks drawn on the GPU
    return state


def numpy_state_to_plain(state: tuple) -> dict:
    """numpy's legacy ``get_state()`` tuple as a dict of a tensor and numbers.

    Example:
        >>> rng = np.random.RandomState(0)
        >>> plain = numpy_state_to_plain(rng.get_state())
        >>> plain["keys"].shape, plain["keys"].dtype
        (torch.Size([624]), torch.int64)
        >>> same = np.random.RandomState(1)
        >>> same.set_state(numpy_state_from_plain(plain))
        >>> same.randint(1000) == rng.randint(1000)
        True
    """
    name, keys, pos, has_gauss, cached = state
    return {
        "name": str(name),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),  # (624,) uint32 values
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def numpy_state_from_plain(plain: dict) -> tuple:
    """The ``set_state()`` tuple of what :func:`numpy_state_to_plain` returned."""
    keys = plain["keys"].cpu().numpy().astype(np.uint32)
    return (plain["name"], keys, plain["pos"], plain["has_gauss"], plain["cached_gaussian"])


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    # a checkpoint loaded with map_location="cuda" moves these byte tensors to the GPU too
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    np.random.set_state(numpy_state_from_plain(state["numpy"]))  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


class UnsafeCheckpoint(ValueError):
    """A checkpoint that ``torch.load(..., weights_only=True)`` refuses: crafted, or older."""


#: What the refused global of a checkpoint by hpn before the plain format is: numpy's state.
_OLD_FORMAT = re.compile(
    r"^numpy\.((_core\.|core\.)?(multiarray\._reconstruct|ndarray|dtype)|dtypes\.\w+)$"
)


def read_checkpoint(
    path: str | os.PathLike, device: str = "cpu", keys: tuple[str, ...] = ()
) -> dict:
    """The dict a checkpoint file holds, loaded with ``weights_only=True``: tensors and plain
    types only; nothing in the file runs.

    Args:
        path: a ``last.pt`` or ``best.pt`` (or any file :func:`torch.save` wrote a dict to).
        device: ``map_location`` of the tensors.
        keys: entries the dict must have.

    Raises:
        UnsafeCheckpoint: the file asks for a Python object beyond tensors and plain types,
            in one line: a checkpoint of an older hpn (numpy's random state pickled) says so
            and how to proceed; anything else is named and refused.
        ValueError: a damaged file, or not a dict with ``keys``.
        OSError: the file is missing or cannot be read.
    """
    path = Path(path)
    try:
        state = torch.load(path, weights_only=True, map_location=device)
    except pickle.UnpicklingError as err:
        raise _refusal(path, str(err)) from None
    except (RuntimeError, EOFError) as err:  # OSError (missing, unreadable) passes as it is
        raise ValueError(f"{path} is damaged or not a checkpoint ({_first(str(err))})") from None
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{path} is not an hpn checkpoint (no {', '.join(missing)})")
    return state


def _first(message: str) -> str:
    """The first sentence of an error message, on one line."""
    return message.strip().split(". ")[0].replace("\n", " ") or "unreadable"


def _refusal(path: Path, message: str) -> UnsafeCheckpoint:
    """The one-line error for a file ``weights_only`` refused with ``message``."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    if found is None:
        reason = message.rpartition("WeightsUnpickler error:")[2]
        return UnsafeCheckpoint(
            f"{path} is damaged or not a plain checkpoint ({_first(reason)}); nothing in it was run"
        )
    if _OLD_FORMAT.match(found.group(1)):
        return UnsafeCheckpoint(
            f"{path} was written by an older hpn (numpy state pickled in it) and cannot be "
            "loaded safely; retrain, or if you wrote the file yourself convert it once with "
            f'python -c "from hpn.training.checkpoint import upgrade_trusted; '
            f"upgrade_trusted('{path}')\""
        )
    return UnsafeCheckpoint(
        f"refusing to load {path}: it asks for {found.group(1)}, which no hpn checkpoint "
        "holds (the file may be crafted to run code); nothing in it was run"
    )


def upgrade_trusted(path: str | Path) -> None:
    """Rewrite a checkpoint of an older hpn in the plain format, in place (atomically).

    This unpickles the file with ``weights_only=False``, which runs whatever code it holds:
    only for files you wrote yourself, never for files from others.
    """
    state = torch.load(path, weights_only=False, map_location="cpu")
    numpy_state = state.get("rng", {}).get("numpy")
    if isinstance(numpy_state, tuple):
        state["rng"]["numpy"] = numpy_state_to_plain(numpy_state)
    atomic_torch_save(path, state)


@dataclass
class RunState:
    """Where a run stands after an epoch: what ``last.pt`` holds besides the state dicts.

    Attributes:
        epoch: the last finished epoch, 0-based.
        best: the best validation score so far.
        best_epoch: the 1-based epoch that reached it.
        rows: the metrics rows of every epoch so far (``metrics.csv``).
    """

    epoch: int
    best: float
    best_epoch: int
    rows: list[dict]


def require_finished(run_dir: Path, context: str = "") -> None:
    """Raise unless ``run_dir`` holds a finished run's ``config.json`` and ``best.pt``.

    Raises:
        FileNotFoundError: one line naming the folder, the missing file and ``context``
            (a prefix such as ``"prototypes features:"``).
    """
    for name in ("config.json", BEST):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{context}{run_dir} is not a finished run folder (no {name})")


def save_last(
    folder: Path,
    net: nn.Module,
    opt: torch.optim.Optimizer,
    sched: LRScheduler,
    run: RunState,
    world: int,
) -> None:
    """Write ``folder/last.pt``: everything a resume needs, with the random state of now."""
    checkpoint = {
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": rng_state(),
        "epoch": run.epoch,
        "best": run.best,
        "best_epoch": run.best_epoch,
        "rows": run.rows,
        "world_size": world,
    }
    atomic_torch_save(folder / LAST, checkpoint)


def load_last(
    folder: Path, net: nn.Module, opt: torch.optim.Optimizer, sched: LRScheduler, device: str
) -> RunState:
    """Load ``folder/last.pt`` into the model, optimiser and schedule, restore the random
    state, and return where the run stood."""
    state = read_checkpoint(folder / LAST, device, ("model", "optimizer", "scheduler", "rng"))
    net.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    start = state["epoch"] + 1
    # checkpoints of older versions have no best_epoch (a resumed run replays its rows instead)
    return RunState(state["epoch"], state["best"], state.get("best_epoch", start), state["rows"])


def save_best(folder: Path, net: nn.Module, epoch: int) -> None:
    """Write ``folder/best.pt``: the model of the best validation epoch (0-based ``epoch``)."""
    atomic_torch_save(folder / BEST, {"model": net.state_dict(), "epoch": epoch})


def load_best(folder: Path, net: nn.Module, device: str) -> int:
    """Load ``folder/best.pt`` into ``net``; returns its 0-based epoch."""
    state = read_checkpoint(folder / BEST, device, ("model", "epoch"))
    net.load_state_dict(state["model"])
    return int(state["epoch"])


def backbone_weights(state: dict) -> dict:
    """The backbone's entries of a network's state dict (keys ``backbone.*``, as
    :class:`hpn.training.trainer.Network` names them), without the prefix.

    >>> backbone_weights({"backbone.0.weight": 1, "head.proj.weight": 2})
    {'0.weight': 1}
    """
    return {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
