"""Run configuration: plain dataclasses, built from nested dicts (YAML) with strict checks.

Unknown keys and wrong types are errors that name the key, so a typo in a config file never
silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml


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
class HeadConfig:
    """The ``head`` section: the output layer, its prototypes, loss and assignment."""

    # prototype: an HPN head (classification, regression or multi-task by the data's task);
    # softmax / mse: the baselines (softmax classifier, MSE regressor, or both for multi-task).
    kind: Literal["prototype", "softmax", "mse"] = "prototype"
    # Output dimensions d of a prototype head (None: K, or 1 + K for multi-task).
    dims: int | None = None
    # a generator method, "onehot", "data" (laid out like the training classes' mean
    # inputs, then spread), "embedding:glove" / "embedding:minilm" (class-name embeddings
    # used directly), or a path to a .npy file
    prototypes: str = "auto"
    # Seed of the prototype generator (separate from the run's seed).
    prototype_seed: int = 0
    # prototypes "data": separation steps after the PCA start (0: the start as it is)
    spread_steps: int = 100
    # Multi-task weight t in L = t L_class + (1 - t) L_regression.
    task_weight: float = 0.5
    # How a batch's losses are combined: the paper sums, mean divides by the batch size.
    reduction: Literal["sum", "mean"] = "mean"
    # Classification loss of a prototype head: the paper's (1 - cos)^2, a softmax over
    # scale * cosines to all prototypes (scale None: sqrt(2) ln(K - 1)) with a cosine margin,
    # or "neighbours": that softmax over the target and its nearest prototypes only, at a
    # cost per batch that does not grow with K.
    loss: Literal["paper", "softmax", "neighbours"] = "paper"
    # Scale s of the softmax losses (None: sqrt(2) ln(K - 1), AdaCos' fixed scale).
    scale: float | None = None
    # Additive margin m subtracted from the target cosine in the softmax losses.
    margin: float = 0.0
    # loss "neighbours": wrong classes per example, the prototypes nearest to the target's
    # (capped at K - 1, where it is the full softmax)
    neighbours: int = 32
    # loss "neighbours": classes drawn at random once per batch as extra wrong classes, each
    # standing for K / r classes (0: none; the neighbours alone learn much more slowly)
    random_negatives: int = 256
    # Dynamic label-to-prototype assignment (DL2PA): re-match classes to prototypes from the
    # running class means every `assignment_every` epochs (Hungarian up to 4,096 classes).
    assignment: Literal["static", "dynamic"] = "static"
    # Epochs between re-matchings of classes to prototypes.
    assignment_every: int = 1
    # Momentum of the running class means that dynamic assignment matches, in [0, 1).
    assignment_momentum: float = 0.9
    # Before the first epoch, match classes to prototypes once from the class means of the
    # untrained network's outputs over the training split (a data-driven start: classes the
    # random features already place close together get neighbouring prototypes). None: on,
    # unless the prototypes already belong to their classes (data prior, class-name
    # embeddings, the semantic method, a .npy file), whose layout a match would scramble.
    assignment_init: bool | None = None
    # "batchnorm": BatchNorm1d on the head's output z before it is normalised (keeps z
    # centred and of bounded size; the paper has none)
    output_norm: Literal["none", "batchnorm"] = "none"

    def __post_init__(self) -> None:
        _at_least("head.dims", self.dims, 1, allow_none=True)
        _at_least("head.spread_steps", self.spread_steps, 0)
        _at_least("head.assignment_every", self.assignment_every, 1)
        _at_least("head.neighbours", self.neighbours, 1)
        _at_least("head.random_negatives", self.random_negatives, 0)
        _in_unit_interval("head.task_weight", self.task_weight, closed_right=True)
        _in_unit_interval("head.assignment_momentum", self.assignment_momentum, closed_right=False)
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"config head.scale: must be a positive number, got {self.scale!r}")


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

    def __post_init__(self) -> None:
        _at_least("optim.epochs", self.epochs, 1)
        _at_least("optim.batch_size", self.batch_size, 1)
        _at_least("optim.patience", self.patience, 1, allow_none=True)
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
        hint = hints[key]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(hint, value, sub)
        else:
            kwargs[key] = _check_type(sub, value, hint)
    return cls(**kwargs)


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
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key.sub=value")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def to_dict(config: RunConfig) -> dict:
    """The config as nested plain dicts (what ``config.json`` holds)."""
    return dataclasses.asdict(config)


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
