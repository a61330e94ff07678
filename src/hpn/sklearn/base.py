"""What :class:`~hpn.sklearn.HPNClassifier` and :class:`~hpn.sklearn.HPNRegressor` share.

* :class:`_Network`: hidden layers (Linear -> activation) and a prototype head.
* :class:`_BaseHPN`: the parameter checks (at fit time, as scikit-learn expects), the
  network's construction, the Adam minibatch epochs of :func:`hpn.training.loop.train_epoch`
  with early stopping (:class:`hpn.training.loop.Watch`), and predictions in float64.
* The helpers for ``n_jobs`` (torch threads) and ``sample_weight``.

Shapes: N rows, F input features, d output dimensions.
"""

from __future__ import annotations

import contextlib
import copy
import numbers
import os
import warnings
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, Self, TypeVar, cast

import numpy as np
import torch
from torch import nn

try:
    from sklearn.base import BaseEstimator
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "hpn.sklearn needs scikit-learn >= 1.6 (pip install 'scikit-learn>=1.6')"
    ) from err

from hpn.data.base import training_batches
from hpn.functional import Reduction
from hpn.heads import PrototypeClassifier, PrototypeRegressor
from hpn.training.loop import Batch, NonFiniteLoss, Watch, train_epoch

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

#: Rows per forward pass at prediction time.
_PREDICT_CHUNK = 4096


#: The head of an estimator's network: a classifier's or a regressor's.
Head = TypeVar("Head", PrototypeClassifier, PrototypeRegressor)


class _Network(nn.Module, Generic[Head]):
    """Hidden layers (Linear -> activation) and a prototype head with its own Linear to R^d."""

    body: nn.Module
    head: Head

    def __init__(self, body: nn.Module, head: Head):
        super().__init__()
        self.body = body
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, F) rows -> the head's scores: (N, K) cosines, or (N,) cosines to the pole."""
        return self.head(self.body(x))

    def squared_weights(self) -> torch.Tensor:
        """Sum of squared Linear weights (no biases), the L2 term of ``alpha``."""
        squares = (m.weight.pow(2).sum() for m in self.modules() if isinstance(m, nn.Linear))
        return sum(squares, torch.zeros(()))


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _n_threads(n_jobs: Any, owner: str) -> int:
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
def _torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads and restore the previous (process-wide) setting."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _sample_weights(owner: str, sample_weight: Any, n: int) -> np.ndarray | None:
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


#: Training or validation rows: (n, F) inputs, (n,) targets, None or (n,) sample weights.
_Rows = tuple[np.ndarray, torch.Tensor, np.ndarray | None]


class _BaseHPN(BaseEstimator, Generic[Head], metaclass=ABCMeta):
    """Shared parameter checks, network construction and the Adam minibatch loop."""

    model_: _Network[Head]

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

    def _check_dims(self, dims: Any) -> int:
        if not _is_int(dims) or dims < 2:
            raise ValueError(
                f"{type(self).__name__}: prototype_dims must be an int >= 2 (in 1 dimension "
                f"a cosine is ±1 and the loss has no gradient), got {dims!r}"
            )
        return int(dims)

    # ---- training ----

    def _build(
        self, n_features: int, sizes: tuple[int, ...], make_head: Callable[[int], Head]
    ) -> _Network[Head]:
        layers: list[nn.Module] = []
        width = n_features
        for h in sizes:
            layers += [nn.Linear(width, h), ACTIVATIONS[self.activation]()]
            width = h
        return _Network(nn.Sequential(*layers), make_head(width))

    def _train(
        self,
        X: np.ndarray,
        target: torch.Tensor,
        make_head: Callable[[int], Head],
        seed: int,
        stratify: np.ndarray | None,
        weight: np.ndarray | None = None,
    ) -> Self:
        """Fit ``model_`` on (X, target); sets loss_curve_, n_iter_ and validation attributes.

        ``weight``: None, or (n_samples,) positive sample weights (from ``sample_weight`` and
        ``class_weight``), rescaled here to mean 1 over the training rows so that each batch's
        loss is the mean of weight * loss and equal weights train exactly as no weights.
        """
        sizes = self._check_params()
        with _torch_threads(_n_threads(self.n_jobs, type(self).__name__)):
            return self._train_loop(X, target, make_head, seed, stratify, sizes, weight)

    def _train_loop(
        self,
        X: np.ndarray,
        target: torch.Tensor,
        make_head: Callable[[int], Head],
        seed: int,
        stratify: np.ndarray | None,
        sizes: tuple[int, ...],
        weight: np.ndarray | None = None,
    ) -> Self:
        """:meth:`_train` with the torch threads set."""
        (X_train, target_train, weight_train), validation = self._holdout(
            X, target, weight, seed, stratify
        )
        w_train = None
        if weight_train is not None:
            w_train = torch.as_tensor(weight_train / weight_train.mean(), dtype=torch.float32)
        # Initialise from the seed without touching the caller's global torch RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self._build(X.shape[1], sizes, make_head)
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=float(self.learning_rate_init))
        xs = torch.tensor(X_train, dtype=torch.float32)  # a copy: X may be read-only
        batch = min(int(self.batch_size), len(xs))

        self.loss_curve_: list[float] = []
        scores: list[float] = []
        self.validation_scores_: list[float] | None = scores if self.early_stopping else None
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
            if validation is not None:  # early stopping
                score = self._validation_score(model, *validation)
                scores.append(score)
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

    def _epoch(
        self,
        model: _Network[Head],
        batches: Iterable[Batch[torch.Tensor]],
        optimizer: torch.optim.Optimizer,
        epoch: int,
    ) -> float:
        """One epoch of :func:`hpn.training.loop.train_epoch`; returns the mean training
        loss (with the L2 term)."""
        alpha = float(self.alpha)

        def batch_loss(x: torch.Tensor, target: torch.Tensor, reduction: Reduction) -> torch.Tensor:
            return model.head.loss(model.body(x), target, reduction=reduction)

        def penalty(
            n: int,
        ) -> torch.Tensor:  # as MLPClassifier: 0.5 * alpha * ||W||^2 divided by the batch size
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

    def _holdout(
        self,
        X: np.ndarray,
        target: torch.Tensor,
        weight: np.ndarray | None,
        seed: int,
        stratify: np.ndarray | None,
    ) -> tuple[_Rows, _Rows | None]:
        """``((X, target, weight) to train on, (X, target, weight) to validate on)``: all
        rows and no validation (None) without early stopping (weights may be None)."""
        if not self.early_stopping:
            return (X, target, weight), None
        idx_train, idx_val = self._split(len(X), seed, stratify)
        w_train = w_val = None
        if weight is not None:
            w_train, w_val = weight[idx_train], weight[idx_val]
        return (X[idx_train], target[idx_train], w_train), (X[idx_val], target[idx_val], w_val)

    def _validation_score(
        self,
        model: _Network[Head],
        X_val: np.ndarray,
        target_val: torch.Tensor,
        w_val: np.ndarray | None,
    ) -> float:
        """``score`` on the held-out rows (-inf where undefined); leaves the model training."""
        self.model_ = model
        score = float(self.score(X_val, self._decode(target_val), sample_weight=w_val))
        model.train()
        return -np.inf if np.isnan(score) else score  # NaN: R^2 of a single held-out row

    def _split(
        self, n: int, seed: int, stratify: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
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

    def _checked_rows(self, X: Any) -> np.ndarray:
        """X as a float array after checking the estimator is fitted and X has its
        features (``NotFittedError``, ``ValueError``)."""
        check_is_fitted(self)
        return validate_data(self, X, dtype=(np.float64, np.float32), reset=False)

    @torch.no_grad()
    def _forward(
        self, X: np.ndarray, fn: Callable[[_Network[Head], torch.Tensor], torch.Tensor]
    ) -> np.ndarray:
        """``fn(model, x_chunk)`` over chunks of rows, in float64 for row-order-free results."""
        model = copy.deepcopy(self.model_).double()
        out = []
        with _torch_threads(_n_threads(self.n_jobs, type(self).__name__)):
            for start in range(0, len(X), _PREDICT_CHUNK):
                x = torch.tensor(X[start : start + _PREDICT_CHUNK], dtype=torch.float64)
                out.append(fn(model, x).numpy())
        return np.concatenate(out) if out else np.empty((0,))

    def _before_training(
        self, model: _Network[Head], x: torch.Tensor, target: torch.Tensor
    ) -> None:
        """Hook run once on the untrained model (dynamic assignment makes its first match)."""

    def _after_epoch(self, model: _Network[Head]) -> None:
        """Hook run after every training epoch (dynamic assignment re-matches here)."""

    # ---- saving without pickle (hpn.sklearn.persist) ----

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted estimator to ``path`` without pickle: the network's state dict
        and a JSON record of the parameters and fitted attributes, in one file that
        :meth:`load` reads with ``weights_only=True`` (:mod:`hpn.sklearn.persist`). Safe to
        load from others, unlike a pickle. Returns the path.

        Raises:
            sklearn.exceptions.NotFittedError: not fitted.
            ValueError: a parameter with no plain form (say a ``RandomState``), named.
        """
        from hpn.sklearn.persist import save_estimator

        return save_estimator(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Self:
        """The estimator :meth:`save` wrote to ``path``; nothing in the file runs.

        Raises:
            ValueError: not a saved estimator of this class, or a file that holds more
                than tensors and plain types (one line).
        """
        from hpn.sklearn.persist import load_estimator

        return cast(Self, load_estimator(cls, path))

    def _saved_attributes(self) -> tuple[str, ...]:
        """The fitted attributes besides ``model_`` that :meth:`save` records."""
        return (
            "n_features_in_", "feature_names_in_", "prototypes_", "n_iter_", "loss_curve_",
            "best_loss_", "validation_scores_", "best_validation_score_",
        )  # fmt: skip

    def _rebuild(self, state: dict[str, torch.Tensor]) -> _Network[Head]:
        """An untrained network of the fitted shape, for ``state`` (a saved state dict)."""
        return self._build(int(self.n_features_in_), self._check_params(), self._saved_head(state))

    @abstractmethod
    def _saved_head(self, state: dict[str, torch.Tensor]) -> Callable[[int], Head]:
        """``make_head(width)`` of the fitted head, for a saved state dict."""

    @abstractmethod
    def _decode(self, target: torch.Tensor) -> np.ndarray:
        """Targets as the user gave them (class labels / values) from the training tensor."""
