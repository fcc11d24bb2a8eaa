"""Tracker rules decide what the engine keeps and what a frame attends to; a rule defined
outside the project, registered at run time, is built by name and changes the engine."""

import numpy as np
import pytest
import torch

from mosam_train.inference.engine import VideoPropagator
from mosam_train.inference.rules import MemoryBank, TrackerRule
from mosam_train.models.video_sam import VideoSAM
from mosam_train.trackers import TRACKERS, build_tracker, register_tracker


class EveryNth(TrackerRule):
    """Toy rule: only every `every`-th tracked frame enters memory, nothing is ever
    dropped, and the bank counts, per object, the frames remembered."""

    def __init__(self, every: int = 2) -> None:
        self.every = every

    def initial_state(self, num_objects, device):
        return {"remembered": torch.zeros(num_objects, dtype=torch.long, device=device)}

    def remember(self, bank, frame_idx, entry, out, *, prompted, flow=None):
        if prompted or frame_idx % self.every == 0:
            super().remember(bank, frame_idx, entry, out, prompted=prompted, flow=flow)
            bank.state["remembered"] += 1

    def horizon(self, bank, next_frame, model_horizon):
        return 0, 0


class AttendToPromptsOnly(TrackerRule):
    """Toy rule: every frame is stored, but each frame attends to the prompted ones only."""

    def visible(self, bank: MemoryBank, frame_idx, flow=None):
        return {"cond_frame_outputs": bank.cond, "non_cond_frame_outputs": {}}


@pytest.fixture(autouse=True)
def toy_rules(monkeypatch):
    """Both toy rules registered for each test only."""
    monkeypatch.setattr(TRACKERS, "registered", {})
    register_tracker("test_every_nth", EveryNth)
    register_tracker("test_prompts_only", AttendToPromptsOnly)


@pytest.fixture(scope="module")
def model(micro):
    return VideoSAM(micro())


def prompts() -> dict[int, dict[int, np.ndarray]]:
    mask = np.zeros((64, 80), bool)
    mask[10:30, 20:50] = True
    return {0: {1: mask, 2: ~mask}, 4: {3: mask}}


@pytest.fixture
def run(noise_frames):
    """`run(engine, num_frames=12)`: every frame's logits of a noise video."""

    def propagate(engine: VideoPropagator, num_frames: int = 12) -> dict[int, torch.Tensor]:
        frames = noise_frames(num_frames)
        return {r.frame_idx: r.logits for r in engine.propagate(frames, prompts())}

    return propagate


def test_a_rule_registered_at_run_time_decides_what_memory_keeps(run, model):
    rule = build_tracker({"name": "test_every_nth", "every": 3})
    assert isinstance(rule, EveryNth) and rule.every == 3
    engine = VideoPropagator(model, rule)
    run(engine)
    first, late = engine.groups  # objects 1, 2 from frame 0; object 3 from frame 4
    assert list(first.bank.cond) == [0] and list(first.bank.non_cond) == [3, 6, 9]
    assert list(late.bank.cond) == [4] and list(late.bank.non_cond) == [6, 9]
    # per-object state lives in each group's bank, one row per object
    assert first.bank.state["remembered"].tolist() == [4, 4]
    assert late.bank.state["remembered"].tolist() == [3]
    # SAM 2's rule keeps every frame of its window (and drops what it can no longer read)
    sam2 = VideoPropagator(model, build_tracker({"name": "sam2"}))
    run(sam2)
    assert list(sam2.groups[0].bank.non_cond) == list(range(1, 12))


def test_one_rule_object_serves_many_videos(run, model):
    engine = VideoPropagator(model, EveryNth(every=2))
    run(engine, 12)
    run(engine, 6)  # a new video starts from a clean bank
    assert list(engine.groups[0].bank.non_cond) == [2, 4]
    assert engine.groups[0].bank.state["remembered"].tolist() == [3, 3]


def test_what_a_frame_attends_to_is_the_rules(run, model):
    full = run(VideoPropagator(model))
    cond_only = run(VideoPropagator(model, build_tracker({"name": "cond_only"})))
    engine = VideoPropagator(model, build_tracker({"name": "test_prompts_only"}))
    prompts_only = run(engine)
    # the same masks as memory that holds the prompted frames only, with all frames stored
    for t in full:
        assert torch.equal(prompts_only[t], cond_only[t]), t
    assert any(not torch.equal(full[t], cond_only[t]) for t in full)
    assert len(engine.groups[0].bank.non_cond) > 1


def test_the_default_rule_is_sam2s(model):
    assert type(VideoPropagator(model).rule) is TrackerRule
    assert type(build_tracker(None)) is TrackerRule
    assert type(build_tracker({"name": "sam2"})) is TrackerRule


def test_a_rule_that_needs_flow_without_a_provider_is_refused(model):
    class NeedsFlow(TrackerRule):
        needs_flow = True

    with pytest.raises(ValueError, match="NeedsFlow needs optical flow"):
        VideoPropagator(model, NeedsFlow())


def test_a_rule_that_needs_flow_gets_it_from_its_provider(run, model):
    seen = []

    class FlowRule(TrackerRule):
        needs_flow = True

        @staticmethod
        def flow_provider(current, previous):
            return torch.zeros(current.shape[0], 2, *current.shape[-2:])

        def remember(self, bank, frame_idx, entry, out, *, prompted, flow=None):
            seen.append(None if flow is None else tuple(flow.shape))
            super().remember(bank, frame_idx, entry, out, prompted=prompted, flow=flow)

    run(VideoPropagator(model, FlowRule()), 3)
    # frame 0 has no previous frame; then one flow per group of objects
    assert seen == [None, (2, 2, 128, 128), (2, 2, 128, 128)]
