"""Run configuration: plain dataclasses, built from nested dicts (YAML) with strict checks.

Unknown keys and wrong types are errors that name the key, so a typo in a config file never
silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from hpn.losses import LOSSES, PrototypeLoss, loss_entry
from hpn.registry import HEADS, OPTIONAL_HEAD_KEYS, head_entry
from hpn.training.legacy import migrate_head, override_path, switch_kind


def _at_least(path: str, value: float | None, low: float, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or not value >= low:
        raise ValueError(f"config {path}: must be >= {low}, got {value!r}")


def _in_unit_interval(path: str, value: float, *, closed_right: bool) -> None:
    ok = 0.0 <= value <= 1.0 if closed_right else 0.0 <= value < 1.0
    if not ok:
        bracket = "]" if closed_right else ")"
        raise ValueError(f"config {path}: must be in [0, 1{bracket}, got {value!r}")


@dataclass
class DataConfig:
    """The ``data`` section: which source, and how its splits are used."""

    # The data source, a name from hpn.data.registry (mnist5k, fashion_mnist, cifar100, ...).
    name: str = "mnist5k"
    # A multi-task source used for one task only: classification or regression.
    task: Literal["classification", "regression", "multitask"] | None = None
    # Long-tailed training split: n_min / n_max of the exponential profile (e.g. 0.01).
    imbalance: float | None = None
    # Keyword options of the source (e.g. folder, num_classes); see the data-source table.
    options: dict = field(default_factory=dict)


@dataclass
class ModelConfig:
    """The ``model`` section: the backbone that maps inputs to penultimate features."""

    # The backbone, a name from hpn.models (mlp, convnet, resnet32, densenet121, glyphnet).
    backbone: str = "mlp"
    # Keyword options of the backbone (e.g. hidden, features); see the backbone table.
    options: dict = field(default_factory=dict)


@dataclass
class LossConfig:
    """The ``head.loss`` section: a loss of :data:`hpn.losses.LOSSES` and its settings.

    In a config it is one mapping, ``{kind: NAME, SETTING: value, ...}``, whose settings are
    the named loss's (:attr:`hpn.losses.LossEntry.settings`); a setting the loss does not
    take is an error.
    """

    # The loss, a name from hpn.losses.LOSSES that suits the head kind.
    kind: str = PrototypeLoss.kind
    # The loss's settings dataclass (e.g. scale, margin, neighbours, random_negatives).
    settings: Any = None

    def __post_init__(self) -> None:
        entry = loss_entry(self.kind, "config head.loss.kind")
        self.kind = entry.name
        if self.settings is None:
            self.settings = entry.settings()
        elif not isinstance(self.settings, entry.settings):
            raise ValueError(
                f"config head.loss: settings of {type(self.settings).__name__} do not belong "
                f"to loss {self.kind!r}"
            )

    @classmethod
    def parse(cls, data: Any, path: str) -> LossConfig:
        """From ``{kind, SETTING: value, ...}``, the settings checked as the loss's."""
        if not isinstance(data, dict):
            raise ValueError(f"config {path}: expected a mapping with 'kind', got {data!r}")
        settings = dict(data)
        entry = loss_entry(settings.pop("kind", PrototypeLoss.kind), f"config {path}.kind")
        names = entry.setting_names()
        unknown = sorted(set(settings) - set(names))
        if unknown:
            raise ValueError(
                f"config {path}: {unknown} do not apply to loss {entry.name!r} (its settings: "
                f"{names or 'none'})"
            )
        return cls(entry.name, from_dict(entry.settings, settings, path))

    def as_dict(self) -> dict:
        """``{"kind": ..., **settings}``, what a config file holds."""
        return {"kind": self.kind, **dataclasses.asdict(self.settings)}


@dataclass
class AssignmentConfig:
    """The ``head.assignment`` section of a prototype head: which class owns which prototype."""

    # static: class c keeps prototype c; dynamic: re-match classes to prototypes from the
    # running class means during training (DL2PA; Hungarian up to 4,096 classes).
    kind: Literal["static", "dynamic"] = "static"
    # dynamic: epochs between re-matchings (None: 1).
    every: int | None = None
    # dynamic: momentum of the running class means, in [0, 1) (None: 0.9).
    momentum: float | None = None
    # dynamic: before the first epoch, match classes to prototypes once from the class means
    # of the untrained network's outputs over the training split. None: on, unless the
    # prototypes already belong to their classes (data prior, class-name embeddings, the
    # semantic method, a .npy file), whose layout a match would scramble.
    init: bool | None = None

    def __post_init__(self) -> None:
        if self.kind == "static":
            given = [k for k in ("every", "momentum", "init") if getattr(self, k) is not None]
            if given:
                raise ValueError(
                    f"config head.assignment.{given[0]}: does not apply to "
                    "head.assignment.kind static"
                )
            return
        self.every = 1 if self.every is None else self.every
        self.momentum = 0.9 if self.momentum is None else self.momentum
        _at_least("head.assignment.every", self.every, 1)
        _in_unit_interval("head.assignment.momentum", self.momentum, closed_right=False)


@dataclass
class HeadConfig:
    """The ``head`` section: the output layer, its prototypes or centres, loss and assignment.

    Only the settings of the chosen ``kind`` may be given (:data:`hpn.registry.HEADS`); the
    others stay unset (None).
    """

    # The head, a name from hpn.registry.HEADS: prototype (HPN: classification, regression or
    # multi-task by the data's task), softmax / mse (the baselines), cosine / sampled (learned
    # class centres: the cosine classifier, the sampled softmax).
    kind: str = "prototype"
    # Output dimensions d (prototype: None gives K, or 1 + K for multi-task; cosine /
    # sampled: None puts the centres on the backbone's features, d gives a Linear to d first).
    dims: int | None = None
    # prototype: a generator method, "onehot", "data" (laid out like the training classes'
    # mean inputs, then spread), "features:RUN" (the same, laid out like the class means of
    # the features of the finished run in folder RUN), "features" (the same, from a warm-up
    # network the run first trains in its folder's warmup/), "embedding:glove" /
    # "embedding:minilm" (class-name embeddings used directly), or a path to a .npy file
    # (None: "auto").
    prototypes: str | None = None
    # prototype with prototypes "features": epochs of the warm-up run (the same config with
    # the pixel data prior), whose backbone's class means lay the prototypes out (None: 1).
    warmup_epochs: int | None = None
    # prototype: seed of the prototype generator, separate from the run's seed (None: 0).
    prototype_seed: int | None = None
    # prototype: separation steps after the data prior's PCA start (0: the start as it is;
    # None: 100).
    spread_steps: int | None = None
    # prototype with a data prior ("data", "features", "features:RUN"): at most this many
    # training images per class go into the class means, a draw seeded by prototype_seed
    # (None: every image). The pass over the training split costs time in proportion.
    prior_images: int | None = None
    # prototype with a data prior: the class means read the training images through the
    # training augmentation (true, one random view per image) or as they are (false).
    # None: true.
    prior_augment: bool | None = None
    # prototype with a feature prior ("features", "features:RUN"), classification: the run
    # starts where that network ended instead of from its own initial weights: the backbone
    # from its best weights, the output layer from the PCA map that laid the prototypes out
    # (so each class's features start near its prototype). Needs output_norm none and the
    # same backbone. None: false (with a feature prior; unset otherwise).
    warm_start: bool | None = None
    # Multi-task weight t in L = t L_class + (1 - t) L_regression.
    task_weight: float = 0.5
    # How a batch's losses are combined: the paper sums, mean divides by the batch size.
    reduction: Literal["sum", "mean"] = "mean"
    # prototype / cosine / sampled: "batchnorm" puts BatchNorm1d on the output z before it is
    # normalised (keeps z centred and of bounded size; the paper has none). None: "none".
    output_norm: Literal["none", "batchnorm"] | None = None
    # The classification loss and its settings: {kind, scale, margin, ...}; kind None gives
    # the head's default (prototype: squared_cosine).
    loss: LossConfig | None = None
    # prototype: {kind: static | dynamic, every, momentum, init} (None: static).
    assignment: AssignmentConfig | None = None

    def __post_init__(self) -> None:
        entry = head_entry(self.kind) if self.kind in HEADS else None
        if entry is None:
            raise ValueError(f"config head.kind: {self.kind!r} is not one of {list(HEADS)}")
        for key in OPTIONAL_HEAD_KEYS:
            if key not in entry.settings and getattr(self, key) is not None:
                raise ValueError(
                    f"config head.{key}: does not apply to head kind {self.kind!r} (its "
                    f"settings: {list(entry.settings) or 'none'})"
                )
        if "prototypes" in entry.settings:
            self.prototypes = "auto" if self.prototypes is None else self.prototypes
            self.prototype_seed = self.prototype_seed or 0
            self.spread_steps = 100 if self.spread_steps is None else self.spread_steps
            self.assignment = self.assignment or AssignmentConfig()
            self._check_prior_settings()
        if "output_norm" in entry.settings:
            self.output_norm = self.output_norm or "none"
        if entry.default_loss is not None:
            self.loss = self.loss or LossConfig(entry.default_loss)
            if self.kind not in LOSSES[self.loss.kind].heads:
                raise ValueError(
                    f"config head.loss.kind: {self.loss.kind!r} does not suit head kind "
                    f"{self.kind!r} (its losses: {entry.losses()})"
                )
        _at_least("head.dims", self.dims, 1, allow_none=True)
        _at_least("head.spread_steps", self.spread_steps, 0, allow_none=True)
        _in_unit_interval("head.task_weight", self.task_weight, closed_right=True)

    def _check_prior_settings(self) -> None:
        """The settings of the data priors (:data:`PRIOR_SETTINGS`): refused where the
        prototypes do not take them, else defaulted (``warmup_epochs`` 1, ``prior_augment``
        true, ``warm_start`` false) and checked."""
        for key, setting in PRIOR_SETTINGS.items():
            value = getattr(self, key)
            if not setting.takes(self.prototypes):
                if value is not None:
                    scope = setting.scope.format(prototypes=self.prototypes)
                    raise ValueError(f"config head.{key}: applies to {scope}")
            elif value is None:
                setattr(self, key, setting.default)
        _at_least("head.warmup_epochs", self.warmup_epochs, 1, allow_none=True)
        _at_least("head.prior_images", self.prior_images, 1, allow_none=True)
        if self.warm_start and self.output_norm == "batchnorm":
            raise ValueError(
                "config head.warm_start: needs head.output_norm none (a batch norm on z "
                "would rescale the PCA map it starts from)"
            )

    def with_prototypes(self, prototypes: str, **changes: Any) -> HeadConfig:
        """A copy with ``head.prototypes`` set to ``prototypes`` (and ``changes``), without
        the settings that spec does not take (:func:`settings_not_taken`).

        >>> HeadConfig(prototypes="features", prior_images=5).with_prototypes("random").prior_images is None
        True
        """
        dropped = dict.fromkeys(settings_not_taken(prototypes))
        return dataclasses.replace(self, prototypes=prototypes, **{**dropped, **changes})

    @property
    def dynamic(self) -> bool:
        """Dynamic label-to-prototype assignment is on."""
        return self.assignment is not None and self.assignment.kind == "dynamic"


#: ``head.prototypes`` that lays the prototypes out in a warm-up network's features, trained
#: first in the run folder (:mod:`hpn.training.feature_prior`).
WARMUP_PRIOR = "features"
#: The prefix of a ``head.prototypes`` that names a finished run whose features lay the
#: prototypes out (``features:RUN``, :mod:`hpn.training.feature_prior`).
FEATURES_PREFIX = "features:"


def is_data_prior(prototypes: str | None) -> bool:
    """``head.prototypes`` lays the prototypes out like the training classes' means: of the
    inputs (``data``) or of a network's features (``features``, ``features:RUN``).

    >>> [is_data_prior(p) for p in ("data", "features", "features:runs/a", "auto", None)]
    [True, True, True, False, False]
    """
    return prototypes == "data" or is_feature_prior(prototypes)


def is_feature_prior(prototypes: str | None) -> bool:
    """``head.prototypes`` lays the prototypes out like the class means of a network's
    features: the run's warm-up (``features``) or a finished run (``features:RUN``).

    >>> [is_feature_prior(p) for p in ("features", "features:runs/a", "data", None)]
    [True, True, False, False]
    """
    return prototypes == WARMUP_PRIOR or str(prototypes).startswith(FEATURES_PREFIX)


@dataclass(frozen=True)
class PriorSetting:
    """A head setting that only some ``head.prototypes`` specs take."""

    #: Whether a spec takes the setting.
    takes: Callable[[Any], bool]
    #: What it applies to, as its error names it; ``{prototypes}`` is the spec given.
    scope: str
    #: Its value where a spec takes it and the config leaves it unset.
    default: Any


#: How the refusal of a prior-pass setting names what it applies to.
DATA_PRIORS_ONLY = (
    f"the data priors only (head.prototypes data, {WARMUP_PRIOR} or {FEATURES_PREFIX}RUN; "
    "the prototypes are {prototypes!r})"
)

#: The settings of the data priors: which ``head.prototypes`` take each, and its default
#: there. The config refuses one given to a spec that does not take it, and an override of
#: ``head.prototypes`` drops them (:func:`settings_not_taken`).
PRIOR_SETTINGS = {
    "warmup_epochs": PriorSetting(
        lambda prototypes: prototypes == WARMUP_PRIOR,
        f"head.prototypes={WARMUP_PRIOR} only (the prototypes are {{prototypes!r}})",
        default=1,
    ),
    "prior_images": PriorSetting(is_data_prior, DATA_PRIORS_ONLY, default=None),
    "prior_augment": PriorSetting(is_data_prior, DATA_PRIORS_ONLY, default=True),
    "warm_start": PriorSetting(
        is_feature_prior,
        f"head.prototypes={WARMUP_PRIOR} or {FEATURES_PREFIX}RUN only (the prototypes are "
        f"{{prototypes!r}})",
        default=False,
    ),
}


def settings_not_taken(prototypes: Any) -> list[str]:
    """The head settings that a ``head.prototypes`` spec does not take
    (:data:`PRIOR_SETTINGS`): ``warmup_epochs`` unless it is :data:`WARMUP_PRIOR`, the prior
    pass's unless it is a data prior, ``warm_start`` unless it is a feature prior.

    >>> settings_not_taken("data")
    ['warmup_epochs', 'warm_start']
    >>> settings_not_taken("features")
    []
    """
    return [key for key, setting in PRIOR_SETTINGS.items() if not setting.takes(prototypes)]


@dataclass
class OptimConfig:
    """The ``optim`` section: optimiser, schedule and length of training."""

    # SGD (with momentum) or Adam.
    optimizer: Literal["sgd", "adam"] = "sgd"
    # Initial learning rate (>= 0).
    lr: float = 0.01
    # SGD momentum in [0, 1) (ignored by Adam).
    momentum: float = 0.9
    # L2 weight decay of the optimiser (>= 0).
    weight_decay: float = 0.0
    # Passes over the training split (>= 1); --resume may raise it.
    epochs: int = 10
    # Examples per training step, over all processes under torchrun.
    batch_size: int = 128
    # Learning-rate schedule over the epochs: constant, cosine to 0, or x0.1 at 50 % and 75 %.
    schedule: Literal["none", "cosine", "step"] = "cosine"
    # Stop after this many epochs without a better validation score (None: run all epochs).
    patience: int | None = None
    # Training steps per epoch (None: one pass over the training split). Shorter epochs
    # validate, checkpoint and step the schedule more often (learning curves, step budgets);
    # their batches continue through shuffled passes (hpn.training.order).
    steps_per_epoch: int | None = None

    def __post_init__(self) -> None:
        _at_least("optim.epochs", self.epochs, 1)
        _at_least("optim.batch_size", self.batch_size, 1)
        _at_least("optim.patience", self.patience, 1, allow_none=True)
        _at_least("optim.steps_per_epoch", self.steps_per_epoch, 1, allow_none=True)
        _at_least("optim.weight_decay", self.weight_decay, 0.0)
        _in_unit_interval("optim.momentum", self.momentum, closed_right=False)
        if not (math.isfinite(self.lr) and self.lr >= 0):
            raise ValueError(f"config optim.lr: must be a number >= 0, got {self.lr!r}")


@dataclass
class RunConfig:
    """A whole run: the top-level keys and the four sections."""

    # Seeds the split, the initialisation, the batch order and dropout.
    seed: int = 0
    # cpu, cuda or cuda:N (one GPU per process under torchrun).
    device: str = "cpu"
    # The run folder (config, metrics, checkpoints, results); hpn train --out sets it.
    out_dir: str = "runs/run"
    select_metric: str = "auto"  # validation metric that picks the best epoch
    # Among epochs with the same select_metric: "first" keeps the earliest; "val_loss" the
    # one with the lowest validation loss. With val_loss a score at its limit (validation
    # accuracy 1.0) no longer stops the run at once: it trains optim.patience more epochs, and
    # the loss picks among them (a small validation split that saturates early).
    select_tie_break: Literal["first", "val_loss"] = "first"
    tensorboard: bool = False  # also write per-epoch scalars to out_dir/tensorboard
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast forward passes (CPU or CUDA)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


def _check_type(path: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ValueError(
                f"config {path}: {value!r} is not one of {list(typing.get_args(hint))}"
            )
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        return _check_type(path, value, next(a for a in args if a is not type(None)))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = origin or hint
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ValueError(
            f"config {path}: expected {getattr(expected, '__name__', expected)}, got {value!r}"
        )
    return value


def from_dict(cls: type, data: dict, path: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ValueError(f"config {path or '(top level)'}: expected a mapping, got {data!r}")
    if cls is RunConfig and isinstance(data.get("head"), dict):
        data = {**data, "head": migrate_head(data["head"])}
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(
            f"config {path or '(top level)'}: unknown key(s) {unknown}; known: {sorted(names)}"
        )
    kwargs = {}
    for key, value in data.items():
        sub = f"{path}.{key}" if path else key
        hint = _section(hints[key])
        if hint is None:
            kwargs[key] = _check_type(sub, value, hints[key])
        elif value is None:
            kwargs[key] = None
        elif hasattr(hint, "parse"):
            kwargs[key] = hint.parse(value, sub)
        else:
            kwargs[key] = from_dict(hint, value, sub)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        message = str(err)
        if message.startswith("config "):
            raise
        raise ValueError(f"config {path or '(top level)'}: {message}") from None


def _section(hint: Any) -> Any:
    """The dataclass a hint names, alone or or-ed with None; None for a plain value."""
    args = (
        typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType)
        else (hint,)
    )
    found = [a for a in args if isinstance(a, type) and dataclasses.is_dataclass(a)]
    return found[0] if found else None


def parse_key_values(items: list[str], label: str = "option") -> dict:
    """``key=value`` strings (values parsed as YAML) as a dict; ``label`` names them in errors.

    >>> parse_key_values(["num_classes=3", "std=0.5"])
    {'num_classes': 3, 'std': 0.5}
    """
    pairs = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{label} {item!r} is not of the form key=value")
        pairs[key] = yaml.safe_load(raw)
    return pairs


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested dict, in place.

    An override that changes a section's ``kind`` (``head.kind``, ``head.loss.kind``,
    ``head.assignment.kind``) first drops the settings that section holds which the new kind
    does not take, so ``--config glyphs head.kind=softmax`` switches heads; one of
    ``head.prototypes`` likewise drops the settings the new spec does not take
    (:func:`settings_not_taken`: ``head.prototypes=data`` drops a ``warm_start``). The
    settings given by later overrides are checked as strictly as the file's. The flat keys of the
    previous release (``head.scale``, ``head.assignment_every``, ...) are read as their new
    keys, with a ``DeprecationWarning``.
    """
    if isinstance(data.get("head"), dict):
        data["head"] = migrate_head(data["head"])
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key.sub=value")
        value = yaml.safe_load(raw)
        parts = override_path(key.split("."), value)
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
        if parts[-1] == "kind":
            switch_kind(parts[:-1], node, value)
        elif parts == ["head", "prototypes"]:
            for setting in settings_not_taken(value):
                node.pop(setting, None)
        node[parts[-1]] = value
    return data


def to_dict(config: Any) -> Any:
    """The config as nested plain dicts (what ``config.json`` holds)."""
    if hasattr(config, "as_dict"):
        return config.as_dict()
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    if isinstance(config, list | tuple):
        return type(config)(to_dict(v) for v in config)
    return config


def _flat(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key != "options":
            flat.update(_flat(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_changes(saved: RunConfig, wanted: RunConfig) -> dict[str, tuple]:
    """``{key: (saved value, wanted value)}`` for every config key that differs."""
    old, new = _flat(to_dict(saved)), _flat(to_dict(wanted))
    return {key: (old[key], new[key]) for key in old if old[key] != new[key]}


#: Config keys that do not change what a run computes.
SAME_RUN_IGNORES = ("device", "tensorboard", "out_dir")


def saved_run_difference(folder: Path, cfg: RunConfig) -> tuple[str, Any, Any] | None:
    """The first key, with its saved and wanted values, where the run saved in
    ``folder/config.json`` computes something else than ``cfg`` would (keys of
    :data:`SAME_RUN_IGNORES` aside); None when none differs or the folder holds no config."""
    saved_file = folder / "config.json"
    if not saved_file.is_file():
        return None
    saved = from_dict(RunConfig, {**json.loads(saved_file.read_text()), "out_dir": str(folder)})
    changes = config_changes(saved, cfg)
    key = next((k for k in changes if k not in SAME_RUN_IGNORES), None)
    return None if key is None else (key, *changes[key])
