"""scikit-learn estimators: a multi-layer perceptron with a hyperspherical prototype head.

:class:`HPNClassifier` and :class:`HPNRegressor` are drop-in relatives of sklearn's
``MLPClassifier`` / ``MLPRegressor``: the same training parameters (hidden layers, Adam,
minibatches, L2 ``alpha``, early stopping), but the network's output z in R^d is compared with
fixed unit prototypes placed before training (Mettes et al., 2019):

* classification: loss (1 - cos(z, p_y))^2, prediction = the class of the nearest prototype by
  cosine; ``decision_function`` gives the cosines.
* regression: two opposite prototypes ±p_u; the target is rescaled to
  r = 2 (y - v_l) / (v_u - v_l) - 1 in [-1, 1] with v_l, v_u the smallest and largest training
  target, loss (r - cos(z, p_u))^2, prediction y = v_l + (cos + 1) / 2 (v_u - v_l). Predictions
  therefore never leave [v_l, v_u].

Inputs are not scaled (as in ``MLPClassifier``): put a ``StandardScaler`` in front, e.g.
``make_pipeline(StandardScaler(), HPNClassifier())``. Training runs in float32 on the CPU;
the fitted network (``model_``) is a CPU ``torch.nn.Module`` and pickles with the estimator.
Predictions run in float64 on a copy of it, so a row's output does not depend on the other
rows passed with it.

Saving: ``est.save(path)`` and ``HPNClassifier.load(path)`` / ``HPNRegressor.load(path)``
write and read one file of the network's weights and a JSON record of the parameters and
fitted attributes, without pickle (:mod:`hpn.sklearn.persist`): loading one from someone else
runs nothing in it. Pickling (``pickle``, ``joblib``) works as for any estimator, but a pickle
can run any code when it is loaded: only load pickles you made yourself.

Threads: beyond sklearn's MLP parameters, both estimators take ``n_jobs`` (joblib's
convention; None means 1), the number of torch threads used while fitting and predicting.
One thread is the default because the minibatch steps of a small MLP are dominated by thread
synchronisation: an Adam step of a 784-100-100 network at batch 64 took 1.9 ms with one thread
and 9.3 ms with two on a 2-core machine. torch's thread count is process-wide; it is set for
the call and restored afterwards (so do not fit from several Python threads at once).

There is no ``predict_proba``: the scores are cosines in [-1, 1], and nothing in the loss makes
any transform of them (a softmax with some temperature, say) a calibrated probability. Wrap the
classifier in ``sklearn.calibration.CalibratedClassifierCV``, which calibrates
``decision_function``, when probabilities are needed.

Needs scikit-learn >= 1.6 (``validate_data`` and ``__sklearn_tags__``).

The estimators live in :mod:`hpn.sklearn.classifier` and :mod:`hpn.sklearn.regressor`; the
parameter checks and the training they share (through :func:`hpn.training.loop.train_epoch`),
in :mod:`hpn.sklearn.base`.
"""

from hpn.sklearn.base import ACTIVATIONS
from hpn.sklearn.classifier import (
    MANY_CLASSES,
    MAX_DEFAULT_DIMS,
    NEIGHBOUR_CLASSES,
    HPNClassifier,
    default_loss,
    default_prototype_dims,
    default_recipe,
)
from hpn.sklearn.regressor import HPNRegressor

__all__ = [
    "ACTIVATIONS",
    "MANY_CLASSES",
    "MAX_DEFAULT_DIMS",
    "NEIGHBOUR_CLASSES",
    "HPNClassifier",
    "HPNRegressor",
    "default_loss",
    "default_prototype_dims",
    "default_recipe",
]
