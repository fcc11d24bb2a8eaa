"""`tracker=dam4sam`: which frames its recent-appearance memory keeps, when a frame enters
its distractor-resolving memory, per object; each part switches off on its own; all off it
is SAM 2 logit for logit."""

from __future__ import annotations

import pytest
import torch

from mosam_train.inference.engine import VideoPropagator
from mosam_train.inference.rules import MemoryBank
from mosam_train.models.video_sam import Candidates, SpatialMemory, VideoSAM
from mosam_train.trackers import build_tracker
from mosam_train.trackers.dam4sam import NEVER, Dam4Sam, distractor_ious, recent_memory

OFF = {"stride_rule": False, "skip_empty": False, "drm": False}


# ------------------------------------------------------------------ parity with SAM 2
@pytest.mark.parametrize("base", ["multimask", "one_mask"])
def test_with_its_parts_off_it_is_sam2_logit_for_logit(request, noise_frames, base, track):
    model = request.getfixturevalue(base)
    frames = noise_frames(10)
    sam2 = track(model, build_tracker({"name": "sam2"}), frames, objects=(1, 2))
    dam = track(model, build_tracker({"name": "dam4sam", **OFF}), frames, objects=(1, 2))
    for t in sam2:
        assert torch.equal(dam[t], sam2[t]), t


def test_ram_without_its_rules_and_an_empty_drm_is_sam2s_window(one_mask, noise_frames, track):
    """Through the rule's own memory assembly: t-1 ... t-6 by rank, as SAM 2's window."""
    frames = noise_frames(10)
    sam2 = track(one_mask, build_tracker({"name": "sam2"}), frames, objects=(1, 2))
    rule = Dam4Sam(stride_rule=False, skip_empty=False, drm_iou=2.0, distractor_test=False)
    dam = track(one_mask, rule, frames, objects=(1, 2))
    for t in sam2:
        torch.testing.assert_close(dam[t], sam2[t], rtol=0, atol=1e-4)


def test_the_distractor_test_on_a_one_mask_model_is_refused_naming_the_setting(one_mask):
    with pytest.raises(ValueError, match=r"Dam4Sam chooses.*multimask_output_for_tracking=true"):
        VideoPropagator(one_mask, Dam4Sam())
    VideoPropagator(one_mask, Dam4Sam(distractor_test=False))  # reliable-only: any model


# ------------------------------------------------------------------ recent-appearance memory
def ram(t, empty=(), drm=(), slots=(6,), stride=5, skip_empty=True, first=1) -> list[list[int]]:
    """Each object's RAM frames for tracked frame t over tracked frames first .. t-1, most
    recent first; `empty` / `drm`: per object, frames with an empty mask / in its DRM."""
    n = len(slots)
    empty = list(empty) or [()] * n
    drm = list(drm) or [()] * n
    frames = list(range(t - 1, first - 1, -1))
    pixels = torch.tensor([[0 if f in empty[j] else 50 for j in range(n)] for f in frames])
    in_drm = torch.tensor([[f in drm[j] for j in range(n)] for f in frames])
    keep = recent_memory(t, frames, pixels, in_drm, torch.tensor(slots), stride, skip_empty)
    return [[f for f, k in zip(frames, keep[:, j], strict=True) if k] for j in range(n)]


def test_ram_keeps_t_minus_1_then_sam2s_stride_steps():
    assert ram(40) == [[39, 35, 30, 25, 20, 15]]
    assert ram(36) == [[35, 30, 25, 20, 15, 10]]  # ((35 - 1) // 5) * 5 = 30
    assert ram(12) == [[11, 10, 5]]  # fewer frames than slots: frame 0 is the prompt's
    assert ram(40, stride=1) == [list(range(39, 33, -1))]  # stride rule off: every frame


def test_ram_skips_empty_frames_and_starts_at_the_most_recent_non_empty():
    assert ram(40, empty=[(39, 30)]) == [[38, 35, 25, 20, 15, 10]]
    assert ram(40, empty=[(39, 38, 37, 36)]) == [[35, 30, 25, 20, 15, 10]]
    # skip-empty off: t-1 and the stride frames whether empty or not
    assert ram(40, empty=[(39, 30)], skip_empty=False) == [[39, 35, 30, 25, 20, 15]]
    assert ram(40, empty=[(39, 38, 37)], stride=1) == [[36, 35, 34, 33, 32, 31]]


def test_ram_skips_drm_frames_but_never_t_minus_1_and_has_what_the_drm_leaves():
    assert ram(40, drm=[(35, 20)], slots=(4,)) == [[39, 30, 25, 15]]
    assert ram(40, drm=[(39,)], slots=(5,)) == [[39, 35, 30, 25, 20]]  # t-1: not yet in DRM
    # objects apart: each its own empties, DRM and slot count
    assert ram(40, empty=[(), (39,)], drm=[(30,), ()], slots=(6, 3)) == [
        [39, 35, 25, 20, 15, 10],
        [38, 35, 30],
    ]


# ------------------------------------------------------------------ DRM admission
def state_with(rule: Dam4Sam, sizes: list[list[tuple[int, int]]], last_added: list[int]):
    """A rule state whose objects have mask sizes (frame, size), most recent first."""
    state = rule.initial_state(len(sizes), torch.device("cpu"))
    for j, history in enumerate(sizes):
        for k, (f, s) in enumerate(history):
            state["sizes"][j, k] = s
            state["size_frames"][j, k] = f
    state["last_added"] = torch.tensor(last_added)
    return state


def test_a_frame_is_reliable_on_iou_size_band_and_gap():
    rule = Dam4Sam()
    history = [(f, 100) for f in range(29, 19, -1)]
    state = state_with(rule, [history] * 8, [0] * 7 + [25])
    iou = torch.tensor([0.81, 0.80, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    pixels = torch.tensor([100, 100, 120, 121, 80, 79, 0, 100])
    # iou > 0.8 strict; ratio 1.2 and 0.8 pass, beyond fails; empty fails; gap 30 - 25 = 5 fails
    assert rule.admissible(state, 30, iou, pixels).tolist() == [1, 0, 1, 0, 1, 0, 0, 0]
    assert rule.admissible(state, 31, iou, pixels)[-1]  # gap 6


def test_the_size_median_reads_the_last_ten_non_empty_sizes_of_the_last_300_frames():
    rule = Dam4Sam()
    recent = [(300 - k, 50) for k in range(4)]
    old = [(90, 500), (80, 500), (70, 500), (60, 500), (50, 500), (40, 500)]
    state = state_with(rule, [recent + old, []], [0, 0])
    iou = torch.tensor([0.9, 0.9])
    # frame 391: sizes of frames 92 on count, the median is 50; no history: not reliable
    assert rule.admissible(state, 391, iou, torch.tensor([50, 50])).tolist() == [True, False]
    # frame 350: frames 60-90 count too, the median of 4 x 50 and 4 x 500 is 275
    assert not rule.admissible(state, 350, iou, torch.tensor([50, 50]))[0]
    assert rule.admissible(state, 350, iou, torch.tensor([275, 50]))[0]
    rule._record_size(state, 391, torch.tensor([0, 60]))  # empty frames are not recorded
    assert state["sizes"][0, 0] == 50 and state["sizes"][1, 0] == 60
    assert state["size_frames"][1, 0] == 391


def blocks(size: int, *boxes: tuple[int, int, int, int]) -> torch.Tensor:
    """Mask logits [size, size] of the union of boxes (y1, y2, x1, x2, exclusive ends)."""
    m = torch.full((size, size), -10.0)
    for y1, y2, x1, x2 in boxes:
        m[y1:y2, x1:x2] = 10.0
    return m


def test_the_distractor_test_grows_the_box_by_the_largest_extra_component():
    target = (10, 20, 10, 20)
    far = (40, 50, 40, 50)  # a separate object: the union's box is much larger
    speck = (60, 61, 60, 61)  # one pixel even farther: not the largest component
    near = (10, 20, 20, 22)  # a thin extension: the box grows by 20 %
    masks = torch.stack(
        [
            torch.stack([blocks(64, target), blocks(64, target, far, speck), blocks(64, near)]),
            torch.stack([blocks(64, target), blocks(64, target, near), blocks(64, target)]),
        ]
    )
    ious = distractor_ious(masks, torch.tensor([0, 0]))
    # object 1: box(target) 10 x 10 against box(target + far) 40 x 40; object 2: 10 x 12
    assert ious.tolist() == pytest.approx([100 / 1600, 100 / 120])
    # the chosen one can be any candidate: an alternative that adds nothing scores 1
    assert distractor_ious(masks[1:, [2, 0]], torch.tensor([0])).tolist() == [1.0]


def fake_out(masks: torch.Tensor, ious: list[list[float]], choice: list[int]) -> dict:
    """A tracked frame's output with candidates: masks [N, M, S, S], ious [N, M]."""
    n, m = masks.shape[:2]
    iou = torch.tensor(ious)
    chosen = torch.tensor(choice)
    cands = Candidates(
        torch.zeros(n, m, 1, 1), masks, iou, torch.ones(n, 1), torch.zeros(n, m, 4), chosen
    )
    high = Candidates.take(masks, chosen)[:, None]
    return {"pred_masks_high_res": high, "ious": iou, "candidates": cands, "choice": chosen}


def entry(frame: int, n: int = 2) -> dict:
    return {
        "maskmem_features": torch.full((n, 1, 1, 1), float(frame)),
        "maskmem_pos_enc": [torch.zeros(n, 1, 1, 1)],
        "obj_ptr": torch.zeros(n, 4),
    }


def test_a_reliable_frame_enters_an_objects_drm_only_with_a_distractor_beside_it():
    rule = Dam4Sam()
    bank = MemoryBank([1, 2], state=rule.initial_state(2, torch.device("cpu")))
    target, far = (10, 20, 10, 20), (40, 50, 40, 50)
    lone = torch.stack([blocks(64, target)] * 3)
    with_distractor = torch.stack([blocks(64, target), blocks(64, target, far), lone[0]])
    prompt = fake_out(torch.stack([lone, lone]), [[1, 1, 1]] * 2, [0, 0])
    rule.remember(bank, 0, entry(0), prompt, prompted=True)
    for t in range(1, 6):  # within the gap after the prompt: nothing enters
        out = fake_out(torch.stack([with_distractor, lone]), [[0.9, 0.5, 0.5]] * 2, [0, 0])
        rule.remember(bank, t, entry(t), out, prompted=False)
        assert not bank.non_cond[t]["in_drm"].any()
    out = fake_out(torch.stack([with_distractor, lone]), [[0.9, 0.5, 0.5]] * 2, [0, 0])
    rule.remember(bank, 6, entry(6), out, prompted=False)
    assert bank.non_cond[6]["in_drm"].tolist() == [True, False]  # object 2: no distractor
    assert bank.state["drm_frames"][:, 0].tolist() == [6, NEVER]
    assert list(bank.state["drm_entries"]) == [6]
    # the distractor test off (DAM4SAM's reliable-only): object 2 enters as well
    loose = Dam4Sam(distractor_test=False)
    assert not loose.needs_candidates and Dam4Sam().needs_candidates
    bank2 = MemoryBank([1, 2], state=loose.initial_state(2, torch.device("cpu")))
    loose.remember(bank2, 0, entry(0), prompt, prompted=True)
    loose.remember(bank2, 6, entry(6), out, prompted=False)
    assert bank2.non_cond[6]["in_drm"].tolist() == [True, True]


def test_the_drm_attends_the_cap_most_recent_admitted_before_t_minus_1():
    rule = Dam4Sam(drm_cap=2)
    state = rule.initial_state(2, torch.device("cpu"))
    for t, who in ((10, [1, 1]), (20, [1, 0]), (30, [1, 1]), (40, [1, 0])):
        rule._add_to_drm(state, t, entry(t), torch.tensor(who, dtype=torch.bool))
    assert state["drm_frames"].tolist() == [[40, 30, 20], [30, 10, NEVER]]
    assert sorted(state["drm_entries"]) == [10, 20, 30, 40]
    assert rule.attended_drm(state, 50).tolist() == [[40, 30], [30, 10]]
    assert rule.attended_drm(state, 41).tolist() == [[30, 20], [30, 10]]  # t-1 = 40: RAM's
    rule._add_to_drm(state, 50, entry(50), torch.tensor([True, False]))
    assert sorted(state["drm_entries"]) == [10, 30, 40, 50]  # 20 left every object's DRM


def test_select_gives_ram_by_rank_and_drm_in_the_prompted_frames_slot():
    rule = Dam4Sam(drm_cap=2)
    bank = MemoryBank([1, 2], state=rule.initial_state(2, torch.device("cpu")))
    for t in range(1, 40):
        e = entry(t)
        e["pixels"] = torch.tensor([50, 0 if t == 39 else 50])
        e["in_drm"] = torch.tensor([t in (12, 24), t == 24])
        bank.non_cond[t] = e
        if e["in_drm"].any():
            rule._add_to_drm(bank.state, t, e, e["in_drm"])
    sel = rule.select(bank, 40, bank.output_dict)
    frame = sel.gather(lambda e: e["maskmem_features"][:, 0, 0, 0], torch.device("cpu"))
    valid = sel.valid if sel.valid is not None else torch.ones_like(frame, dtype=torch.bool)
    columns = [(frame[:, j], sel.slots[:, j], valid[:, j]) for j in (0, 1)]
    rows = [[(int(f), int(s)) for f, s, v in zip(*columns[j], strict=True) if v] for j in (0, 1)]
    assert rows == [
        [(39, 1), (35, 2), (30, 3), (25, 4), (24, 0), (12, 0)],
        [(38, 1), (35, 2), (30, 3), (25, 4), (20, 5), (24, 0)],
    ]
    # RAM reaches back to its oldest frame (20), whatever the model would keep
    assert rule.horizon(bank, 40, (34, 25)) == (20, 25)


def test_the_model_gives_slot_0_the_prompted_frames_temporal_encoding(micro):
    model = VideoSAM(micro())
    tpos = model.sam2.maskmem_tpos_enc[:, 0, 0]
    c, last = tpos.shape[1], model.sam2.num_maskmem - 1

    def ent(value: float) -> dict:
        return {
            "maskmem_features": torch.full((1, c, 1, 1), value),
            "maskmem_pos_enc": [torch.zeros(1, c, 1, 1)],
        }

    bank = {"cond_frame_outputs": {0: ent(-1.0)}, "non_cond_frame_outputs": {}}
    spatial = SpatialMemory([ent(9.0), ent(3.0)], slots=torch.tensor([1, 0]))
    memory, pos = model._spatial_memory(10, bank, spatial, torch.device("cpu"))
    assert memory[:, 0, 0].tolist() == [-1, 3, 9]
    assert torch.equal(pos[:, 0], tpos[[last, last, 0]])


# ------------------------------------------------------------------ multi-object, end to end
def test_objects_tracked_together_get_what_each_gets_alone(multimask, noise_frames, track):
    """Per-object RAM and DRM (uneven rows masked): an object of a group tracks as alone.
    Loosened admission so that the micro base's frames enter the DRM."""
    rule = Uneven(stride=2, drm_iou=-1.0, size_band=10.0, drm_gap=1, drm_cap=2, anchor_iou=1.0)
    rule.remember = spy_remember(rule, admitted := [])
    frames = noise_frames(12)
    together = track(multimask, rule, frames, objects=(1, 2))
    assert sum(admitted) >= 4 and any(a == 1 for a in admitted)  # object 2 admits fewer
    sam2 = track(multimask, build_tracker({"name": "sam2"}), frames, objects=(1, 2))
    assert any(not torch.allclose(together[t], sam2[t]) for t in sam2)
    for k, obj in enumerate((1, 2)):
        alone = track(multimask, rule, frames, objects=(obj,))
        for t in alone:
            torch.testing.assert_close(together[t][k], alone[t][0], rtol=0, atol=1e-4)


class Uneven(Dam4Sam):
    """Dam4Sam on which object 2 admits only every third frame (the micro base's frames
    all look alike to the tests), so the objects' DRMs differ."""

    def _admit(self, bank, frame_idx, out, pixels):
        admit = super()._admit(bank, frame_idx, out, pixels)
        return admit & ((torch.tensor(bank.object_ids) == 1) | (frame_idx % 3 == 0))


def spy_remember(rule: Dam4Sam, admitted: list[int]):
    remember = rule.remember

    def spy(bank, t, entry, out, *, prompted, flow=None, truth=None):
        remember(bank, t, entry, out, prompted=prompted, flow=flow)
        if not prompted:
            admitted.append(int(bank.non_cond[t]["in_drm"].sum()))

    return spy
