"""Saving a fitted estimator without pickle: :meth:`~hpn.sklearn.HPNClassifier.save` and
:meth:`~hpn.sklearn.HPNClassifier.load` (the same on :class:`~hpn.sklearn.HPNRegressor`).

The file is one :func:`torch.save` of a dict of plain types: ``format`` and ``estimator``
(the class name), ``record`` (JSON text: the constructor parameters and the fitted
attributes that are not the network, such as ``classes_``, ``n_features_in_``,
``loss_curve_``) and ``state`` (the network's state dict: tensors only). It is written
atomically and read with ``weights_only=True``
(:func:`hpn.training.checkpoint.read_checkpoint`), so loading a file from someone else runs
none of its contents; a pickle (``pickle``, ``joblib``) of an estimator can run anything and
is only for files you trust.

Arrays in the record (``classes_``, ``feature_names_in_``, a ``prototypes`` array) keep their
dtype: ``{"__ndarray__": dtype, "values": [...]}``; tuples are ``{"__tuple__": [...]}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hpn.files import atomic_torch_save
from hpn.training.checkpoint import read_checkpoint

if TYPE_CHECKING:
    from hpn.sklearn.base import _BaseHPN

#: The ``format`` entry of a saved estimator.
FORMAT = "hpn.sklearn/1"


def to_json(value: Any, name: str) -> Any:
    """``value`` as JSON-able data that :func:`from_json` turns back into it.

    Raises:
        ValueError: a value with no plain form (say a ``RandomState``), naming ``name``.

    Example:
        >>> to_json({"sizes": (8, 4), "classes": np.array(["a", "b"])}, "x")
        {'sizes': {'__tuple__': [8, 4]}, 'classes': {'__ndarray__': '<U1', 'values': ['a', 'b']}}
        >>> from_json(to_json((1, np.array([0.5])), "x"))
        (1, array([0.5]))
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.dtype == object and not all(
            isinstance(v, str | int | float | bool) for v in value.flat
        ):
            raise ValueError(f"cannot save {name}: it holds objects other than str or numbers")
        return {"__ndarray__": value.dtype.str, "values": value.tolist()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return {"__tuple__": [to_json(v, name) for v in value]}
    if isinstance(value, list):
        return [to_json(v, name) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: to_json(v, f"{name}[{k!r}]") for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise ValueError(
        f"cannot save {name}={value!r} without pickle; give it as plain numbers, strings "
        "or arrays (say an int random_state), or pickle the estimator instead"
    )


def from_json(value: Any) -> Any:
    """The value :func:`to_json` was given."""
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__ndarray__" in value:
        return np.array(value["values"], dtype=np.dtype(value["__ndarray__"]))
    if "__tuple__" in value:
        return tuple(from_json(v) for v in value["__tuple__"])
    return {k: from_json(v) for k, v in value.items()}


def save_estimator(estimator: _BaseHPN, path: str | os.PathLike) -> Path:
    """Write a fitted estimator to ``path`` (see the module notes); returns the path.

    Raises:
        sklearn.exceptions.NotFittedError: the estimator is not fitted.
        ValueError: a parameter or attribute with no plain form (named).
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator)
    name = type(estimator).__name__
    fitted = {
        a: getattr(estimator, a) for a in estimator._saved_attributes() if hasattr(estimator, a)
    }
    record = {
        "params": to_json(estimator.get_params(deep=False), f"{name} parameter"),
        "fitted": to_json(fitted, f"{name} attribute"),
    }
    saved = {
        "format": FORMAT,
        "estimator": name,
        "record": json.dumps(record),
        "state": estimator.model_.state_dict(),
    }
    atomic_torch_save(path, saved)
    return Path(path)


def load_estimator(cls: type[_BaseHPN], path: str | os.PathLike) -> Any:
    """The ``cls`` estimator saved at ``path``, ready to predict (nothing in the file runs).

    Raises:
        ValueError: not a saved estimator, one of another class, or a file that asks for
            more than tensors and plain types (one line).
    """
    saved = read_checkpoint(path, "cpu", ("format", "estimator", "record", "state"))
    if saved["format"] != FORMAT:
        raise ValueError(f"{path}: not a saved hpn estimator (format {saved['format']!r})")
    if saved["estimator"] != cls.__name__:
        raise ValueError(f"{path} holds a {saved['estimator']}, not a {cls.__name__}")
    record = json.loads(saved["record"])
    estimator = cls(**from_json(record["params"]))
    for attribute, value in from_json(record["fitted"]).items():
        setattr(estimator, attribute, value)
    model = estimator._rebuild(saved["state"])
    model.load_state_dict(saved["state"])
    estimator.model_ = model.eval()
    return estimator
