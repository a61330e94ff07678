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
"""

from __future__ import annotations

import contextlib
import copy
import numbers
import os
import warnings
from abc import ABCMeta, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils import check_random_state
    from sklearn.utils.class_weight import compute_sample_weight
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "hpn.sklearn needs scikit-learn >= 1.6 (pip install 'scikit-learn>=1.6')"
    ) from err

from hpn.data.base import in_batches, training_batches
from hpn.functional import regression_bounds
from hpn.heads import PrototypeClassifier, PrototypeRegressor
from hpn.prototypes.data_prior import COSINE_SCALE
from hpn.prototypes.resolver import ResolvedPrototypes, resolve, uses_class_names
from hpn.training.loop import Batch, NonFiniteLoss, Watch, initial_assignment, reassign, train_epoch

__all__ = ["ACTIVATIONS", "HPNClassifier", "HPNRegressor", "default_prototype_dims"]

#: Hidden-layer activations: sklearn's MLP names plus those of :mod:`hpn.models.mlp`.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "identity": nn.Identity,
    "logistic": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
}

#: Cap of the default output dimension for many classes (the paper's d for CIFAR-100).
MAX_DEFAULT_DIMS = 100

#: Classes above which :class:`HPNClassifier`'s defaults switch from the paper's recipe to the
#: data prior with the cosine softmax (:func:`default_recipe`).
MANY_CLASSES = MAX_DEFAULT_DIMS + 1

#: Rows per forward pass at prediction time.
_PREDICT_CHUNK = 4096


def default_prototype_dims(n_classes: int) -> int:
    """The output dimension used when ``prototype_dims=None``: ``min(max(2, K - 1), 100)``.

    K - 1 is the smallest d in which K prototypes can be placed exactly as far apart as
    possible (the regular simplex, every pair at cosine -1/(K-1)), so up to 101 classes the
    default is optimal and closed-form. d = 1 is never used: in one dimension a cosine is ±1
    and the loss has no gradient, hence at least 2. Above 101 classes d stays at 100, the
    paper's setting for CIFAR-100, and ``prototypes="auto"`` picks the best available
    placement (orthoplex up to 200 classes, then optimised prototypes or codes).

    >>> default_prototype_dims(2), default_prototype_dims(10), default_prototype_dims(1000)
    (2, 9, 100)
    """
    return min(max(2, n_classes - 1), MAX_DEFAULT_DIMS)


def default_recipe(n_classes: int, dims: int) -> tuple[str, str]:
    """``(prototypes, loss)`` that :class:`HPNClassifier` uses when both are left at None.

    Up to :data:`MANY_CLASSES` classes, or whenever d >= K - 1 (room for the regular
    simplex), the paper's recipe: ``("auto", "paper")``. Above it, with fewer output
    dimensions than K - 1, the prototypes cannot all be far apart, and fixing them in
    arbitrary directions makes the network memorise a map to unrelated points; the data
    prior (the PCA of the training class means, :mod:`hpn.prototypes.data_prior`) with the
    cosine softmax is then the default: ``("data", "softmax")``. Measured in the README
    ("scikit-learn defaults"): on 1,000 Gaussian clusters the paper's recipe reached a
    macro F1 of 0.13 and the data prior 0.95; on the small sets (K <= 10) the paper's
    recipe was as good or better.

    >>> default_recipe(10, 9), default_recipe(1000, 100), default_recipe(150, 149)
    (('auto', 'paper'), ('data', 'softmax'), ('auto', 'paper'))
    """
    if n_classes > MANY_CLASSES and dims < n_classes - 1:
        return "data", "softmax"
    return "auto", "paper"


class _Network(nn.Module):
    """Hidden layers (Linear -> activation) and a prototype head with its own Linear to R^d."""

    def __init__(self, body: nn.Module, head: nn.Module):
        super().__init__()
        self.body = body
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def loss(
        self, x: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean loss over the batch; with (N,) ``weight``, the mean of weight * loss."""
        if weight is None:
            return self.head.loss(self.body(x), target, reduction="mean")
        return (self.head.loss(self.body(x), target, reduction="none") * weight).mean()

    def squared_weights(self) -> torch.Tensor:
        """Sum of squared Linear weights (no biases), the L2 term of ``alpha``."""
        return sum(m.weight.pow(2).sum() for m in self.modules() if isinstance(m, nn.Linear))


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _n_threads(n_jobs, owner: str) -> int:
    """torch intra-op threads for ``n_jobs``: None -> 1, k > 0 -> k, -1 -> all CPUs, -2 -> all
    but one, ... (joblib's convention)."""
    if n_jobs is None:
        return 1
    if not _is_int(n_jobs) or n_jobs == 0:
        raise ValueError(f"{owner}: n_jobs must be None or a non-zero int, got {n_jobs!r}")
    if n_jobs > 0:
        return int(n_jobs)
    return max(1, (os.cpu_count() or 1) + 1 + int(n_jobs))


@contextlib.contextmanager
def _torch_threads(n: int):
    """Run with ``n`` torch threads and restore the previous (process-wide) setting."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _sample_weights(owner: str, sample_weight, n: int) -> np.ndarray | None:
    """(n,) float64 non-negative sample weights with a positive sum, or None."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.shape != (n,):
        raise ValueError(f"{owner}: sample_weight has shape {w.shape}, expected ({n},)")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(
            f"{owner}: sample_weight must be finite, >= 0 and not all zero "
            f"(min {w.min():.4g}, sum {w.sum():.4g})"
        )
    return w


class _BaseHPN(BaseEstimator, metaclass=ABCMeta):
    """Shared parameter checks, network construction and the Adam minibatch loop."""

    # ---- parameter checks (at fit time, as sklearn expects) ----

    def _check_params(self) -> tuple[int, ...]:
        name = type(self).__name__
        sizes = self.hidden_layer_sizes
        if _is_int(sizes):
            sizes = (sizes,)
        if not isinstance(sizes, Sequence | np.ndarray) or isinstance(sizes, str):
            raise ValueError(
                f"{name}: hidden_layer_sizes must be a sequence of positive ints, got {sizes!r}"
            )
        if any(not _is_int(s) or s < 1 for s in sizes):
            raise ValueError(
                f"{name}: hidden_layer_sizes must contain positive ints, got {self.hidden_layer_sizes!r}"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"{name}: activation must be one of {list(ACTIVATIONS)}, got {self.activation!r}"
            )
        for param in ("max_iter", "batch_size", "n_iter_no_change"):
            value = getattr(self, param)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name}: {param} must be an int >= 1, got {value!r}")
        lr = self.learning_rate_init
        if not _is_real(lr) or not np.isfinite(lr) or lr <= 0:
            raise ValueError(f"{name}: learning_rate_init must be a number > 0, got {lr!r}")
        for param in ("alpha", "tol"):
            value = getattr(self, param)
            if not _is_real(value) or not np.isfinite(value) or value < 0:
                raise ValueError(f"{name}: {param} must be a number >= 0, got {value!r}")
        vf = self.validation_fraction
        if not _is_real(vf) or not 0.0 < vf < 1.0:
            raise ValueError(f"{name}: validation_fraction must be in (0, 1), got {vf!r}")
        if getattr(self, "output_norm", "none") not in ("none", "batchnorm"):
            raise ValueError(
                f"{name}: output_norm must be 'none' or 'batchnorm', got {self.output_norm!r}"
            )
        if not isinstance(self.early_stopping, bool | np.bool_):
            raise ValueError(f"{name}: early_stopping must be a bool, got {self.early_stopping!r}")
        _n_threads(self.n_jobs, name)
        return tuple(int(s) for s in sizes)

    def _check_dims(self, dims) -> int:
        if not _is_int(dims) or dims < 2:
            raise ValueError(
                f"{type(self).__name__}: prototype_dims must be an int >= 2 (in 1 dimension "
                f"a cosine is ±1 and the loss has no gradient), got {dims!r}"
            )
        return int(dims)

    # ---- training ----

    def _build(self, n_features: int, sizes: tuple[int, ...], make_head) -> _Network:
        layers: list[nn.Module] = []
        width = n_features
        for h in sizes:
            layers += [nn.Linear(width, h), ACTIVATIONS[self.activation]()]
            width = h
        return _Network(nn.Sequential(*layers), make_head(width))

    def _train(
        self, X: np.ndarray, target: torch.Tensor, make_head, seed: int, stratify, weight=None
    ):
        """Fit ``model_`` on (X, target); sets loss_curve_, n_iter_ and validation attributes.

        ``weight``: None, or (n_samples,) positive sample weights (from ``sample_weight`` and
        ``class_weight``), rescaled here to mean 1 over the training rows so that each batch's
        loss is the mean of weight * loss and equal weights train exactly as no weights.
        """
        sizes = self._check_params()
        with _torch_threads(_n_threads(self.n_jobs, type(self).__name__)):
            return self._train_loop(X, target, make_head, seed, stratify, sizes, weight)

    def _train_loop(self, X, target, make_head, seed, stratify, sizes, weight=None):
        (X_train, target_train, w_train), validation = self._holdout(
            X, target, weight, seed, stratify
        )
        if w_train is not None:
            w_train = torch.as_tensor(w_train / w_train.mean(), dtype=torch.float32)
        # Initialise from the seed without touching the caller's global torch RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self._build(X.shape[1], sizes, make_head)
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=float(self.learning_rate_init))
        xs = torch.tensor(X_train, dtype=torch.float32)  # a copy: X may be read-only
        batch = min(int(self.batch_size), len(xs))

        self.loss_curve_: list[float] = []
        self.validation_scores_: list[float] | None = [] if self.early_stopping else None
        self.best_validation_score_: float | None = None
        self.best_loss_: float | None = None
        # As MLPClassifier: progress is a validation score up by tol, or a loss down by tol.
        watch = Watch(
            higher=bool(self.early_stopping),
            patience=int(self.n_iter_no_change),
            tol=float(self.tol),
            inclusive=True,
        )
        best_state = None
        model.train()
        self._before_training(model, xs, target_train)
        for epoch in range(int(self.max_iter)):
            order = torch.randperm(len(xs), generator=generator)
            batches = (
                Batch(xs[rows], target_train[rows], None if w_train is None else w_train[rows])
                for rows in training_batches(order, batch)  # no batch of one (batch norm)
            )
            epoch_loss = self._epoch(model, batches, optimizer, epoch)
            self.loss_curve_.append(epoch_loss)
            if self.early_stopping:
                score = self._validation_score(model, *validation)
                self.validation_scores_.append(score)
                if watch.update(score, epoch + 1):
                    best_state = copy.deepcopy(model.state_dict())
            else:
                watch.update(epoch_loss, epoch + 1)
            self._after_epoch(model)
            if self.verbose:
                extra = f", validation score = {score:.6f}" if self.early_stopping else ""
                print(f"Iteration {epoch + 1}, loss = {epoch_loss:.8f}{extra}")
            if watch.exhausted:
                if self.verbose:
                    print(f"No improvement for {self.n_iter_no_change} consecutive epochs.")
                break
        self.n_iter_ = epoch + 1
        if self.early_stopping:
            self.best_validation_score_ = float(watch.best)
            if best_state is not None:
                model.load_state_dict(best_state)
        else:
            self.best_loss_ = float(watch.best)
        if not watch.exhausted:
            warnings.warn(
                f"{type(self).__name__}: max_iter={self.max_iter} reached and the optimisation "
                "hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=4,  # the caller of fit
            )
        model.eval()
        self.model_ = model
        return self

    def _epoch(self, model: _Network, batches, optimizer, epoch: int) -> float:
        """One epoch of :func:`hpn.training.loop.train_epoch`; returns the mean training
        loss (with the L2 term)."""
        alpha = float(self.alpha)

        def batch_loss(x, target, reduction):
            return model.head.loss(model.body(x), target, reduction=reduction)

        def penalty(n):  # as MLPClassifier: 0.5 * alpha * ||W||^2 divided by the batch size
            return 0.5 * alpha * model.squared_weights() / n

        try:
            loss = train_epoch(
                batches, batch_loss, optimizer, penalty=penalty if alpha else None, epoch=epoch
            )
        except NonFiniteLoss as err:
            raise ValueError(
                f"{type(self).__name__}: the training loss became {err.value} at epoch "
                f"{epoch + 1}; lower learning_rate_init or scale the inputs"
            ) from None
        return loss.mean

    def _holdout(self, X, target, weight, seed: int, stratify) -> tuple[tuple, tuple]:
        """``((X, target, weight) to train on, (X, target, weight) to validate on)``: all
        rows and no validation without early stopping (weights may be None)."""
        if not self.early_stopping:
            return (X, target, weight), (None, None, None)
        idx_train, idx_val = self._split(len(X), seed, stratify)
        w_train = w_val = None
        if weight is not None:
            w_train, w_val = weight[idx_train], weight[idx_val]
        return (X[idx_train], target[idx_train], w_train), (X[idx_val], target[idx_val], w_val)

    def _validation_score(self, model: _Network, X_val, target_val, w_val) -> float:
        """``score`` on the held-out rows (-inf where undefined); leaves the model training."""
        self.model_ = model
        score = float(self.score(X_val, self._decode(target_val), sample_weight=w_val))
        model.train()
        return -np.inf if np.isnan(score) else score  # NaN: R^2 of a single held-out row

    def _split(self, n: int, seed: int, stratify) -> tuple[np.ndarray, np.ndarray]:
        """Train / validation indices; stratified where every class can be in both parts.

        The held-out part has ``ceil(validation_fraction * n)`` rows, but at least 2 (1 when
        n = 2).
        """
        if n < 2:
            raise ValueError(
                f"{type(self).__name__}: early_stopping needs at least 2 samples; got {n} sample"
            )
        # At least 2 held-out rows where possible: R^2 is undefined on one.
        n_val = max(int(np.ceil(self.validation_fraction * n)), min(2, n - 1))
        split = {"test_size": n_val, "random_state": seed}
        if stratify is not None:
            try:
                return train_test_split(np.arange(n), stratify=stratify, **split)
            except ValueError:  # a class with 1 member, or fewer held-out rows than classes
                pass
        return train_test_split(np.arange(n), **split)

    def _seed(self) -> int:
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    @torch.no_grad()
    def _forward(self, X: np.ndarray, fn) -> np.ndarray:
        """``fn(model, x_chunk)`` over chunks of rows, in float64 for row-order-free results."""
        model = copy.deepcopy(self.model_).double()
        out = []
        with _torch_threads(_n_threads(self.n_jobs, type(self).__name__)):
            for start in range(0, len(X), _PREDICT_CHUNK):
                x = torch.tensor(X[start : start + _PREDICT_CHUNK], dtype=torch.float64)
                out.append(fn(model, x).numpy())
        return np.concatenate(out) if out else np.empty((0,))

    def _before_training(self, model: _Network, x: torch.Tensor, target: torch.Tensor) -> None:
        """Hook run once on the untrained model (dynamic assignment makes its first match)."""

    def _after_epoch(self, model: _Network) -> None:
        """Hook run after every training epoch (dynamic assignment re-matches here)."""

    @abstractmethod
    def _decode(self, target: torch.Tensor) -> np.ndarray:
        """Targets as the user gave them (class labels / values) from the training tensor."""


class HPNClassifier(ClassifierMixin, _BaseHPN):
    """Multi-layer perceptron classifier with fixed hyperspherical class prototypes.

    The network maps x to z in R^d; class c owns a fixed unit prototype p_c. Training
    minimises the mean of (1 - cos(z, p_y))^2 plus an L2 penalty with Adam on shuffled
    minibatches; prediction is the class of the prototype nearest to z by cosine. With more
    than 101 classes the defaults switch to prototypes laid out like the training class means
    and a cosine softmax loss (:func:`default_recipe`), which does not collapse there.

    Inputs are not scaled: standardise them first (``StandardScaler``), as for
    ``MLPClassifier``. There is no ``predict_proba`` (cosines are not probabilities; see the
    module docstring).

    Parameters:
        prototype_dims: d, the output dimension (>= 2). None: :func:`default_prototype_dims`,
            ``min(max(2, K - 1), 100)`` for K classes, or the width of a given array or file
            (K for ``"onehot"``).
        prototypes: a spec of :func:`hpn.prototypes.resolve`: a method of
            :func:`hpn.prototypes.generate` (``"auto"``, ``"simplex"``, ``"optimized"``,
            ``"random"``, ``"semantic"`` with the class labels as names, ...), ``"data"`` (the
            PCA of the training class means, unspread: :mod:`hpn.prototypes.data_prior`),
            ``"onehot"``, ``"embedding:glove"`` / ``"embedding:minilm"`` (the class labels'
            embeddings), a ``.npy`` file, or an array of shape (K, d); row i of a file or
            array belongs to ``classes_[i]`` (the sorted labels); rows are normalised. None:
            chosen by :func:`default_recipe`: ``"auto"`` up to 101 classes or when
            d >= K - 1, ``"data"`` above.
        hidden_layer_sizes: widths of the hidden layers (Linear -> activation each); ``()``
            puts the prototype head's linear layer directly on the inputs.
        activation: one of :data:`ACTIVATIONS`.
        max_iter: maximum number of epochs.
        batch_size: minibatch size (``min(batch_size, n_samples)`` is used).
        learning_rate_init: Adam's learning rate.
        alpha: L2 penalty on the weights (not the biases), 0.5 * alpha * ||W||^2 / batch size
            per step, as in ``MLPClassifier``.
        early_stopping: hold out ``validation_fraction`` of the data (stratified), stop when
            the validation accuracy has not improved by ``tol`` for ``n_iter_no_change``
            epochs and keep the best epoch's weights. Otherwise stop when the training loss
            has not improved by ``tol`` for ``n_iter_no_change`` epochs.
        validation_fraction: in (0, 1); the share of rows held out for early stopping (at
            least 2 rows).
        n_iter_no_change: epochs without improvement before stopping.
        tol: the improvement that counts.
        random_state: int, ``RandomState`` or None; seeds the prototypes, the initial
            weights, the shuffling and the validation split. The global torch RNG is left as
            it was.
        verbose: print the loss of every epoch.
        n_jobs: torch threads while fitting and predicting: None -> 1, k, or -1 for all CPUs
            (see the module docstring). Results can differ in the last bits between thread
            counts.
        loss: ``"paper"``, (1 - cos(z, p_y))^2, or ``"softmax"``, cross-entropy over scaled
            cosines to all prototypes (:func:`hpn.functional.prototype_softmax_loss`).
            None: ``"softmax"`` with the ``"data"`` prototypes, else ``"paper"``
            (:func:`default_recipe`).
        assignment: ``"static"`` (class i keeps prototype i) or ``"dynamic"`` (match
            classes to prototypes once from the untrained network's class means, unless the
            prototypes already belong to their classes (``"data"``, ``"semantic"``,
            embeddings, a file or an array), then re-match after every epoch from the running
            class means, :mod:`hpn.assignment`).
        scale: the softmax loss's scale s; None: 20 with the ``"data"`` prototypes
            (:data:`hpn.prototypes.data_prior.COSINE_SCALE`), else
            :func:`hpn.functional.default_scale` of K.
        output_norm: ``"none"`` (the paper) or ``"batchnorm"``, a batch norm on the output z
            before it is normalised (``hpn train``'s ``head.output_norm``).
        class_weight: None, ``"balanced"`` (weights n_samples / (n_classes * count(c))) or a
            dict {label: weight}; multiplies ``fit``'s ``sample_weight``, as in scikit-learn.

    ``partial_fit`` and ``warm_start`` are not offered: the prototypes, and above 101 classes
    the data prior, are fixed from the whole training set before the first step, so a model
    cannot take new classes or data incrementally without changing its output space; refit.

    Attributes:
        classes_: the sorted class labels.
        prototypes_: (K, d) float32 array of unit rows; row i is the prototype of
            ``classes_[i]`` (after any dynamic re-assignment).
        recipe_: what the fit used: ``{"prototypes": method or "given", "loss": ...,
            "scale": the softmax scale or None}``.
        n_features_in_, feature_names_in_: as in every sklearn estimator.
        model_: the fitted ``torch.nn.Module`` (CPU, eval mode); ``model_(x)`` gives the
            (N, K) cosines.
        n_iter_: epochs run.
        loss_curve_: mean training loss (with the L2 term) of every epoch.
        best_loss_: smallest training loss (None with early stopping).
        validation_scores_, best_validation_score_: validation accuracies (None without
            early stopping).

    Example:
        >>> from sklearn.datasets import load_iris
        >>> X, y = load_iris(return_X_y=True)
        >>> clf = HPNClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
        >>> clf = clf.fit((X - X.mean(0)) / X.std(0), y)
        >>> clf.prototypes_.shape, clf.decision_function(X[:4]).shape
        ((3, 2), (4, 3))
    """

    def __init__(
        self,
        prototype_dims=None,
        prototypes=None,
        hidden_layer_sizes=(100,),
        activation="relu",
        max_iter=200,
        batch_size=64,
        learning_rate_init=1e-3,
        alpha=1e-4,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        random_state=None,
        verbose=False,
        n_jobs=None,
        loss=None,
        assignment="static",
        scale=None,
        output_norm="none",
        class_weight=None,
    ):
        self.prototype_dims = prototype_dims
        self.output_norm = output_norm
        self.class_weight = class_weight
        self.prototypes = prototypes
        self.loss = loss
        self.scale = scale
        self.assignment = assignment
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.alpha = alpha
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    def _recipe(self, n_classes: int) -> tuple:
        """The prototype spec, loss and softmax scale this fit uses: the given ones, or
        :func:`default_recipe` for those left at None (scale None stays None, the loss's
        default, except 20 for the data prior's softmax)."""
        name = type(self).__name__
        spec, loss = self.prototypes, self.loss
        if spec is None:
            dims = self.prototype_dims
            dims = default_prototype_dims(n_classes) if dims is None else self._check_dims(dims)
            spec = default_recipe(n_classes, dims)[0]
        data = isinstance(spec, str) and spec == "data"
        if loss is None:
            loss = "softmax" if data else "paper"
        if loss not in ("paper", "softmax"):
            raise ValueError(f"{name}: loss must be 'paper' or 'softmax', got {loss!r}")
        scale = self.scale
        if scale is None and loss == "softmax" and data:
            scale = COSINE_SCALE
        return spec, loss, scale

    def _resolve_prototypes(self, spec, n_classes: int, seed: int, X, labels) -> ResolvedPrototypes:
        """The prototypes ``spec`` names (:func:`hpn.prototypes.resolve`), row i for
        ``classes_[i]``; the data prior is the unspread PCA of the class means of X."""
        name = type(self).__name__
        text_labels = all(isinstance(c, str) for c in self.classes_)
        if uses_class_names(spec) and not text_labels:
            raise ValueError(
                f"{name}: prototypes={spec!r} embeds the class labels as names, but y "
                f"holds {type(self.classes_[0]).__name__} labels ({self.classes_[0]!r}, "
                "...); fit with the class names as labels"
            )
        dims = None if self.prototype_dims is None else self._check_dims(self.prototype_dims)

        def train():  # read only by the data prior
            yield torch.as_tensor(np.asarray(X, dtype=np.float64)), torch.as_tensor(labels)

        try:
            resolved = resolve(
                spec, n_classes, dims, default_dims=default_prototype_dims(n_classes),
                train=train(), names=[str(c) for c in self.classes_] if text_labels else None,
                seed=seed, spread_steps=0,
            )  # fmt: skip
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from err
        self._check_dims(resolved.prototypes.shape[1])
        return resolved

    def fit(self, X, y, sample_weight=None):
        """Fit the network to (X, y); y may hold labels of any type. Returns self.

        Args:
            X: (n_samples, n_features) inputs.
            y: (n_samples,) class labels.
            sample_weight: None or (n_samples,) non-negative weights: each example's loss is
                multiplied by its weight (times ``class_weight``'s weight of its class).
        """
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        self._check_params()
        encoder = LabelEncoder()
        labels = encoder.fit_transform(y)
        self.classes_ = encoder.classes_
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in y; got 1 class "
                f"({self.classes_[0]!r})"
            )
        seed = self._seed()
        spec, loss, scale = self._recipe(n_classes)
        resolved = self._resolve_prototypes(spec, n_classes, seed, X, labels)
        prototypes = resolved.prototypes
        self.prototypes_ = prototypes.numpy()
        self._informed = resolved.class_informed
        if self.assignment not in ("static", "dynamic"):
            raise ValueError(
                f"{type(self).__name__}: assignment must be 'static' or 'dynamic', "
                f"got {self.assignment!r}"
            )

        def make_head(width):
            head = PrototypeClassifier(
                prototypes,
                in_features=width,
                loss=loss,
                scale=scale,
                output_norm=self.output_norm,
            )
            if self.assignment == "dynamic":
                head.enable_dynamic_assignment()
            return head

        target = torch.as_tensor(labels, dtype=torch.long)
        weight = self._weights(sample_weight, y)
        self._train(X, target, make_head, seed, stratify=labels, weight=weight)
        # with dynamic assignment row i is the prototype classes_[i] ended up owning
        self.prototypes_ = self.model_.head.prototypes.detach().cpu().numpy().copy()
        head = self.model_.head
        self.recipe_ = {
            "prototypes": os.fspath(spec) if isinstance(spec, str | os.PathLike) else "given",
            "loss": head.loss_kind,
            "scale": head.scale if head.loss_kind == "softmax" else None,
        }
        return self

    def _weights(self, sample_weight, y) -> np.ndarray | None:
        name = type(self).__name__
        weight = _sample_weights(name, sample_weight, len(y))
        if self.class_weight is None:
            return weight
        if not (self.class_weight == "balanced" or isinstance(self.class_weight, dict)):
            raise ValueError(
                f"{name}: class_weight must be None, 'balanced' or a dict, got {self.class_weight!r}"
            )
        try:
            per_class = compute_sample_weight(self.class_weight, y)
        except ValueError as err:
            raise ValueError(f"{name}: class_weight {self.class_weight!r}: {err}") from None
        return per_class if weight is None else per_class * weight

    @torch.no_grad()
    def _before_training(self, model, x, target) -> None:
        if self.assignment != "dynamic" or self._informed:
            # prototypes placed from the data or the class names already belong to their
            # classes: a first match would scramble them (`hpn train`'s assignment_init)
            return
        # As `hpn train`'s head.assignment_init: eval mode, so neither dropout nor the batch
        # norm statistics see this pass.
        model.eval()
        chunks = in_batches(range(len(x)), _PREDICT_CHUNK)
        initial_assignment(
            model.head, ((model.head.proj(model.body(x[r])), target[r]) for r in chunks)
        )
        model.train()

    def _after_epoch(self, model) -> None:
        if self.assignment == "dynamic":
            reassign(model.head)

    def _decode(self, target: torch.Tensor) -> np.ndarray:
        return self.classes_[target.numpy()]

    def _cosines(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        scores = self._forward(X, lambda model, x: model(x))
        return scores.reshape(len(X), len(self.classes_))

    def decision_function(self, X) -> np.ndarray:
        """Cosines between the network outputs and the prototypes.

        Returns:
            (n_samples, K) array, column i the cosine to the prototype of ``classes_[i]``.
            For two classes, sklearn's binary convention: (n_samples,) array
            cos(z, p_1) - cos(z, p_0), positive where ``classes_[1]`` is predicted.
        """
        scores = self._cosines(X)
        if len(self.classes_) == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    def predict(self, X) -> np.ndarray:
        """The class of the nearest prototype by cosine (the first on ties)."""
        scores = self._cosines(X)  # first: raises NotFittedError before classes_ is read
        return self.classes_[np.argmax(scores, axis=1)]


class HPNRegressor(RegressorMixin, _BaseHPN):
    """Multi-layer perceptron regressor on the hypersphere between two opposite prototypes.

    The smallest and largest training targets v_l, v_u sit at the poles -p_u and p_u of the
    output sphere S^(d-1) (p_u = e_1). A target y is rescaled to
    r = 2 (y - v_l) / (v_u - v_l) - 1 and the network learns cos(z, p_u) = r with the loss
    (r - cos(z, p_u))^2; the prediction is v_l + (cos(z, p_u) + 1) / 2 (v_u - v_l), so it
    always lies in [v_l, v_u] (no extrapolation past the training range). Only 1-d targets.

    Inputs are not scaled: standardise them first (``StandardScaler``). Targets need no
    scaling (the bounds do it).

    Parameters:
        prototype_dims: d >= 2, the output dimension (the paper uses 2 and 3; 2 is the
            default).
        hidden_layer_sizes: as in :class:`HPNClassifier`.
        activation: as in :class:`HPNClassifier`.
        max_iter: as in :class:`HPNClassifier`.
        batch_size: as in :class:`HPNClassifier`.
        learning_rate_init: as in :class:`HPNClassifier`.
        alpha: as in :class:`HPNClassifier`.
        early_stopping: as in :class:`HPNClassifier`, but watching the validation R^2 (the
            split is not stratified).
        validation_fraction: as in :class:`HPNClassifier`.
        n_iter_no_change: as in :class:`HPNClassifier`.
        tol: as in :class:`HPNClassifier`.
        random_state: as in :class:`HPNClassifier`.
        verbose: as in :class:`HPNClassifier`.
        n_jobs: as in :class:`HPNClassifier`.

    There is no ``output_norm``: on a linear target it cut the training R^2 from 0.97 to 0.65.

    Attributes:
        bounds_: (v_l, v_u), the smallest and largest training target.
        prototypes_: (2, d) float32 array, rows -p_u (for v_l) and p_u (for v_u).
        n_features_in_: as in every sklearn estimator.
        feature_names_in_: as in every sklearn estimator.
        model_: the fitted ``torch.nn.Module`` (CPU, eval mode); ``model_(x)`` gives the (N,)
            cosines to p_u.
        n_iter_: as in :class:`HPNClassifier`.
        loss_curve_: as in :class:`HPNClassifier`.
        best_loss_: as in :class:`HPNClassifier`.
        validation_scores_: validation R^2 of every epoch (None without early stopping).
        best_validation_score_: the best of them (None without early stopping).

    Example:
        >>> X = np.linspace(-1, 1, 40)[:, None]
        >>> y = 3 * X[:, 0] + 5
        >>> reg = HPNRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
        >>> pred = reg.fit(X, y).predict(X)
        >>> reg.bounds_, reg.prototypes_.shape, bool(2 <= pred.min() and pred.max() <= 8)
        ((2.0, 8.0), (2, 2), True)
        >>> bool(reg.score(X, y) > 0.9)
        True
    """

    def __init__(
        self,
        prototype_dims=2,
        hidden_layer_sizes=(100,),
        activation="relu",
        max_iter=200,
        batch_size=64,
        learning_rate_init=1e-3,
        alpha=1e-4,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        random_state=None,
        verbose=False,
        n_jobs=None,
    ):
        self.prototype_dims = prototype_dims
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.alpha = alpha
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    def fit(self, X, y, sample_weight=None):
        """Fit the network to (X, y) with 1-d numeric y. Returns self.

        ``sample_weight``: None or (n_samples,) non-negative weights of each example's loss.
        ``partial_fit`` and ``warm_start`` are not offered: the poles' bounds come from the
        whole training target before the first step.
        """
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), y_numeric=True)
        self._check_params()
        dims = self._check_dims(self.prototype_dims)
        y = np.array(y, dtype=np.float64)  # a copy: y may be read-only
        if len(y) < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 samples; got 1 sample")
        try:
            low, high = regression_bounds(torch.from_numpy(y))
        except ValueError as err:
            raise ValueError(
                f"{type(self).__name__} needs at least two distinct target values to place "
                f"the poles: {err}"
            ) from err
        self.bounds_ = (low, high)
        pole = torch.eye(dims)[0]
        self.prototypes_ = torch.stack([-pole, pole]).numpy()

        def make_head(width):
            return PrototypeRegressor(dims, low, high, in_features=width, pole=pole)

        target = torch.from_numpy(y)
        weight = _sample_weights(type(self).__name__, sample_weight, len(y))
        return self._train(X, target, make_head, self._seed(), stratify=None, weight=weight)

    def _decode(self, target: torch.Tensor) -> np.ndarray:
        return target.numpy()

    def predict(self, X) -> np.ndarray:
        """(n_samples,) predictions, each in [v_l, v_u]."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        out = self._forward(X, lambda model, x: model.head.predict(model.body(x)))
        return out.reshape(len(X))
