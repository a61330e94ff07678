"""HPNClassifier and HPNRegressor: scikit-learn estimators with a prototype head.

Both follow the estimator API (fit / predict / score, pipelines, grid search, pickling) and
take MLPClassifier's / MLPRegressor's training parameters. The data come with scikit-learn:
the 8x8 digits (1,797 images, 10 classes) and Friedman's regression benchmark #1 (a
nonlinear function of 5 of 10 uniform inputs, plus noise), generated on the spot.

    python examples/sklearn_estimators.py           # about half a minute
    python examples/sklearn_estimators.py --quick   # a few seconds
"""

from __future__ import annotations

import argparse
import warnings

from sklearn.datasets import load_digits, make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hpn.sklearn import HPNClassifier, HPNRegressor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run of a few seconds")
    args = parser.parse_args()
    max_iter = 30 if args.quick else 200
    # runs that end at max_iter before the loss settles warn; quiet here, not in real use
    warnings.simplefilter("ignore", ConvergenceWarning)

    # Classification. Inputs are not scaled by the estimator: put a StandardScaler first.
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    hpn = make_pipeline(
        StandardScaler(),
        HPNClassifier(hidden_layer_sizes=(128,), max_iter=max_iter, random_state=0),
    )
    hpn.fit(X_train, y_train)
    clf = hpn[-1]
    print(f"HPNClassifier  test accuracy {hpn.score(X_test, y_test):.4f}  "
          f"(d = {clf.prototypes_.shape[1]}, recipe {clf.recipe_}, {clf.n_iter_} epochs)")  # fmt: skip

    # decision_function gives the cosines to the K prototypes; predict takes the largest.
    cosines = hpn.decision_function(X_test[:3])
    print(f"cosines of 3 test digits to the {cosines.shape[1]} prototypes:")
    for row, label in zip(cosines, y_test[:3], strict=True):
        print(f"  true {label}: predicted {row.argmax()}, cos {row.max():+.3f}")

    mlp = make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(128,), max_iter=max_iter, random_state=0),
    )
    print(f"MLPClassifier  test accuracy {mlp.fit(X_train, y_train).score(X_test, y_test):.4f}")

    # Everything sklearn does with an estimator works, e.g. cross-validation.
    scores = cross_val_score(hpn, X, y, cv=3)
    print(f"HPNClassifier  3-fold accuracy {scores.mean():.4f} ± {scores.std():.4f}")

    # Regression between two poles: the smallest and largest training target sit at -p_u
    # and p_u, and the prediction is read from cos(z, p_u), so it stays within that range.
    X, y = make_friedman1(n_samples=2000, noise=1.0, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    options = {"hidden_layer_sizes": (64, 64), "early_stopping": True, "random_state": 0}
    reg = make_pipeline(StandardScaler(), HPNRegressor(max_iter=max_iter, **options))
    reg.fit(X_train, y_train)
    low, high = reg[-1].bounds_
    pred = reg.predict(X_test)
    print(f"HPNRegressor   test R^2 {reg.score(X_test, y_test):.4f}  "
          f"(bounds [{low:.2f}, {high:.2f}], predictions in [{pred.min():.2f}, {pred.max():.2f}])")  # fmt: skip
    base = make_pipeline(StandardScaler(), MLPRegressor(max_iter=max_iter, **options))
    print(f"MLPRegressor   test R^2 {base.fit(X_train, y_train).score(X_test, y_test):.4f}")


if __name__ == "__main__":
    main()
