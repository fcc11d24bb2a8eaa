"""`tracker=samurai`: its decisions are its parts' (Kalman candidate choice, memory gate),
per object; each part switches off on its own; both off it is SAM 2 logit for logit."""

from __future__ import annotations

import math

import pytest
import torch

from mosam_train.inference.engine import VideoPropagator
from mosam_train.inference.rules import MemoryBank
from mosam_train.models.video_sam import Candidates, SpatialMemory
from mosam_train.trackers import build_tracker
from mosam_train.trackers.kalman import MotionState
from mosam_train.trackers.samurai import Samurai

NAN = math.nan
OFF = {"motion": False, "memory_gate": False}


# ------------------------------------------------------------------ parity with SAM 2
@pytest.mark.parametrize(
    ("base", "settings"),
    [
        ("multimask", OFF),
        ("one_mask", OFF),
        ("multimask", {"kf_weight": 0.0, "memory_gate": False}),  # the filter runs, unused
    ],
    ids=["both-off", "both-off-one-mask", "motion-weight-0"],
)
def test_with_its_parts_off_it_is_sam2_logit_for_logit(
    request, noise_frames, base, settings, track
):
    model = request.getfixturevalue(base)
    frames = noise_frames(10)
    sam2 = track(model, build_tracker({"name": "sam2"}), frames)
    samurai = track(model, build_tracker({"name": "samurai", **settings}), frames)
    for t in sam2:
        assert torch.equal(samurai[t], sam2[t]), t


def test_the_gate_with_its_tests_off_is_sam2s_window(one_mask, noise_frames, track):
    frames = noise_frames(10)
    sam2 = track(one_mask, build_tracker({"name": "sam2"}), frames)
    rule = Samurai(motion=False, gate_iou=None, gate_object_score=None, gate_kf_iou=None)
    gated = track(one_mask, rule, frames)
    for t in sam2:
        torch.testing.assert_close(gated[t], sam2[t], rtol=0, atol=1e-4)


def test_motion_scoring_on_a_one_mask_model_is_refused_naming_the_setting(one_mask):
    with pytest.raises(ValueError, match=r"Samurai chooses.*multimask_output_for_tracking=true"):
        VideoPropagator(one_mask, Samurai())
    assert not Samurai(motion=False).needs_candidates  # the gate alone runs there
    VideoPropagator(one_mask, Samurai(motion=False))


# ------------------------------------------------------------------ motion scoring
def candidates(boxes: list[list[list[int]]], ious: list[list[float]], size: int = 64):
    """Candidates of N objects: each candidate's mask the box (x1, y1, x2, y2, inclusive)."""
    n, m = len(boxes), len(boxes[0])
    masks = torch.full((n, m, size, size), -10.0)
    for i, row in enumerate(boxes):
        for j, (x1, y1, x2, y2) in enumerate(row):
            masks[i, j, y1 : y2 + 1, x1 : x2 + 1] = 10.0
    iou = torch.tensor(ious)
    zeros = torch.zeros(n, m, 1, 1)
    return Candidates(zeros, masks, iou, torch.ones(n, 1), torch.zeros(n, m, 4), iou.argmax(1))


def moving(t: int) -> list[int]:
    """The object's box on frame t: 2 px right per frame."""
    return [4 + 2 * t, 10, 14 + 2 * t, 30]


FAR = [44, 40, 60, 60]


def test_the_kalman_score_picks_the_candidate_where_the_object_moves():
    rule = Samurai(kf_weight=0.5, stable_frames=3, memory_gate=False)
    bank = MemoryBank([1], state=rule.initial_state(1, torch.device("cpu")))
    picks = []
    for t in range(1, 6):  # warm-up and stable: the moving box is also the best IoU
        picks.append(int(rule.choose(bank, t, candidates([[moving(t), FAR]], [[0.9, 0.5]]))))
    assert picks == [0] * 5 and bank.state["stable_frames"].tolist() == [3]
    # a far candidate of higher predicted IoU: SAM 2 takes it, the Kalman score does not
    c = candidates([[FAR, moving(6)]], [[0.95, 0.85]])
    assert c.sam2_choice.tolist() == [0]
    assert rule.choose(bank, 6, c).tolist() == [1]
    assert bank.state["pending_kf_iou"].item() > 0.8
    # with the weight at 0 the same filter leaves SAM 2's choice
    rule0 = Samurai(kf_weight=0.0, stable_frames=3, memory_gate=False)
    bank0 = MemoryBank([1], state=rule0.initial_state(1, torch.device("cpu")))
    for t in range(1, 6):
        rule0.choose(bank0, t, candidates([[moving(t), FAR]], [[0.9, 0.5]]))
    assert rule0.choose(bank0, 6, c).tolist() == [0]


def test_each_object_has_its_own_filter_and_one_reset_leaves_the_other_alone():
    rule = Samurai(stable_frames=3, memory_gate=False)
    both = MemoryBank([1, 2], state=rule.initial_state(2, torch.device("cpu")))
    alone = MemoryBank([1], state=rule.initial_state(1, torch.device("cpu")))
    for t in range(1, 8):
        low = 0.1 if t == 4 else 0.9  # object 2's mask turns unreliable on frame 4: reset
        rule.choose(both, t, candidates([[moving(t), FAR], [FAR, moving(t)]], [[0.9, 0.5], [low, 0.2]]))  # fmt: skip
        rule.choose(alone, t, candidates([[moving(t), FAR]], [[0.9, 0.5]]))
        one = MotionState.from_state({k: v[:1] for k, v in both.state.items()})
        ref = MotionState.from_state(alone.state)
        assert torch.equal(one.mean, ref.mean) and torch.equal(one.covariance, ref.covariance)
        assert torch.equal(one.stable_frames, ref.stable_frames)
        if t == 4:
            assert both.state["stable_frames"].tolist() == [3, 0]
    # a new video starts every filter afresh
    assert rule.initial_state(2, torch.device("cpu"))["stable_frames"].tolist() == [0, 0]


def test_on_a_video_the_choice_is_the_kalman_scores_and_memory_keeps_the_chosen_iou(
    multimask, noise_frames, track, video_prompts
):
    rule = Samurai(kf_weight=1.0, stable_frames=1, stable_iou=0.0)
    seen = []
    choose = rule.choose

    def spy(bank, t, cands):
        choice = choose(bank, t, cands)
        seen.append((cands.sam2_choice, choice))
        return choice

    rule.choose = spy
    frames = noise_frames(8)
    engine = VideoPropagator(multimask, rule)
    logits = {r.frame_idx: r.logits for r in engine.propagate(frames, video_prompts())}
    sam2 = track(multimask, build_tracker({"name": "sam2"}), frames)
    assert any(not torch.equal(ours, theirs) for ours, theirs in seen)  # not SAM 2's choice
    assert any(not torch.equal(logits[t], sam2[t]) for t in sam2)
    for g in engine.groups:
        assert g.bank.state["kf_mean"].shape == (len(g.object_ids), 8)
        for entry in g.bank.non_cond.values():
            if "maskmem_features" in entry:
                assert entry["best_iou"].shape == entry["kf_iou"].shape == (len(g.object_ids),)


# ------------------------------------------------------------------ memory gate
GOOD = (0.9, 2.0, NAN)  # (best_iou, object score, kf_iou): passes


def bank_of(per_frame: dict[int, list[tuple[float, float, float]]]) -> MemoryBank:
    """Two objects; tracked frame t's features are filled with t."""
    bank = MemoryBank([1, 2])
    bank.cond[0] = {"maskmem_features": torch.zeros(2, 4, 2, 2)}
    for t, values in per_frame.items():
        iou, obj, kf = (torch.tensor(v) for v in zip(*values, strict=True))
        bank.non_cond[t] = {
            "maskmem_features": torch.full((2, 4, 2, 2), float(t)),
            "best_iou": iou,
            "object_score_logits": obj[:, None],
            "kf_iou": kf.double(),
        }
    return bank


def kept(selection: SpatialMemory) -> list[list[int]]:
    frame = selection.gather(lambda e: e["maskmem_features"][:, 0, 0, 0], torch.device("cpu"))
    valid = selection.valid if selection.valid is not None else torch.ones_like(frame) > 0
    return [[int(t) for t, v in zip(frame[:, j], valid[:, j], strict=True) if v] for j in (0, 1)]


def test_the_gate_keeps_each_objects_passing_frames_and_t_minus_1():
    per_frame = {t: [GOOD, GOOD] for t in range(1, 12)}
    per_frame[10] = [(0.4, 2.0, NAN), GOOD]  # low IoU: object 1 skips it
    per_frame[8] = [GOOD, (0.9, -1.0, NAN)]  # object 2 absent
    per_frame[7] = [GOOD, (0.9, 2.0, 0.0)]  # object 2's mask off the Kalman prediction
    per_frame[11] = [(0.1, -3.0, 0.0), GOOD]  # t-1 fails for object 1: kept all the same
    rule = Samurai(motion=False)
    bank = bank_of(per_frame)
    assert kept(rule.select(bank, 12, bank.output_dict)) == [
        [11, 9, 8, 7, 6, 5],
        [11, 10, 9, 6, 5, 4],
    ]
    # thresholds are settings: the Kalman test off keeps object 2's frame 7
    loose = Samurai(motion=False, gate_kf_iou=None)
    assert kept(loose.select(bank, 12, bank.output_dict))[1] == [11, 10, 9, 7, 6, 5]
    # objects keeping different numbers of frames: object 2 has only two passing frames
    few = bank_of({t: [GOOD, GOOD if t in (3, 9) else (0.1, 2.0, NAN)] for t in range(1, 12)})
    sel = rule.select(few, 12, few.output_dict)
    assert kept(sel) == [[11, 10, 9, 8, 7, 6], [11, 9, 3]] and sel.valid is not None
    # the gate off: SAM 2's memory
    assert Samurai(motion=False, memory_gate=False).select(bank, 12, bank.output_dict) is None


def test_memory_reaches_as_far_back_as_the_gate_can_still_keep():
    # object 2 passes on frames 2, 5, 9 only: its 6-frame memory still needs frame 2
    per_frame = {t: [GOOD, GOOD if t in (2, 5, 9) else (0.1, 2.0, NAN)] for t in range(1, 20)}
    bank = bank_of(per_frame)
    rule = Samurai(motion=False)
    model_horizon = (14, 5)
    assert rule.horizon(bank, 20, model_horizon) == (2, 5)
    assert Samurai(motion=False, memory_gate=False).horizon(bank, 20, model_horizon) == (14, 5)


def test_the_gate_alone_on_a_one_mask_model_reads_sam2s_iou(
    one_mask, noise_frames, monkeypatch, video_prompts
):
    engine = VideoPropagator(one_mask, Samurai(motion=False))
    outs = []
    track = one_mask.track

    def spy(*args, **kwargs):
        out = track(*args, **kwargs)
        outs.append(out)
        return out

    monkeypatch.setattr(one_mask, "track", spy)
    list(engine.propagate(noise_frames(10), video_prompts((1, 2))))
    bank = engine.groups[0].bank
    entries = {t: e for t, e in bank.non_cond.items() if "maskmem_features" in e}
    assert entries
    for t, e in entries.items():
        assert torch.equal(e["best_iou"], outs[t]["ious"][:, 0])
        assert e["kf_iou"].isnan().all()  # no filter: the Kalman test is skipped


# ------------------------------------------------------------------ multi-object
class Flaky(Samurai):
    """Samurai on which object 2's odd frames look unreliable (predicted IoU 0): object 2
    keeps fewer memory frames than object 1 (the micro base's IoUs are all alike)."""

    def remember(self, bank, frame_idx, entry, out, *, prompted, flow=None, truth=None):
        super().remember(bank, frame_idx, entry, out, prompted=prompted, flow=flow)
        if not prompted and frame_idx % 2:
            flaky = torch.tensor(bank.object_ids) == 2
            e = bank.non_cond[frame_idx]
            e["best_iou"] = torch.where(flaky, 0.0, e["best_iou"])


def test_objects_tracked_together_get_what_each_gets_alone(multimask, noise_frames, track):
    """Per-object filters and per-object gated memory (uneven rows masked): an object of a
    group tracks as it does alone."""
    rule = Flaky(kf_weight=1.0, stable_frames=2, stable_iou=0.0, gate_iou=0.3)
    uneven = []
    select = rule.select

    def spy(bank, t, memory):
        out = select(bank, t, memory)
        uneven.append(out is not None and out.valid is not None)
        return out

    rule.select = spy
    frames = noise_frames(12)
    together = track(multimask, rule, frames, objects=(1, 2))
    assert sum(uneven) >= 5  # object 2 kept fewer frames on most frames
    sam2 = track(multimask, build_tracker({"name": "sam2"}), frames, objects=(1, 2))
    assert any(not torch.allclose(together[t], sam2[t]) for t in sam2)
    for k, obj in enumerate((1, 2)):
        alone = track(multimask, rule, frames, objects=(obj,))
        for t in alone:
            torch.testing.assert_close(together[t][k], alone[t][0], rtol=0, atol=1e-4)
