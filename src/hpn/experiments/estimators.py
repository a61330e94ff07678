"""``hpn bench sklearn``: ``HPNClassifier``'s two recipes against ``MLPClassifier`` and
``LogisticRegression``, and ``HPNRegressor()`` against ``RidgeCV`` and ``MLPRegressor`` on the
data scikit-learn ships."""

from __future__ import annotations

import warnings
from typing import Any, TextIO

import numpy as np
import torch

from hpn.data.base import SplitDataset, TensorDataset
from hpn.data.synthetic import gaussian_clusters
from hpn.experiments.table import print_columns, print_header, print_row
from hpn.losses import PrototypeLoss

#: (name, X, y, X_test, y_test); X_test None: scored by 5-fold cross-validation.
_Set = tuple[str, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]


def _tensors(split: SplitDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) of an in-memory split."""
    if not isinstance(split, TensorDataset):
        raise TypeError(f"expected an in-memory TensorDataset, got {type(split).__name__}")
    return split.inputs, split.targets["label"]


def _sklearn_sets(quick: bool = False) -> list[_Set]:
    """(name, X, y, X_test, y_test) of the scikit-learn benchmark; X_test None: 5-fold CV."""
    from sklearn import datasets  # optional (the sklearn extra)

    sets: list[_Set] = []
    for name in ("iris", "wine", "breast_cancer", "digits"):
        X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
        sets.append((name, X, y, None, None))
    for k, n in ((30, 20),) if quick else ((200, 50), (1000, 40)):
        s = gaussian_clusters(k, n, seed=0)
        (x_train, y_train), (x_val, y_val) = _tensors(s.train), _tensors(s.val)
        x_test, y_test = _tensors(s.test)
        x, y = torch.cat([x_train, x_val]).numpy(), torch.cat([y_train, y_val]).numpy()
        sets.append((f"clusters K = {k:,} ({n} per class)", x, y, x_test.numpy(), y_test.numpy()))
    return sets


def sklearn_benchmark(
    max_iter: int = 100, quick: bool = False, out: TextIO | None = None
) -> list[dict[str, Any]]:
    """``HPNClassifier``'s two recipes and ``MLPClassifier`` on bundled and generated data.

    Macro F1 of ``StandardScaler`` + estimator (``random_state=0``, ``max_iter``): mean ± sd
    over 5 stratified folds on scikit-learn's small sets; on Gaussian clusters (300-d,
    :func:`hpn.data.synthetic.gaussian_clusters`, seed 0), one fit on train + validation
    scored on the test split. "paper": ``prototypes="auto", loss="squared_cosine"``; "data prior":
    ``prototypes="data"`` (cosine softmax at scale 20). The last column names the one
    ``HPNClassifier()`` picks by default (:func:`hpn.sklearn.default_recipe`).
    """
    # scikit-learn is optional (the sklearn extra), and hpn.sklearn needs it
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import cross_val_score
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from hpn.sklearn import HPNClassifier, default_prototype_dims, default_recipe

    models = {
        "paper": lambda: HPNClassifier(prototypes="auto", loss=PrototypeLoss.kind),
        "data prior": lambda: HPNClassifier(prototypes="data"),
        "MLPClassifier": lambda: MLPClassifier(),
        "LogisticRegression": lambda: LogisticRegression(),
    }
    print_header(
        f"hpn bench sklearn: macro F1, StandardScaler + estimator, max_iter {max_iter}, "
        "random_state 0",
        out,
    )
    print_columns(["data", "K", *models, "default picks"], out)
    rows = []
    for name, X, y, X_test, y_test in _sklearn_sets(quick):
        k = len(np.unique(y))
        cells: list[str] = []
        row: dict[str, Any] = {"data": name, "K": k}
        for label, make in models.items():
            est = make_pipeline(StandardScaler(), make().set_params(max_iter=max_iter))
            est.set_params(**{f"{est.steps[-1][0]}__random_state": 0})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                if X_test is None:
                    scores = cross_val_score(est, X, y, cv=5, scoring="f1_macro")
                    row[label] = scores.tolist()
                    cells.append(f"{scores.mean():.3f} ± {scores.std():.3f}")
                else:
                    score = f1_score(y_test, est.fit(X, y).predict(X_test), average="macro")
                    row[label] = [float(score)]
                    cells.append(f"{score:.3f}")
        method, _ = default_recipe(k, default_prototype_dims(k))
        row["default"] = "data prior" if method == "data" else "paper"
        rows.append(row)
        print_row([name, f"{k:,}", *cells, row["default"]], out)
    regression_benchmark(max_iter, out)
    return rows


def regression_benchmark(max_iter: int = 200, out: TextIO | None = None) -> dict[str, list]:
    """``HPNRegressor()`` with its defaults against ``RidgeCV`` and ``MLPRegressor`` on
    scikit-learn's ``load_diabetes``: R^2 of ``StandardScaler`` + estimator over 5 shuffled
    folds (``KFold(5, shuffle=True, random_state=0)``), mean ± sd. Returns the fold scores."""
    from sklearn.datasets import load_diabetes
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from hpn.sklearn import HPNRegressor

    models = {
        "HPNRegressor()": lambda: HPNRegressor(max_iter=max_iter, random_state=0),
        "RidgeCV": lambda: RidgeCV(alphas=np.logspace(-3, 3, 13)),
        "MLPRegressor": lambda: MLPRegressor(max_iter=max_iter, random_state=0),
    }
    print_header(
        f"hpn bench sklearn, regression: R^2, StandardScaler + estimator, 5 shuffled folds "
        f"(random_state 0), max_iter {max_iter}",
        out,
    )
    print_columns(["data", *models], out)
    X, y = load_diabetes(return_X_y=True)
    folds = KFold(5, shuffle=True, random_state=0)
    scores = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for label, make in models.items():
            est = make_pipeline(StandardScaler(), make())
            scores[label] = cross_val_score(est, X, y, cv=folds, scoring="r2").tolist()
    cells = [f"{np.mean(v):.3f} ± {np.std(v):.3f}" for v in scores.values()]
    print_row(["diabetes", *cells], out)
    return scores
