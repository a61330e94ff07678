"""Fuzzing every file reader: truncated and garbled copies of valid files.

Each reader is fed mutated copies of a small valid file it wrote itself. A reader passes when
every mutant either loads or raises one of the errors the command line turns into a one-line
message (``ValueError``, ``FileNotFoundError``); anything else (an ``IndexError`` from a
half-parsed header, a ``struct.error``, a crash) is a bug. ``hpn bench fuzz`` prints the counts.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from hpn import prototypes as protos
from hpn.data.cifar import _load_split
from hpn.data.folders import load_image
from hpn.data.mnist import _read_mnist5k_csv, read_idx
from hpn.data.omniart import read_omniart_csv

#: Errors a reader may raise on bad input: the CLI prints them as one line with exit 2.
CLEAN_ERRORS = (ValueError, FileNotFoundError)


def _truncate(data: bytes, rng: np.random.Generator) -> bytes:
    return data[: int(rng.integers(0, max(len(data), 1)))]


def _flip(data: bytes, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        if out:
            out[int(rng.integers(len(out)))] = int(rng.integers(256))
    return bytes(out)


def _insert(data: bytes, rng: np.random.Generator) -> bytes:
    at = int(rng.integers(0, len(data) + 1))
    return (
        data[:at]
        + rng.integers(0, 256, int(rng.integers(1, 17)), dtype=np.uint8).tobytes()
        + data[at:]
    )


def _zero_run(data: bytes, rng: np.random.Generator) -> bytes:
    if not data:
        return data
    start = int(rng.integers(len(data)))
    stop = min(len(data), start + int(rng.integers(1, 65)))
    return data[:start] + bytes(stop - start) + data[stop:]


def _header(data: bytes, rng: np.random.Generator) -> bytes:
    """Garble the first 16 bytes, where formats keep their magic numbers and sizes."""
    out = bytearray(data)
    for i in range(min(16, len(out))):
        if rng.random() < 0.4:
            out[i] = int(rng.integers(256))
    return bytes(out)


MUTATIONS: dict[str, Callable[[bytes, np.random.Generator], bytes]] = {
    "truncate": _truncate,
    "flip bytes": _flip,
    "insert bytes": _insert,
    "zero a run": _zero_run,
    "garble header": _header,
}


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _make_idx(folder: Path) -> Path:
    path = folder / "images-idx3-ubyte"
    path.write_bytes(_idx_bytes(np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)))
    return path


def _make_idx_gz(folder: Path) -> Path:
    path = folder / "labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(np.arange(10, dtype=np.uint8) % 3)))
    return path


def _read_idx(path: Path) -> object:
    return read_idx(path)


def _make_mnist_csv(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.integers(0, 256, (6, 784)), (np.arange(6) % 10)[:, None]], axis=1)
    text = "\n".join(",".join(str(v) for v in row) for row in rows) + "\n"
    path = folder / "mnist_5k.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    return path


def _read_mnist_csv(path: Path) -> object:
    return _read_mnist5k_csv(str(path), path.stat().st_mtime_ns + id(path))


def _make_cifar_split(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    record = {
        b"filenames": [b"a.png", b"b.png", b"c.png"],
        b"batch_label": b"training batch",
        b"fine_labels": [1, 5, 99],
        b"coarse_labels": [0, 1, 19],
        b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8),
    }
    path = folder / "train"
    path.write_bytes(pickle.dumps(record, protocol=2))
    return path


def _read_cifar_split(path: Path) -> object:
    return _load_split(path, b"fine_labels", 100)


def _make_omniart_csv(folder: Path) -> Path:
    path = folder / "omniart.csv"
    path.write_text(
        "image_path,style,year,title\n"
        'a/1.jpg,baroque,1650,"A title, with a comma"\n'
        "b/2.jpg,cubism,1912.5,Still life\n"
        "c/3.jpg,baroque,1701,\n"
    )
    return path


def _read_omniart_csv(path: Path) -> object:
    return read_omniart_csv(path)


def _make_png(folder: Path) -> Path:
    from PIL import Image  # optional (the data extra)

    path = folder / "image.png"
    Image.fromarray(np.arange(12 * 9 * 3, dtype=np.uint8).reshape(12, 9, 3)).save(path)
    return path


def _make_jpeg(folder: Path) -> Path:
    from PIL import Image  # optional (the data extra)

    path = folder / "image.jpg"
    Image.fromarray(np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)).save(path)
    return path


def _read_image(path: Path) -> object:
    return load_image(path, 8)


def _make_prototypes_npy(folder: Path) -> Path:
    path = folder / "p.npy"
    protos.save(path, protos.generate(6, 4, method="orthoplex"), method="orthoplex")
    return path


def _make_prototypes_json(folder: Path) -> Path:
    return _make_prototypes_npy(folder).with_suffix(".json")


def _read_prototypes(path: Path) -> object:
    return protos.load(path.with_suffix(".npy"))


#: Reader name -> (write a valid file into a folder and return its path, read a path).
TARGETS: dict[str, tuple[Callable[[Path], Path], Callable[[Path], object]]] = {
    "IDX (raw)": (_make_idx, _read_idx),
    "IDX (gzip)": (_make_idx_gz, _read_idx),
    "MNIST-5k CSV (gzip)": (_make_mnist_csv, _read_mnist_csv),
    "CIFAR-100 pickle": (_make_cifar_split, _read_cifar_split),
    "OmniArt CSV": (_make_omniart_csv, _read_omniart_csv),
    "PNG image": (_make_png, _read_image),
    "JPEG image": (_make_jpeg, _read_image),
    "prototype .npy": (_make_prototypes_npy, _read_prototypes),
    "prototype .json sidecar": (_make_prototypes_json, _read_prototypes),
}


@dataclass
class FuzzResult:
    """Outcome counts of one reader's mutants.

    Attributes:
        reader: the reader's name (a key of the targets).
        tried: mutants fed to it.
        loaded: mutants it loaded without an error.
        clean_errors: mutants it rejected with one of :data:`CLEAN_ERRORS`.
        unexpected: any other exception, as ``"mutation: Type: message"`` (a bug).
    """

    reader: str
    tried: int = 0
    loaded: int = 0
    clean_errors: int = 0
    unexpected: list[str] = field(default_factory=list)  # "mutation: Type: message"


def fuzz(per_mutation: int = 20, seed: int = 0, targets: dict | None = None) -> list[FuzzResult]:
    """Feed every reader ``per_mutation`` mutants of each kind in :data:`MUTATIONS`."""
    results = []
    rng = np.random.default_rng(seed)
    for name, (make, read) in (targets or TARGETS).items():
        result = FuzzResult(name)
        with tempfile.TemporaryDirectory(prefix="hpn-fuzz-") as tmp:
            path = make(Path(tmp))
            original = path.read_bytes()
            read(path)  # the valid file must load
            for mutation, mutate in MUTATIONS.items():
                for _ in range(per_mutation):
                    path.write_bytes(mutate(original, rng))
                    result.tried += 1
                    try:
                        read(path)
                        result.loaded += 1
                    except CLEAN_ERRORS:
                        result.clean_errors += 1
                    except Exception as err:
                        first = str(err).splitlines()[0][:120] if str(err) else ""
                        result.unexpected.append(f"{mutation}: {type(err).__name__}: {first}")
        results.append(result)
    return results


def print_table(results: list[FuzzResult], out: TextIO | None = None) -> None:
    """Print the results as a Markdown table, then up to five unexpected errors per reader.

    Args:
        results: what :func:`fuzz` returned.
        out: a text stream; None: ``sys.stdout``.

    Example:
        >>> print_table([FuzzResult("prototypes", tried=3, loaded=1, clean_errors=2)])
        | reader | mutants | loaded | clean one-line error | other exception |
        |---|---|---|---|---|
        | prototypes | 3 | 1 | 2 | 0 |
    """
    print("| reader | mutants | loaded | clean one-line error | other exception |", file=out)
    print("|---|---|---|---|---|", file=out)
    for r in results:
        print(
            f"| {r.reader} | {r.tried} | {r.loaded} | {r.clean_errors} | {len(r.unexpected)} |",
            file=out,
        )
    for r in results:
        for line in r.unexpected[:5]:
            print(f"- {r.reader}: {line}", file=out)
