"""`tracker=sam2long`: which pathways survive (certain, uncertain, the first frame), which
frames each pathway's gate keeps and its pointer list, the key scales in rank order, and
output written late from the back-tracked best pathway; each part switches off on its own;
all off it is SAM 2 logit for logit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mosam_train.inference.engine import VideoPropagator
from mosam_train.inference.rules import MemoryBank
from mosam_train.inference.sources import ChunkedFrames, LiveFrames
from mosam_train.models.memory.attention import enable_key_bias, set_key_scale
from mosam_train.models.mosam import MoSAMTracker
from mosam_train.trackers import build_tracker
from mosam_train.trackers.sam2long import (
    SAM2Long,
    SearchSettings,
    keep_pathways,
    rank_scales,
)

OFF = {"pathways": 1, "memory_gate": False, "key_scale": None, "delay": 0}


# ------------------------------------------------------------------ the search
def survivors(parent, ious, obj, first=False, pathways=3):
    s = keep_pathways(
        torch.tensor(parent, dtype=torch.float32),
        torch.tensor(ious),
        torch.tensor(obj),
        SearchSettings(pathways, 2.0),
        first=first,
    )
    return list(zip(s.source[0].tolist(), s.candidate[0].tolist(), strict=True)), s.score


def test_certain_keeps_the_best_cumulative_scores_two_of_one_parent():
    parent = [[0.0, -0.1, -2.0]]
    ious = [[[0.9, 0.8, 0.1], [0.95, 0.2, 0.1], [0.99, 0.9, 0.9]]]
    kept, score = survivors(parent, ious, [[5.0, 4.0, 3.0]])  # |obj| > 2: certain
    # children: (0,0) log .9=-.105, (0,1) -.223, (1,0) -.1-.051=-.151, (2,*) <= -2
    assert kept == [(0, 0), (1, 0), (0, 1)]
    assert torch.allclose(
        score, torch.log(torch.tensor([[0.9, 0.95, 0.8]]) + 1e-5) + torch.tensor([[0.0, -0.1, 0.0]])
    )


def test_uncertain_keeps_distinct_rounded_ious_then_each_unrepresented_parent():
    parent = [[0.0, -0.01, -3.0]]
    # parents 0 and 1 give the same rounded IoUs (0.90, 0.80): the certain rule would keep
    # (0,0), (1,0), (0,1); the uncertain one takes distinct values first
    ious = [[[0.901, 0.802, 0.1], [0.899, 0.798, 0.1], [0.5, 0.4, 0.3]]]
    kept, _ = survivors(parent, ious, [[1.0, 1.5, 0.5]])  # max |obj| 1.5 <= 2: uncertain
    assert kept == [(0, 0), (0, 1), (0, 2)]  # 0.90, 0.80, 0.10 distinct, best first
    # a sign flip (object absent) makes an equal IoU distinct
    kept, _ = survivors(parent, ious, [[1.0, -1.5, 0.5]])
    assert kept == [(0, 0), (1, 0), (0, 1)]
    # fewer distinct values than pathways: then each unrepresented parent's best child
    same = [[[0.9, 0.9, 0.9], [0.9, 0.9, 0.9], [0.9, 0.9, 0.9]]]
    kept, _ = survivors([[0.0, -1.0, -2.0]], same, [[1.0, 1.0, 1.0]])
    assert kept == [(0, 0), (1, 0), (2, 0)]


def test_the_frame_after_the_prompt_starts_the_pathways_from_one_parent():
    ious = [[[0.3, 0.9, 0.6]] * 3]  # the parents are copies
    kept, _ = survivors([[0.0, 0.0, 0.0]], ious, [[5.0, 5.0, 5.0]], first=True)
    assert kept == [(0, 1), (0, 2), (0, 0)]
    # more pathways than candidates: the best one fills the rest
    kept, _ = survivors([[0.0] * 4], [[[0.3, 0.9, 0.6]] * 4], [[5.0] * 4], True, pathways=4)
    assert kept == [(0, 1), (0, 2), (0, 0), (0, 1)]


# ------------------------------------------------------------------ per-pathway memory
def entry(iou, obj, rows=2):
    """A tracked frame's memory entry for `rows` pathways (best_iou, object score per row)."""
    return {
        "maskmem_features": torch.zeros(rows, 1, 1, 1),
        "maskmem_pos_enc": [torch.zeros(rows, 1, 1, 1)],
        "obj_ptr": torch.zeros(rows, 4),
        "object_score_logits": torch.tensor(obj, dtype=torch.float32)[:, None],
        "best_iou": torch.tensor(iou, dtype=torch.float32),
    }


def test_each_pathways_gate_keeps_its_own_frames_and_reads_pointers_from_them():
    rule = SAM2Long(key_scale=None)
    bank = MemoryBank([1])
    bank.cond[0] = entry([1.0, 1.0], [9.0, 9.0])
    for t in range(1, 30):
        bank.non_cond[t] = entry([0.9, 0.9], [3.0, 3.0])
    bank.non_cond[29] = entry([0.1, 0.1], [3.0, 3.0])  # t-1 fails: kept anyway
    bank.non_cond[28] = entry([0.9, 0.2], [3.0, 3.0])  # pathway 1: low IoU
    bank.non_cond[27] = entry([0.9, 0.9], [3.0, -1.0])  # pathway 1: object absent
    bank.non_cond[26] = entry([0.31, 0.3], [3.0, 3.0])  # strict: 0.3 fails
    spatial = rule.select(bank, 30, bank.output_dict)
    frames = sorted(bank.non_cond, reverse=True)

    def kept(index, valid, obj):
        return [frames[int(i)] for i, v in zip(index[:, obj], valid[:, obj], strict=True) if v]

    valid = (
        spatial.valid if spatial.valid is not None else torch.ones_like(spatial.index, dtype=bool)
    )
    assert kept(spatial.index, valid, 0) == [29, 28, 27, 26, 25, 24]
    assert kept(spatial.index, valid, 1) == [29, 25, 24, 23, 22, 21]
    ptr = spatial.pointers
    ptr_valid = ptr.valid if ptr.valid is not None else torch.ones_like(ptr.index, dtype=bool)
    # pointers: the same scan, 15 kept (t-1 on top), with their frame distances
    assert kept(ptr.index, ptr_valid, 0) == [29, *range(28, 14, -1)]
    assert kept(ptr.index, ptr_valid, 1) == [29, *range(25, 11, -1)]
    assert ptr.distance[:15, 1][ptr_valid[:, 1]].tolist() == [1, *range(5, 19)]


def test_key_scales_follow_object_score_rank_with_the_prompted_frames_fixed():
    scores = torch.tensor([[10.0, 10.0, 10.0], [0.5, 1.0, 4.0], [3.0, 1.0, 12.0], [1.0, 0.0, 0.0]])
    valid = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 0, 1], [1, 0, 0]], dtype=torch.bool)
    s = rank_scales(scores, valid, 0.95, 1.05)
    # pathway 0: ranks 3, 0, 2, 1 of four; pathway 1: two items; pathway 2: three
    assert torch.allclose(s[:, 0], torch.tensor([1.05, 0.95, 0.95 + 0.2 / 3, 0.95 + 0.1 / 3]))
    assert torch.allclose(s[:, 1], torch.tensor([1.05, 0.95, 1.0, 1.0]))
    assert torch.allclose(s[:, 2], torch.tensor([1.0, 0.95, 1.05, 1.0]))
    one = rank_scales(torch.tensor([[10.0]]), torch.tensor([[True]]), 0.95, 1.05)
    assert one.item() == 1.0  # a single memory frame: unscaled


def test_a_key_scale_multiplies_the_keys_and_ones_change_nothing(multimask):
    attention = multimask.sam2.memory_attention
    enable_key_bias(attention)
    torch.manual_seed(0)
    c, m = attention.d_model, multimask.sam2.mem_dim
    curr, pos = [torch.randn(64, 1, c)], [torch.randn(64, 1, c)]  # an 8 x 8 frame
    memory, memory_pos = torch.randn(128, 1, m), torch.randn(128, 1, m)  # two frames

    def attend(scale):
        set_key_scale(attention, scale)
        try:
            return attention(curr=curr, curr_pos=pos, memory=memory, memory_pos=memory_pos)
        finally:
            set_key_scale(attention, None)

    plain = attend(None)
    assert torch.equal(attend(torch.ones(1, 128)), plain)
    assert not torch.allclose(attend(torch.full((1, 128), 1.05)), plain)


# ------------------------------------------------------------------ late decisions
def test_each_frame_is_written_late_from_the_backtracked_best_pathway():
    rule = SAM2Long(delay=2)
    bank = MemoryBank([1])
    bank.state = rule.initial_state(1, torch.device("cpu"))
    masks = lambda v: torch.tensor(v, dtype=torch.float32).view(3, 1, 1, 1)  # noqa: E731
    out = {"pred_masks": masks([0, 0, 0]), "object_score_logits": torch.zeros(3, 1)}
    rule.remember(bank, 0, {}, out, prompted=True)
    assert rule.decided(bank, 0, out, last=False) == []
    written = {}
    # frame t: pathway h's mask is 10 * t + h; frame 2 reparents: all continue pathway 2
    for t, source in ((1, None), (2, [2, 2, 2]), (3, [0, 1, 2])):
        out = {
            "pred_masks": masks([10 * t, 10 * t + 1, 10 * t + 2]),
            "object_score_logits": torch.zeros(3, 1),
            "ious": torch.ones(3, 3),
        }
        if source is not None:
            out["source"] = torch.tensor(source)
        bank.state["score"] = torch.tensor([[0.0, -1.0, -2.0]])  # pathway 0 best
        rule.remember(bank, t, {}, out, prompted=False)
        for ft, m, _ in rule.decided(bank, t, out, last=t == 3):
            written[ft] = m.flatten().item()
    # the best pathway at frame 3 is 0; its ancestors: pathway 2 at frame 1 (reparented on
    # frame 2), 20 at frame 2; frame 1 was written at frame 3 (delay 2)
    assert written == {0: 0.0, 1: 12.0, 2: 20.0, 3: 30.0}


@pytest.mark.parametrize("base", ["multimask", "one_mask"])
def test_with_its_parts_off_it_is_sam2_logit_for_logit(request, noise_frames, base, track):
    model = request.getfixturevalue(base)
    frames = noise_frames(10)
    sam2 = track(model, build_tracker({"name": "sam2"}), frames)
    off = track(model, build_tracker({"name": "sam2long", **OFF}), frames)
    for t in sam2:
        assert torch.equal(off[t], sam2[t]), t


def test_the_gate_with_its_tests_off_and_unit_key_scales_reads_sam2s_memory_and_pointers(
    multimask, noise_frames, track
):
    """The explicit per-pathway lists (spatial memory by rank, pointers by distance, key
    scales) of SAM 2's own window equal SAM 2's: the engine seams change nothing by
    themselves."""
    frames = noise_frames(20)
    sam2 = track(multimask, build_tracker({"name": "sam2"}), frames)
    rule = SAM2Long(pathways=1, memory_gate=False, key_scale=[1.0, 1.0], delay=0)
    explicit = track(multimask, rule, frames)
    for t in sam2:
        assert torch.equal(explicit[t], sam2[t]), t


def test_pathways_on_a_one_mask_model_are_refused_naming_the_setting(one_mask):
    with pytest.raises(ValueError, match="multimask_output_for_tracking"):
        VideoPropagator(one_mask, build_tracker({"name": "sam2long"}))


def test_delay_changes_when_frames_are_written_not_what_a_final_pass_writes(
    multimask, noise_frames, track
):
    """The delayed stream equals the back-tracked best path: with a delay as long as the
    video every frame is written at the end from the final best pathway, and a delay of 8
    writes the same frames where the best pathway did not change after them."""
    frames = noise_frames(12)
    final = track(multimask, SAM2Long(delay=12), frames)
    late = track(multimask, SAM2Long(delay=8), frames)
    causal = track(multimask, SAM2Long(delay=0), frames)
    for t in range(4, 12):  # written at the video's end by both
        assert torch.equal(late[t], final[t]), t
    sam2 = track(multimask, build_tracker({"name": "sam2"}), frames)
    assert any(not torch.allclose(final[t], sam2[t]) for t in sam2)
    assert set(causal) == set(final)


def test_objects_tracked_together_get_what_each_gets_alone(multimask, noise_frames, track):
    rule = SAM2Long(delay=3)
    frames = noise_frames(10)
    together = track(multimask, rule, frames, objects=(1, 2))
    sam2 = track(multimask, build_tracker({"name": "sam2"}), frames, objects=(1, 2))
    assert any(not torch.equal(together[t], sam2[t]) for t in sam2)
    for k, obj in enumerate((1, 2)):
        alone = track(multimask, rule, frames, objects=(obj,))
        for t in alone:  # the micro model's logits are small: a tight tolerance
            torch.testing.assert_close(together[t][k], alone[t][0], rtol=0, atol=1e-7)


def test_it_stacks_on_mosam_and_with_its_parts_off_mosam_is_unchanged(micro, noise_frames, track):
    """SAM2Long's search on top of MoSAM (motion prompts, frame and pixel heads): each
    pathway reads its own past; all parts off it is MoSAM under SAM 2's rule exactly."""
    model = MoSAMTracker(
        micro(multimask=True),
        mgp={"sparse": True, "dense": True},
        stms={"stride": 1, "candidates": 6, "top_k": 6, "frame": True, "pixel": True},
    ).eval()
    frames = noise_frames(10)
    sam2 = track(model, build_tracker({"name": "sam2"}), frames, objects=(1, 2))
    off = track(model, build_tracker({"name": "sam2long", **OFF}), frames, objects=(1, 2))
    assert all(torch.equal(off[t], sam2[t]) for t in sam2)
    searched = track(model, SAM2Long(delay=3), frames, objects=(1, 2))
    assert any(not torch.equal(searched[t], sam2[t]) for t in sam2)


def test_frames_written_late_are_read_from_the_video_once():
    """The demo writes each frame's image beside its masks, D frames behind the engine's
    reads: the source keeps the chunk before the current one, so no frame is read twice."""
    reads = []

    def read(ts):
        reads.extend(ts)
        return np.zeros((len(ts), 4, 4, 3), np.uint8)

    frames = ChunkedFrames(read, 40, (4, 4), 8, read_ahead=16)
    for t in range(40):
        frames.rgb(t)  # the engine
        if t >= 8:
            frames.rgb(t - 8)  # a consumer 8 frames late
    assert sorted(reads) == list(range(40))


def test_a_frames_key_scale_lands_on_its_own_tokens():
    """Memory tokens are the prompted frames' then the kept frames' oldest first (h * w
    each): a row's scale covers exactly its frame's tokens."""
    from mosam_train.models.video_sam import SpatialMemory, _spatial_key_scale

    entries = [{"maskmem_features": torch.zeros(1, 3, 2, 2)} for _ in range(2)]
    spatial = SpatialMemory(entries, index=torch.tensor([[1], [0]]))
    spatial.key_scale = torch.tensor([[1.5], [2.0], [3.0]])  # prompted, t-1 row, t-2 row
    scale = _spatial_key_scale(spatial, 4 + 8, torch.device("cpu"))  # one prompted frame
    assert scale.tolist() == [[1.5] * 4 + [3.0] * 4 + [2.0] * 4]


def test_deciding_late_is_refused_on_a_live_source_before_the_first_frame(multimask):
    """A TraX session sends frame t + 1 only after frame t's answer."""
    rgb = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    prompts = {0: {1: np.pad(np.ones((20, 20), bool), 22)}}

    def live(delay: int) -> int:
        source = LiveFrames((64, 64), 128)
        rule = build_tracker({"name": "sam2long", "delay": delay})
        stream = iter(VideoPropagator(multimask, rule).propagate(source, prompts))
        for frame in rgb:
            source.push(frame)
            next(stream)
        return source.received

    with pytest.raises(ValueError, match=r"masks 2 frames late.*Fix: tracker.delay=0"):
        live(2)
    assert live(0) == 3
