"""The classifier: :class:`HPNClassifier`, with the defaults it picks for K classes
(:func:`default_prototype_dims`, :func:`default_recipe`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, cast

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from hpn.assignment import initial_assignment, reassign
from hpn.data.base import in_batches
from hpn.heads import PrototypeClassifier
from hpn.losses import CosineSoftmaxLoss, LossKind, NeighbourSoftmaxLoss, PrototypeLoss, loss_entry
from hpn.prototypes.data_prior import COSINE_SCALE
from hpn.prototypes.resolver import ResolvedPrototypes, Spec, resolve, uses_class_names
from hpn.sklearn.base import _PREDICT_CHUNK, _BaseHPN, _Network, _sample_weights

#: Cap of the default output dimension for many classes (the paper's d for CIFAR-100).
MAX_DEFAULT_DIMS = 100

#: Classes above which :class:`HPNClassifier`'s defaults switch from the paper's recipe to the
#: data prior with the cosine softmax (:func:`default_recipe`).
MANY_CLASSES = MAX_DEFAULT_DIMS + 1

#: Classes above which the data prior's default loss is the neighbour softmax instead of the
#: cosine softmax over all K prototypes (:func:`default_loss`).
NEIGHBOUR_CLASSES = 2_000


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


def default_loss(n_classes: int, spec: object) -> str:
    """The loss :class:`HPNClassifier` uses when ``loss=None``, given the prototype spec.

    The paper's loss, except with the data prior (``spec == "data"``), whose classes already
    sit where they look alike: then a softmax over cosines, which also pushes from the wrong
    classes. Up to :data:`NEIGHBOUR_CLASSES` classes it is the cosine softmax over all K
    prototypes; above, the neighbour softmax over the target's 32 nearest prototypes and 256
    random ones, whose step does not grow with K. The two were level on printed characters
    at K = 1,000, and the cosine softmax's step grows with K past the neighbour softmax's
    (measurements: docs/results/printed-characters.md).

    >>> default_loss(10, "auto"), default_loss(1000, "data"), default_loss(5000, "data")
    ('squared_cosine', 'cosine_softmax', 'neighbour_softmax')
    """
    if not (isinstance(spec, str) and spec == "data"):
        return PrototypeLoss.kind
    return NeighbourSoftmaxLoss.kind if n_classes > NEIGHBOUR_CLASSES else CosineSoftmaxLoss.kind


def default_recipe(n_classes: int, dims: int) -> tuple[str, str]:
    """``(prototypes, loss)`` that :class:`HPNClassifier` uses when both are left at None.

    Up to :data:`MANY_CLASSES` classes, or whenever d >= K - 1 (room for the regular
    simplex), the paper's recipe: ``("auto", "squared_cosine")``. Above it, with fewer output
    dimensions than K - 1, the prototypes cannot all be far apart, and fixing them in
    arbitrary directions makes the network memorise a map to unrelated points; the data
    prior (the PCA of the training class means, :mod:`hpn.prototypes.data_prior`) with the
    cosine softmax is then the default: ``("data", "cosine_softmax")``, and above
    :data:`NEIGHBOUR_CLASSES` the data prior with the neighbour softmax
    (:func:`default_loss`): ``("data", "neighbour_softmax")``. The comparison on Gaussian
    clusters and on the small sets is in the README ("scikit-learn defaults").

    >>> default_recipe(10, 9), default_recipe(150, 149)
    (('auto', 'squared_cosine'), ('auto', 'squared_cosine'))
    >>> default_recipe(1000, 100), default_recipe(5000, 100)
    (('data', 'cosine_softmax'), ('data', 'neighbour_softmax'))
    """
    if n_classes > MANY_CLASSES and dims < n_classes - 1:
        return "data", default_loss(n_classes, "data")
    return "auto", PrototypeLoss.kind


class HPNClassifier(ClassifierMixin, _BaseHPN[PrototypeClassifier]):
    """Multi-layer perceptron classifier with fixed hyperspherical class prototypes.

    The network maps x to z in R^d; class c owns a fixed unit prototype p_c. Training
    minimises the mean of (1 - cos(z, p_y))^2 plus an L2 penalty with Adam on shuffled
    minibatches; prediction is the class of the prototype nearest to z by cosine. With more
    than 101 classes the defaults switch to prototypes laid out like the training class means
    and a cosine softmax loss (:func:`default_recipe`), which does not collapse there; above
    2,000 classes the softmax runs over each target's nearest prototypes and random ones, so
    the step does not grow with K.

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
        loss: a loss of :data:`hpn.losses.LOSSES` that suits a prototype head:
            ``"squared_cosine"``, (1 - cos(z, p_y))^2; ``"cosine_softmax"``, cross-entropy
            over scaled cosines to all prototypes
            (:func:`hpn.functional.prototype_softmax_loss`); or ``"neighbour_softmax"``, the
            same over the target's 32 nearest prototypes and 256 random ones
            (:func:`hpn.functional.neighbour_softmax_loss`), whose cost does not grow with K:
            for label spaces where K cosines per example are too many (the old names
            ``"paper"``, ``"softmax"``, ``"neighbours"`` still work, with a warning). None:
            with the ``"data"`` prototypes ``"cosine_softmax"`` up to 2,000 classes and
            ``"neighbour_softmax"`` above, else ``"squared_cosine"`` (:func:`default_loss`).
        assignment: ``"static"`` (class i keeps prototype i) or ``"dynamic"`` (match
            classes to prototypes once from the untrained network's class means, unless the
            prototypes already belong to their classes (``"data"``, ``"semantic"``,
            embeddings, a file or an array), then re-match after every epoch from the running
            class means, :mod:`hpn.assignment`).
        scale: the scale s of the losses that take one; None: 20 with the ``"data"`` prototypes
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

    def _recipe(self, n_classes: int) -> tuple[Spec, LossKind, float | None]:
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
            loss = default_loss(n_classes, spec)
        try:
            entry = loss_entry(loss)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
        if "prototype" not in entry.heads:
            raise ValueError(f"{name}: loss {entry.name!r} does not suit a prototype head")
        takes_scale = "scale" in entry.setting_names()
        if self.scale is not None and not takes_scale:
            raise ValueError(f"{name}: loss {entry.name!r} takes no scale, got {self.scale!r}")
        scale = self.scale
        if scale is None and takes_scale and data:
            scale = COSINE_SCALE
        return spec, entry.name, scale

    def _resolve_prototypes(
        self, spec: Spec, n_classes: int, seed: int, X: np.ndarray, labels: np.ndarray
    ) -> ResolvedPrototypes:
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

        def train() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # read by the data prior
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

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> HPNClassifier:
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
        if self.assignment not in ("static", "dynamic"):  # hpn.assignment's two kinds
            raise ValueError(
                f"{type(self).__name__}: assignment must be 'static' or 'dynamic', "
                f"got {self.assignment!r}"
            )

        def make_head(width: int) -> PrototypeClassifier:
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
            "scale": head.scale if hasattr(head.criterion, "scale") else None,
        }
        return self

    def _weights(self, sample_weight: Any, y: np.ndarray) -> np.ndarray | None:
        """``sample_weight`` times ``class_weight``'s weight of each row's class, or None."""
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
    def _before_training(
        self, model: _Network[PrototypeClassifier], x: torch.Tensor, target: torch.Tensor
    ) -> None:
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

    def _after_epoch(self, model: _Network[PrototypeClassifier]) -> None:
        if self.assignment == "dynamic":
            reassign(model.head)

    def _decode(self, target: torch.Tensor) -> np.ndarray:
        return self.classes_[target.numpy()]

    def _saved_attributes(self) -> tuple[str, ...]:
        return (*super()._saved_attributes(), "classes_", "recipe_", "_informed")

    def _saved_head(self, state: dict[str, torch.Tensor]) -> Callable[[int], PrototypeClassifier]:
        def make_head(width: int) -> PrototypeClassifier:
            head = PrototypeClassifier(
                state["head.prototypes"],
                in_features=width,
                loss=cast(LossKind, self.recipe_["loss"]),
                scale=cast(float | None, self.recipe_["scale"]),
                output_norm=self.output_norm,
            )
            if self.assignment == "dynamic":
                head.enable_dynamic_assignment()
            return head

        return make_head

    def _cosines(self, X: Any) -> np.ndarray:
        """(n_samples, K) cosines to the prototypes, column i to that of ``classes_[i]``."""
        X = self._checked_rows(X)
        scores = self._forward(X, lambda model, x: model(x))
        return scores.reshape(len(X), len(self.classes_))

    def decision_function(self, X: Any) -> np.ndarray:
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

    def predict(self, X: Any) -> np.ndarray:
        """The class of the nearest prototype by cosine (the first on ties)."""
        scores = self._cosines(X)  # first: raises NotFittedError before classes_ is read
        return self.classes_[np.argmax(scores, axis=1)]
