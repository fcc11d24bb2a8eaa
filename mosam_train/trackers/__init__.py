"""Tracker rules by name: what `tracker=<name>` (configs/tracker/) runs at inference.

A rule (`mosam_train.inference.rules.TrackerRule`) decides what the streaming engine keeps
in memory and what each frame attends to; eval, predict and training's validation apply
the configured one to any checkpoint. Names resolve lazily ("module:Class" is imported on
first use), so listing or building one rule imports no other.

Adding a rule: subclass `TrackerRule` in a module here (or anywhere), add its name to
`_TRACKERS` (or call `register_tracker(name, cls)` from your own code), and write
`configs/tracker/<name>.yaml` with `name: <name>` plus the rule's constructor arguments.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from mosam_train.inference.rules import TrackerRule

# name -> the rule class, or "module:Class" imported when the name is first built
_TRACKERS: dict[str, type[TrackerRule] | str] = {
    "sam2": "mosam_train.inference.rules:TrackerRule",  # SAM 2's own rule, the default
    "cond_only": "mosam_train.trackers.cond_only:CondOnly",
}


def register_tracker(name: str, target: type[TrackerRule] | str) -> None:
    """Make `tracker=<name>` build `target` (a `TrackerRule` subclass, or "module:Class").
    A name already taken by another rule is refused: rename yours."""
    if not isinstance(target, str) and not (
        isinstance(target, type) and issubclass(target, TrackerRule)
    ):
        raise TypeError(f"tracker {name!r}: {target!r} is not a TrackerRule subclass")
    current = _TRACKERS.get(name)
    if current is not None and current != target:
        raise ValueError(
            f"tracker {name!r} is already registered ({current!r}). Fix: register yours "
            f"under another name."
        )
    _TRACKERS[name] = target


def tracker_names() -> list[str]:
    """Every registered tracker name."""
    return sorted(_TRACKERS)


def tracker_class(name: str) -> type[TrackerRule]:
    """The rule class registered as `name`."""
    if name not in _TRACKERS:
        raise ValueError(
            f"tracker={name}: unknown tracker rule. Known: {', '.join(tracker_names())}. "
            f"Fix: pick one of those, or register yours with "
            f"mosam_train.trackers.register_tracker."
        )
    target = _TRACKERS[name]
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr)
        if not (isinstance(target, type) and issubclass(target, TrackerRule)):
            raise TypeError(f"tracker {name!r}: {_TRACKERS[name]} is not a TrackerRule subclass")
    return target


def build_tracker(cfg: Mapping[str, Any] | None = None) -> TrackerRule:
    """The rule of a `tracker=` config: `{name: <name>, **constructor arguments}`; None
    or an empty mapping: SAM 2's rule."""
    params = dict(cfg or {})
    name = params.pop("name", "sam2")
    cls = tracker_class(str(name))
    try:
        return cls(**params)
    except TypeError as e:
        raise ValueError(
            f"tracker={name}: {cls.__name__} does not take {sorted(params)} ({e}). Fix: set "
            f"only its constructor's arguments in configs/tracker/{name}.yaml or on the "
            f"command line."
        ) from None
