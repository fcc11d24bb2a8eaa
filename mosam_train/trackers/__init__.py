"""Tracker rules by name: what `tracker=<name>` (configs/tracker/) runs at inference.

A rule (`mosam_train.inference.rules.TrackerRule`) decides what the streaming engine keeps
in memory and what each frame attends to; eval, predict and training's validation apply
the configured one to any checkpoint. A rule's module is imported when its name is first
built, so building one rule imports no other.

Adding a rule: the module `trackers/<name>.py` with a `TrackerRule` subclass assigned to
`RULE`, and `configs/tracker/<name>.yaml` with `name: <name>` plus the rule's constructor
arguments. A rule defined outside this package joins with `register_tracker(name, cls)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mosam_train.inference.rules import TrackerRule
from mosam_train.registry import Registry

TRACKERS: Registry[type[TrackerRule]] = Registry(
    "tracker rule",
    __name__,
    "RULE",
    accepts=lambda entry: isinstance(entry, type) and issubclass(entry, TrackerRule),
    register_with="mosam_train.trackers.register_tracker",
)


def register_tracker(name: str, rule: type[TrackerRule]) -> type[TrackerRule]:
    """Make `tracker=<name>` build `rule` (a `TrackerRule` subclass defined outside this
    package). A name already taken by another rule is refused: rename yours."""
    return TRACKERS.register(name, rule)


def tracker_names() -> list[str]:
    """Every known tracker name, sorted."""
    return TRACKERS.names()


def tracker_class(name: str) -> type[TrackerRule]:
    """The rule class of `tracker=<name>`: `trackers/<name>.py`'s `RULE`, or a registered one."""
    return TRACKERS.get(name)


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
