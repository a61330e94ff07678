"""How many CPU threads torch uses: one policy for the CLI, the benchmarks and the tests.

torch starts one intra-op thread per core. On a machine that other jobs share, those threads
wait on each other at every barrier while the other jobs hold the cores, and a run becomes
several times slower than with fewer threads. So hpn chooses:

1. ``--threads N`` on the command line (or ``threads=N`` here), else
2. the environment variable ``HPN_THREADS`` (a number or ``auto``), else
3. ``OMP_NUM_THREADS`` when it is set (torch already follows it; hpn leaves it alone), else
4. ``auto``: the CPUs this process may use minus the cores that are busy, from the
   one-minute load average, and at least 1.

Example:
    >>> choose_threads(3)
    3
    >>> 1 <= choose_threads("auto", cpus=2, load=1.6) == 1
    True
    >>> choose_threads("auto", cpus=8, load=0.2)
    8
"""

from __future__ import annotations

import os

import torch

#: The environment variable that sets the thread count (a number or ``auto``).
THREADS_ENV = "HPN_THREADS"


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def busy_cores() -> float:
    """The one-minute load average: about how many cores other work keeps busy."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this OS
        return 0.0


def _parse(value: int | str, source: str) -> int | str:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number < 1 or str(number) != str(value).strip():
        raise ValueError(f"{source} must be a positive int or 'auto', got {value!r}")
    return number


def choose_threads(
    threads: int | str | None = None, *, cpus: int | None = None, load: float | None = None
) -> int:
    """The number of torch threads to use (see the module notes for the order of sources).

    Args:
        threads: a positive int, ``"auto"``, or None (then ``HPN_THREADS``, then
            ``OMP_NUM_THREADS``, then ``"auto"``).
        cpus: CPUs to count with (default :func:`available_cpus`).
        load: busy cores to count with (default :func:`busy_cores`).

    Raises:
        ValueError: ``threads`` or ``HPN_THREADS`` is neither a positive int nor ``auto``.
    """
    if threads is None and os.environ.get(THREADS_ENV):
        threads = _parse(os.environ[THREADS_ENV], THREADS_ENV)
    elif threads is not None:
        threads = _parse(threads, "threads")
    if threads is None and os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    if isinstance(threads, int):
        return threads
    cpus = available_cpus() if cpus is None else cpus
    load = busy_cores() if load is None else load
    return max(1, min(cpus, cpus - round(load)))


def use_threads(threads: int | str | None = None) -> int:
    """Set torch's intra-op threads by :func:`choose_threads`; returns the number set."""
    n = choose_threads(threads)
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    return n
