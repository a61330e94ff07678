"""The ``head`` section's shape: the flat keys of the previous release, and kind switches.

Until this release the head section was flat (``head.loss: neighbours``, ``head.scale: 20``,
``head.assignment: dynamic``, ``head.assignment_every: 2``, ...). Now the loss and the
assignment are sections of their own (``head.loss.kind``, ``head.loss.scale``,
``head.assignment.kind``, ``head.assignment.every``, ...). For one release the flat keys
still work, in config files, in overrides and in the ``config.json`` of earlier run folders
(which then load, resume and evaluate as before), each with a ``DeprecationWarning`` that
names its new key. A flat head section of an earlier run also held the settings its head did
not use (a softmax run's ``loss: paper``); those are dropped, as that release ignored them.
"""

from __future__ import annotations

import warnings
from typing import Any

from hpn.losses import LOSSES
from hpn.registry import HEADS, OPTIONAL_HEAD_KEYS

#: Flat head keys of the previous release -> (section, key) now.
FLAT_KEYS = {
    "scale": ("loss", "scale"),
    "margin": ("loss", "margin"),
    "neighbours": ("loss", "neighbours"),
    "random_negatives": ("loss", "random_negatives"),
    "assignment_every": ("assignment", "every"),
    "assignment_momentum": ("assignment", "momentum"),
    "assignment_init": ("assignment", "init"),
}
_SECTIONS = ("loss", "assignment")


def _warn(old: str, new: str) -> None:
    warnings.warn(
        f"config {old} is deprecated and will be removed in the next release; use {new}",
        DeprecationWarning,
        stacklevel=4,
    )


def _loss_name(name: Any) -> str | None:
    """The current name of a loss name or old alias, without a warning; None if unknown."""
    for entry in LOSSES.values():
        if name == entry.name or name in entry.aliases:
            return entry.name
    return None


def migrate_head(head: dict) -> dict:
    """A head section in the current shape (a new dict; the current shape comes back equal).

    Flat keys move into their sections with a warning; a flat section (the previous
    release's) also loses the settings its head kind or loss did not take. A ``loss``
    section without ``kind`` gets the head kind's default loss.
    """
    out = dict(head)
    legacy = False
    for section in _SECTIONS:
        if isinstance(out.get(section), str):
            _warn(f"head.{section}: {out[section]}", f"head.{section}.kind: {out[section]}")
            out[section] = {"kind": out[section]}
            legacy = True
    for old, (section, key) in FLAT_KEYS.items():
        if old in out:
            _warn(f"head.{old}", f"head.{section}.{key}")
            target = out.setdefault(section, {})
            if isinstance(target, dict):
                target[key] = out.pop(old)
            legacy = True
    entry = HEADS.get(out.get("kind", "prototype"))
    if entry is not None and isinstance(out.get("loss"), dict) and entry.default_loss:
        out["loss"] = {"kind": entry.default_loss, **out["loss"]}
    if legacy and entry is not None:
        _fit(out, entry.name)
    return out


def _fit(head: dict, kind: str) -> None:
    """Drop, in place, the head settings that ``kind`` and its loss and assignment kinds do
    not take (the previous release ignored them)."""
    entry = HEADS[kind]
    for key in [k for k in head if k not in ("kind", "reduction", "task_weight")]:
        if key not in entry.settings and key in OPTIONAL_HEAD_KEYS:
            del head[key]
    loss = head.get("loss")
    if isinstance(loss, dict):
        name = _loss_name(loss.get("kind"))
        if name is None or kind not in LOSSES[name].heads:
            loss["kind"] = name = entry.default_loss  # settings the new loss takes stay
        _fit_loss(loss, name)
    assignment = head.get("assignment")
    if isinstance(assignment, dict) and assignment.get("kind", "static") == "static":
        for key in ("every", "momentum", "init"):
            assignment.pop(key, None)


def _fit_loss(loss: dict, name: str | None) -> None:
    """Drop, in place, the settings of a loss section that loss ``name`` does not take."""
    if name is None:
        return
    keep = set(LOSSES[name].setting_names())
    for key in [k for k in loss if k != "kind" and k not in keep]:
        del loss[key]


def override_path(parts: list[str], value: Any) -> list[str]:
    """The current key path of an override's key: flat head keys move into their sections,
    and a section set to a name (``head.loss=cosine_softmax``) sets its ``kind``; both with a
    warning.

    >>> import warnings; warnings.simplefilter("ignore")
    >>> override_path(["head", "assignment_every"], 2), override_path(["head", "loss"], "x")
    (['head', 'assignment', 'every'], ['head', 'loss', 'kind'])
    """
    if len(parts) == 2 and parts[0] == "head":
        if parts[1] in FLAT_KEYS:
            section, key = FLAT_KEYS[parts[1]]
            _warn(f"head.{parts[1]}", f"head.{section}.{key}")
            return ["head", section, key]
        if parts[1] in _SECTIONS and isinstance(value, str):
            _warn(f"head.{parts[1]}={value}", f"head.{parts[1]}.kind={value}")
            return ["head", parts[1], "kind"]
    return parts


def switch_kind(path: list[str], node: dict, kind: Any) -> None:
    """Before an override sets ``node["kind"]`` (the section at ``path``) to ``kind``, drop
    the settings in ``node`` that the new kind does not take (in place); nothing when the
    kind stays."""
    defaults = {("head",): "prototype", ("head", "assignment"): "static"}
    if node.get("kind", defaults.get(tuple(path))) == kind:
        return
    if path == ["head"] and kind in HEADS:
        _fit(node, kind)
    elif path == ["head", "loss"]:
        _fit_loss(node, _loss_name(kind))
    elif path == ["head", "assignment"] and kind == "static":
        for key in ("every", "momentum", "init"):
            node.pop(key, None)
