"""The heads by name, and the one parser of head names in benchmark specs.

:data:`HEADS` names every head ``hpn train`` builds (``head.kind``) with the config settings
that apply to it; the losses each head takes are those of :data:`hpn.losses.LOSSES` that list
it. Configs (:mod:`hpn.training.config`), the trainer, the scale benchmark and the specs read
these two tables, so a new head or loss is one class and one entry.

A head name (:func:`head_overrides`) is what a spec's row or ``hpn bench scale --heads``
says::

    softmax | mse | cosine | sampled                    a head kind other than prototype
    PROTOTYPES-LOSS[-batchnorm][-dynamic][-warm|-cold]  a prototype head: a prototype spec
                                                        of hpn.prototypes.resolve (auto,
                                                        data, random, ...), a loss name,
                                                        batch norm on z, dynamic
                                                        label-to-prototype assignment, a
                                                        warm start from the feature prior's
                                                        network or none (a config such as
                                                        glyphs may set one)
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from hpn.baselines import SoftmaxClassifier
from hpn.heads import PrototypeClassifier
from hpn.learned import CosineClassifier, SampledSoftmaxClassifier
from hpn.losses import LOSSES, PrototypeLoss, loss_entry


@dataclass(frozen=True)
class HeadEntry:
    """A head kind.

    Attributes:
        name: ``head.kind``.
        summary: one line for help texts and the config reference.
        classifier: its classification head class (None for regression only).
        settings: the ``head`` keys that apply to it besides ``kind``, ``reduction`` and
            ``task_weight`` (a key outside them is a config error).
        default_loss: the loss name when ``head.loss.kind`` is not given (None: no loss
            setting).
        tasks: the data tasks it serves.
    """

    name: str
    summary: str
    classifier: type[nn.Module] | None
    settings: tuple[str, ...] = ()
    default_loss: str | None = None
    tasks: tuple[str, ...] = ("classification",)

    def losses(self) -> list[str]:
        """The loss names it takes (:data:`hpn.losses.LOSSES` entries that list it)."""
        return [name for name, entry in LOSSES.items() if self.name in entry.heads]


_PROTOTYPE_SETTINGS = (
    "dims", "prototypes", "warmup_epochs", "prototype_seed", "spread_steps", "prior_images",
    "prior_augment", "warm_start", "output_norm", "loss", "assignment",
)  # fmt: skip
_LEARNED_SETTINGS = ("dims", "output_norm", "loss")

#: The heads by ``head.kind``, in the order help texts list them.
HEADS: dict[str, HeadEntry] = {
    entry.name: entry
    for entry in (
        HeadEntry(
            "prototype",
            "fixed prototypes on the sphere (HPN); classification, regression or multi-task",
            PrototypeClassifier,
            _PROTOTYPE_SETTINGS,
            PrototypeLoss.kind,
            ("classification", "regression", "multitask"),
        ),
        HeadEntry(
            "softmax",
            "a linear layer to K logits with cross-entropy (with mse: the multi-task baseline)",
            SoftmaxClassifier,
            tasks=("classification", "multitask"),
        ),
        HeadEntry(
            "mse",
            "a linear layer to one value with squared error (regression baseline)",
            None,
            tasks=("regression", "multitask"),
        ),
        HeadEntry(
            "cosine",
            "learned class centres, cosine softmax over all K (NormFace / CosFace)",
            CosineClassifier,
            _LEARNED_SETTINGS,
            CosineClassifier.default_loss,
        ),
        HeadEntry(
            "sampled",
            "learned class centres, softmax over the batch's classes and random others "
            "(Partial FC)",
            SampledSoftmaxClassifier,
            _LEARNED_SETTINGS,
            SampledSoftmaxClassifier.default_loss,
        ),
    )
}


#: The head keys that only some head kinds take: every kind's settings, in order.
OPTIONAL_HEAD_KEYS = tuple(dict.fromkeys(key for entry in HEADS.values() for key in entry.settings))


def head_entry(name: str) -> HeadEntry:
    """The :data:`HEADS` entry of ``name``.

    Raises:
        ValueError: an unknown name; the message lists the names.
    """
    if name not in HEADS:
        raise ValueError(f"head kind must be one of {list(HEADS)}, got {name!r}")
    return HEADS[name]


_FLAGS = {
    "batchnorm": "head.output_norm=batchnorm",
    "dynamic": "head.assignment.kind=dynamic",
    "warm": "head.warm_start=true",
    "cold": "head.warm_start=false",
}


def head_overrides(name: str) -> list[str]:
    """The run-config overrides a head name stands for (see the module docstring).

    Raises:
        ValueError: a name that is neither a head kind nor PROTOTYPES-LOSS[-FLAG...], or
            whose loss does not suit a prototype head; the message gives the grammar.

    Example:
        >>> head_overrides("cosine")
        ['head.kind=cosine']
        >>> head_overrides("data-neighbour_softmax-dynamic")  # doctest: +NORMALIZE_WHITESPACE
        ['head.kind=prototype', 'head.prototypes=data', 'head.loss.kind=neighbour_softmax',
         'head.assignment.kind=dynamic']
        >>> head_overrides("features-neighbour_softmax-warm")[-1]
        'head.warm_start=true'
    """
    if name in HEADS and name != "prototype":
        return [f"head.kind={name}"]
    parts = name.split("-")
    flags: list[str] = []
    while len(parts) > 2 and parts[-1] in _FLAGS:
        flags.insert(0, _FLAGS[parts.pop()])
    usage = (
        f"head name {name!r}: use one of {[h for h in HEADS if h != 'prototype']} or "
        f"PROTOTYPES-LOSS[-batchnorm][-dynamic][-warm|-cold] with LOSS one of "
        f"{HEADS['prototype'].losses()}"
    )
    if len(parts) < 2 or not all(parts):
        raise ValueError(usage)
    prototypes, loss = "-".join(parts[:-1]), parts[-1]
    try:
        entry = loss_entry(loss, "head name loss")
    except ValueError:
        raise ValueError(usage) from None
    if "prototype" not in entry.heads:
        raise ValueError(usage)
    return [
        "head.kind=prototype",
        f"head.prototypes={prototypes}",
        f"head.loss.kind={entry.name}",
        *flags,
    ]
