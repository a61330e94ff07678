"""Saving a fitted estimator without pickle: identical predictions after a round trip, and a
crafted file refused without running anything."""

import os
import pickle
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn", minversion="1.6")

from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from hpn.sklearn import HPNClassifier, HPNRegressor


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def _blobs(n_classes=4, seed=0):
    X, y = make_blobs(120, n_features=5, centers=n_classes, random_state=seed)
    return (X - X.mean(0)) / X.std(0), y


def _same_params(a, b) -> None:
    pa, pb = a.get_params(), b.get_params()
    assert pa.keys() == pb.keys()
    for key, value in pa.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, pb[key])
        else:
            assert value == pb[key], key


@pytest.mark.parametrize(
    "options",
    [
        {"assignment": "dynamic", "output_norm": "batchnorm"},
        {"prototypes": "data", "loss": "softmax", "early_stopping": True},
        {"loss": "neighbours", "prototype_dims": 3},
    ],
)
def test_a_classifier_round_trip_predicts_exactly_the_same(tmp_path, options):
    X, y = _blobs()
    labels = np.array(["ant", "bee", "cat", "dog"], dtype=object)[y]
    clf = _fit(
        HPNClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0, **options), X, labels
    )
    path = clf.save(tmp_path / "clf.pt")
    back = HPNClassifier.load(path)
    np.testing.assert_array_equal(back.predict(X), clf.predict(X))
    np.testing.assert_array_equal(back.decision_function(X), clf.decision_function(X))
    np.testing.assert_array_equal(back.classes_, clf.classes_)
    assert back.classes_.dtype == clf.classes_.dtype
    np.testing.assert_array_equal(back.prototypes_, clf.prototypes_)
    assert back.recipe_ == clf.recipe_ and back.loss_curve_ == clf.loss_curve_
    assert back.score(X, labels) == clf.score(X, labels)
    _same_params(back, clf)
    torch.load(path, weights_only=True)  # plain data only


def test_given_prototypes_and_integer_labels_round_trip(tmp_path):
    X, y = _blobs(3)
    prototypes = np.array([[1.0, 0.0], [-0.5, 0.8], [-0.5, -0.8]])
    clf = _fit(HPNClassifier(prototypes=prototypes, hidden_layer_sizes=(8,), max_iter=3), X, y + 10)
    back = HPNClassifier.load(clf.save(tmp_path / "c.pt"))
    assert back.classes_.dtype == clf.classes_.dtype and back.classes_.tolist() == [10, 11, 12]
    np.testing.assert_array_equal(back.predict(X), clf.predict(X))
    _same_params(back, clf)


def test_a_regressor_round_trip_predicts_exactly_the_same(tmp_path):
    pandas = pytest.importorskip("pandas")
    X, _ = _blobs()
    y = 3 * X[:, 0] + X[:, 1] ** 2
    X = pandas.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    reg = _fit(HPNRegressor(prototype_dims=3, hidden_layer_sizes=(8, 4), max_iter=5), X, y)
    back = HPNRegressor.load(reg.save(tmp_path / "reg.pt"))
    np.testing.assert_array_equal(back.predict(X), reg.predict(X))
    assert back.bounds_ == reg.bounds_ and isinstance(back.bounds_, tuple)
    assert back.feature_names_in_.tolist() == ["f0", "f1", "f2", "f3", "f4"]
    _same_params(back, reg)


def test_pickling_keeps_working(tmp_path):
    X, y = _blobs()
    clf = _fit(HPNClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0), X, y)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict(X), clf.predict(X))


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_or_wrong_file_is_refused_in_one_line(tmp_path):
    X, y = _blobs()
    clf = _fit(HPNClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0), X, y)
    path = clf.save(tmp_path / "clf.pt")
    saved = torch.load(path, weights_only=True)
    saved["state"]["body.0.weight"] = Payload(tmp_path / "MARKER")
    torch.save(saved, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="refusing to load .*evil.pt") as err:
        HPNClassifier.load(tmp_path / "evil.pt")
    assert "\n" not in str(err.value) and not (tmp_path / "MARKER").exists()
    with pytest.raises(ValueError, match="holds a HPNClassifier, not a HPNRegressor"):
        HPNRegressor.load(path)
    with pytest.raises(NotFittedError):
        HPNClassifier().save(tmp_path / "unfitted.pt")
    rng = _fit(
        HPNClassifier(hidden_layer_sizes=(4,), max_iter=1, random_state=np.random.RandomState(0)),
        X,
        y,
    )
    with pytest.raises(ValueError, match="cannot save HPNClassifier parameter.*RandomState"):
        rng.save(tmp_path / "rng.pt")
