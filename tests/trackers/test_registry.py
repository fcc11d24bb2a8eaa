"""`tracker=<name>` resolves through one registry, with errors that say what exists."""

from pathlib import Path

import pytest
import yaml

from mosam_train.inference.rules import TrackerRule
from mosam_train.trackers import (
    TRACKERS,
    build_tracker,
    register_tracker,
    tracker_class,
    tracker_names,
)
from mosam_train.trackers.cond_only import CondOnly


class Toy(TrackerRule):
    def __init__(self, strength: float = 1.0) -> None:
        self.strength = strength


@pytest.fixture(autouse=True)
def registry(monkeypatch):
    """Registrations last for one test."""
    monkeypatch.setattr(TRACKERS, "registered", {})


def test_built_in_rules_resolve_by_name():
    assert {"sam2", "cond_only"} <= set(tracker_names())
    assert tracker_class("cond_only") is CondOnly
    assert isinstance(build_tracker({"name": "cond_only"}), CondOnly)


def test_a_rule_defined_elsewhere_registers_and_takes_its_parameters():
    register_tracker("test_registry_toy", Toy)
    register_tracker("test_registry_toy", Toy)  # the same class again: no change
    rule = build_tracker({"name": "test_registry_toy", "strength": 0.5})
    assert isinstance(rule, Toy) and rule.strength == 0.5
    assert "test_registry_toy" in tracker_names()


def test_a_module_that_defines_rule_is_a_tracker_with_no_table_to_edit():
    package = Path(__file__).resolve().parents[2] / "mosam_train" / "trackers"
    modules = {p.stem for p in package.glob("*.py") if "\nRULE = " in p.read_text()}
    assert modules == {"sam2", "cond_only", "oracle", "samurai", "dam4sam", "sam2long"}
    assert modules <= set(tracker_names())


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown tracker rule 'no_such_rule'") as e:
        build_tracker({"name": "no_such_rule"})
    known = ", ".join(tracker_names())  # every registered rule, sorted
    assert "cond_only, dam4sam, oracle" in known and known in str(e.value)
    assert "register_tracker" in str(e.value)


def test_unknown_parameters_name_the_rule_and_its_config():
    with pytest.raises(ValueError, match=r"CondOnly does not take \['window'\]") as e:
        build_tracker({"name": "cond_only", "window": 3})
    assert "configs/tracker/cond_only.yaml" in str(e.value)


def test_taken_names_and_non_rules_are_refused():
    with pytest.raises(ValueError, match="already known"):
        register_tracker("cond_only", Toy)
    with pytest.raises(TypeError, match="is not a tracker rule"):
        register_tracker("test_registry_bad", dict)


CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "tracker"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_tracker_config_builds_its_rule(path):
    cfg = yaml.safe_load(path.read_text())
    assert cfg["name"] == path.stem  # tracker=<file> builds the rule of that name
    assert isinstance(build_tracker(cfg), tracker_class(path.stem))
