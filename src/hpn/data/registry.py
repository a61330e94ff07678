"""Data sources by name: ``load_data("mnist5k", seed=1)`` and friends.

=========================  ===============================================================
name                       source (options are the function's keyword arguments)
=========================  ===============================================================
``mnist5k``                :func:`hpn.data.mnist.load_mnist5k`
``fashion_mnist``          :func:`hpn.data.mnist.load_fashion_mnist`
``idx``                    :func:`hpn.data.mnist.load_idx_folder` (needs ``folder``)
``rotated_mnist5k``        :func:`load_rotated_mnist5k` (MNIST-5k + rotation angles)
``rotated_fashion_mnist``  :func:`load_rotated_fashion_mnist`
``clusters``               :func:`hpn.data.synthetic.gaussian_clusters`
``cifar100``               :func:`hpn.data.cifar.load_cifar100` (needs ``folder``)
``image_folders``          :func:`hpn.data.folders.load_image_folders` (needs ``root``)
``omniart``                :func:`hpn.data.omniart.load_omniart`
``glyphs``                 :func:`hpn.data.glyphs.load_glyphs` (printed characters, fonts)
=========================  ===============================================================

Every source takes ``seed``. Names are matched case-insensitively, with ``-`` read as ``_``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from hpn.data.base import DataSplits
from hpn.data.cifar import load_cifar100
from hpn.data.folders import load_image_folders
from hpn.data.glyphs import load_glyphs
from hpn.data.mnist import FASHION_MNIST_FOLDER, load_fashion_mnist, load_idx_folder, load_mnist5k
from hpn.data.omniart import load_omniart
from hpn.data.rotated import rotated_digits
from hpn.data.synthetic import gaussian_clusters


def load_rotated_mnist5k(
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    test_seed: int = 0,
    max_angle: float = 360.0,
) -> DataSplits:
    """MNIST-5k with each digit rotated by a seeded random angle (multi-task).

    ``seed`` sets both the train / val split and the angles; see
    :func:`hpn.data.mnist.load_mnist5k` and :func:`hpn.data.rotated.rotated_digits`.
    """
    base = load_mnist5k(val_fraction, test_fraction, seed=seed, test_seed=test_seed)
    return rotated_digits(base, seed=seed, max_angle=max_angle)


def load_rotated_fashion_mnist(
    folder: str | os.PathLike = FASHION_MNIST_FOLDER,
    val_fraction: float = 0.1,
    seed: int = 0,
    max_angle: float = 360.0,
) -> DataSplits:
    """Fashion-MNIST with each image rotated by a seeded random angle (multi-task).

    ``seed`` sets both the train / val split and the angles; see
    :func:`hpn.data.mnist.load_fashion_mnist` and :func:`hpn.data.rotated.rotated_digits`.
    """
    base = load_fashion_mnist(folder, val_fraction, seed=seed)
    return rotated_digits(base, seed=seed, max_angle=max_angle)


SOURCES: dict[str, Callable[..., DataSplits]] = {
    "mnist5k": load_mnist5k,
    "fashion_mnist": load_fashion_mnist,
    "idx": load_idx_folder,
    "rotated_mnist5k": load_rotated_mnist5k,
    "rotated_fashion_mnist": load_rotated_fashion_mnist,
    "clusters": gaussian_clusters,
    "cifar100": load_cifar100,
    "image_folders": load_image_folders,
    "omniart": load_omniart,
    "glyphs": load_glyphs,
}


def available() -> list[str]:
    """The source names :func:`load_data` knows, sorted."""
    return sorted(SOURCES)


def load_data(name: str, **options: Any) -> DataSplits:
    """Load a data source by name.

    Args:
        name: one of :func:`available` (``-`` may stand for ``_``, any case).
        **options: keyword arguments of the source's function, e.g. ``seed``,
            ``val_fraction``, ``folder``.

    Returns:
        The source's :class:`DataSplits`.

    Raises:
        ValueError: an unknown name (the message lists the known ones), or an option the
            source does not take or a required one left out (the message lists its options).
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in SOURCES:
        raise ValueError(f"unknown data source {name!r}; known: {', '.join(available())}")
    function = SOURCES[key]
    signature = inspect.signature(function)
    try:
        signature.bind(**options)
    except TypeError as err:
        accepted = ", ".join(
            p.name + ("" if p.default is inspect.Parameter.empty else f"={p.default!r}")
            for p in signature.parameters.values()
        )
        raise ValueError(
            f"data source {key!r}: {err}; its options (data.options.NAME in a run config): "
            f"{accepted}"
        ) from None
    return function(**options)
