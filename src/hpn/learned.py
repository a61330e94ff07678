"""Learned-centre heads, the peers of the prototype heads: the class directions are trained.

* :class:`CosineClassifier`: the learned cosine classifier of the NormFace / CosFace family:
  class weights W (K, d), logits s cos(z, w_k), the target's lowered by an optional margin m,
  cross-entropy over all K classes (:class:`hpn.losses.CosineSoftmaxLoss`).
* :class:`SampledSoftmaxClassifier`: the same with the softmax over a sample of the centres
  per batch, the batch's classes and r random others, as Partial FC trains millions of
  identities (:class:`hpn.losses.SampledSoftmaxLoss`): the logits cost O(N (N + r) d)
  whatever K.

Both have the prototype heads' contract (:mod:`hpn.heads`): ``forward`` gives (N, K) cosines,
``predict`` the nearest centre in chunks (:func:`hpn.functional.nearest_prototype`), ``loss``
the loss object's value; ``embed`` gives unit outputs. Without ``dims`` the centres live in the
feature space (K x in_features); with ``dims`` a linear layer maps features to d first (K x d).
The centres are a parameter ``centres`` (K, d) that the optimiser updates; the prototype heads'
are fixed buffers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hpn import functional as F
from hpn.heads import OutputNorm, _classification_criterion, _outputs, _projection
from hpn.losses import CosineSoftmaxLoss, LossKind, PrototypeOutput, SampledSoftmaxLoss


class LearnedCentresClassifier(nn.Module):
    """A classification head whose class centres are learned; see the module docstring.

    Args:
        in_features: the backbone's feature width.
        num_classes: K >= 2.
        dims: d, the width of a ``Linear(in_features, d)`` before the centres; None: no
            linear layer, the centres act on the features (d = in_features).
        loss: a loss object called as ``loss(PrototypeOutput(z, centres), target,
            reduction)`` with the raw (K, d) centres, or the name of one in
            :data:`hpn.losses.LOSSES`; default the class's :attr:`default_loss`.
        output_norm: ``"none"`` or ``"batchnorm"`` on z (needs ``dims``).
        **loss_settings: the named loss's settings (``scale``, ``margin``, ...); None values
            keep its defaults.

    The centres start as N(0, 0.01^2) draws (only their directions matter).
    """

    #: The loss this head trains with when none is named.
    default_loss: str = CosineSoftmaxLoss.kind
    target_keys = ("label",)

    centres: nn.Parameter  # (K, d)
    proj: nn.Module
    criterion: nn.Module

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        dims: int | None = None,
        loss: LossKind | nn.Module | None = None,
        output_norm: OutputNorm = "none",
        **loss_settings: Any,
    ):
        super().__init__()
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if in_features < 1:
            raise ValueError(f"in_features must be >= 1, got {in_features}")
        self.num_classes, self.in_features = int(num_classes), in_features
        self.dims = in_features if dims is None else int(dims)
        self.proj = _projection(None if dims is None else in_features, self.dims, output_norm)
        self.centres = nn.Parameter(torch.randn(self.num_classes, self.dims) * 0.01)
        self.criterion = _classification_criterion(loss or self.default_loss, loss_settings)
        self.margin = float(getattr(self.criterion, "margin", 0.0))
        self.scale = F.check_softmax_params(
            self.num_classes, getattr(self.criterion, "scale", None), self.margin
        )

    @property
    def loss_kind(self) -> str:
        """The loss's name (:data:`hpn.losses.LOSSES`), else its class's."""
        return getattr(self.criterion, "kind", type(self.criterion).__name__)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """(N, d) unit output vectors."""
        return F.unit(_outputs(self, features, "the centres'"))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, K) cosines to the class centres (O(N K d): for very many classes use
        :meth:`predict`)."""
        return self.embed(features) @ F.unit(self.centres.to(features.dtype)).T

    def loss(
        self, features: torch.Tensor, target: Any, reduction: F.Reduction = "mean"
    ) -> torch.Tensor:
        """The loss object's value for a batch.

        Args:
            features: (N, in_features) features.
            target: a dict with ``"label"``, or the (N,) labels in [0, K) alone.
            reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        """
        z = _outputs(self, features, "the centres'")
        return self.criterion(PrototypeOutput(z, self.centres), target, reduction)

    @torch.no_grad()
    def predict(self, features: torch.Tensor, chunk_size: int = 16_384) -> torch.Tensor:
        """(N,) classes of the nearest centres by cosine, in chunks of centres (never an
        N x K matrix)."""
        z = _outputs(self, features, "the centres'")
        return F.nearest_prototype(z, self.centres.detach(), chunk_size)[0]


class CosineClassifier(LearnedCentresClassifier):
    """The learned cosine classifier (NormFace; CosFace with a margin): cross-entropy over
    ``scale`` times the cosines to all K learned centres.

    The loss settings are ``scale`` (None: :func:`hpn.functional.default_scale` of K) and
    ``margin`` (m >= 0, subtracted from the target's cosine); see
    :class:`LearnedCentresClassifier` for the rest.

    Example:
        >>> head = CosineClassifier(8, num_classes=5, scale=16.0, margin=0.2)
        >>> head(torch.randn(3, 8)).shape, head.predict(torch.randn(3, 8)).shape
        (torch.Size([3, 5]), torch.Size([3]))
    """

    default_loss = CosineSoftmaxLoss.kind


class SampledSoftmaxClassifier(LearnedCentresClassifier):
    """Learned class centres trained by a sampled cosine softmax (Partial FC): per training
    batch the softmax runs over the batch's classes plus ``negatives`` random ones
    (:class:`hpn.losses.SampledSoftmaxLoss`); prediction uses all K centres, in chunks.

    Cost: the forward and backward of the loss touch only the u <= N + r sampled centres
    (gathered with ``index_select``, whose gradient is nonzero on those rows only). The
    centres are one dense (K, d) parameter, so its gradient buffer is K x d (zeros outside
    the sampled rows), and the optimiser still steps all of it: an element-wise O(K d) pass
    per step, plus O(K d) optimiser state (Adam: two more K x d tensors), as for any layer
    with K rows. The loss settings are ``negatives`` (r >= 0, default 288), ``scale`` and
    ``margin``.

    Example:
        >>> head = SampledSoftmaxClassifier(8, num_classes=1000, dims=4, negatives=16)
        >>> head.loss(torch.randn(3, 8), torch.tensor([1, 5, 5])).shape
        torch.Size([])
    """

    default_loss = SampledSoftmaxLoss.kind
