"""`tracker=oracle`: which past frames each score keeps per object, the temporal slots they
take, the ground truth it needs, and recency with SAM 2's window being SAM 2 exactly."""

import logging
import math
import re

import numpy as np
import pytest
import torch

from mosam_train.data.formats.davis import read_davis
from mosam_train.inference.engine import VideoPropagator
from mosam_train.inference.rules import MemoryBank
from mosam_train.inference.sources import RecordFrames
from mosam_train.inference.vos import first_appearance_prompts
from mosam_train.models.memory.selection import MemorySelection, warn_if_within_window
from mosam_train.models.video_sam import SpatialMemory, VideoSAM
from mosam_train.trackers import build_tracker
from mosam_train.trackers.oracle import Oracle, truth_scores

NAN = math.nan


def bank_of(frames: dict[int, list[tuple[float, float]]]) -> MemoryBank:
    """Two objects; tracked frame t's entry has features filled with t and, per object,
    (true IoU, present)."""
    bank = MemoryBank([1, 2])
    bank.cond[0] = {"maskmem_features": torch.zeros(2, 4, 2, 2)}
    for t, scores in frames.items():
        bank.non_cond[t] = {
            "maskmem_features": torch.full((2, 4, 2, 2), float(t)),
            "true_iou": torch.tensor([s[0] for s in scores]),
            "true_present": torch.tensor([s[1] for s in scores]),
        }
    return bank


def kept(selection: SpatialMemory) -> list[list[int]]:
    """Per object, the frames kept, most recent first."""
    frame = selection.gather(lambda e: e["maskmem_features"][:, 0, 0, 0], torch.device("cpu"))
    return [[int(t) for t in frame[:, j]] for j in range(frame.shape[1])]


def select(rule: Oracle, bank: MemoryBank, t: int) -> SpatialMemory:
    return rule.select(bank, t, bank.output_dict)


# frames 1..10 for a frame t = 11; (IoU, present) of objects 1 and 2
SCENE = {
    10: [(0.1, 1), (0.1, 1)],  # t-1: the worst, kept all the same
    9: [(0.5, 1), (0.9, 1)],
    8: [(1.0, 0), (1.0, 0)],  # hidden and predicted empty: IoU 1, but no memory of it
    7: [(0.8, 1), (0.2, 1)],
    6: [(0.3, 1), (0.3, 1)],
    5: [(0.2, 1), (0.2, 1)],
    4: [(0.2, 1), (0.6, 1)],
    3: [(0.9, 1), (0.2, 1)],
    2: [(NAN, NAN), (NAN, NAN)],  # not annotated
    1: [(0.0, 1), (0.0, 1)],
}


def test_true_iou_keeps_t_minus_1_and_each_objects_best_frames():
    rule = Oracle(score="iou", stride=1, candidates=10, top_k=4)
    assert kept(select(rule, bank_of(SCENE), 11)) == [[10, 8, 7, 3], [10, 9, 8, 4]]


def test_visibility_aware_iou_gives_frames_without_the_object_nothing():
    rule = Oracle(score="visible_iou", stride=1, candidates=10, top_k=4)
    assert kept(select(rule, bank_of(SCENE), 11)) == [[10, 9, 7, 3], [10, 9, 6, 4]]


def test_recency_keeps_the_most_recent_and_prompt_keeps_none():
    bank = bank_of(SCENE)
    assert (
        kept(select(Oracle(score="recency", stride=1, candidates=10, top_k=3), bank, 11))
        == [[10, 9, 8]] * 2
    )
    assert select(Oracle(score="prompt"), bank, 11).entries == []


def test_unannotated_frames_rank_below_annotated_ones_and_ties_go_to_the_recent():
    scene = {t: [(0.0, 1), (0.0, 1)] for t in range(1, 11)}
    scene[2] = [(NAN, NAN), (NAN, NAN)]
    rule = Oracle(score="iou", stride=1, candidates=10, top_k=9)
    assert kept(select(rule, bank_of(scene), 11))[0] == [10, 9, 8, 7, 6, 5, 4, 3, 1]
    rule = Oracle(score="iou", stride=1, candidates=10, top_k=3)
    assert kept(select(rule, bank_of(scene), 11))[0] == [10, 9, 8]


def test_strided_candidates_always_start_at_t_minus_1():
    assert Oracle(stride=4, candidates=3).candidates(20) == [19, 16, 12, 8]
    assert Oracle(stride=1, candidates=3).candidates(20) == [19, 18, 17]
    assert Oracle(stride=4, candidates=3).candidates(5) == [4, 1]
    # t-1 is kept although every other candidate scores higher; only candidates count
    rule = Oracle(score="iou", stride=2, candidates=4, top_k=2)
    assert kept(select(rule, bank_of(SCENE), 11)) == [[10, 3], [10, 9]]


def test_without_keep_previous_t_minus_1_competes_like_the_others():
    rule = Oracle(score="iou", stride=1, candidates=10, top_k=4, keep_previous=False)
    assert kept(select(rule, bank_of(SCENE), 11)) == [[9, 8, 7, 3], [9, 8, 6, 4]]
    assert 10 in Oracle(stride=4, candidates=3, keep_previous=False).candidates(11)


def test_frames_below_min_score_are_left_out_and_pointers_can_follow_the_kept_frames():
    bank = bank_of(SCENE)
    memory = select(Oracle(score="iou", stride=1, candidates=10, top_k=4, min_score=0.5), bank, 11)
    assert kept(memory) == [[10, 8, 7, 3], [10, 9, 8, 4]]  # t-1 forced in, then left out
    assert memory.valid.T.tolist() == [[False, True, True, True], [False, True, True, True]]
    assert memory.pointers is None  # SAM 2's pointer rule
    rule = Oracle(score="visible_iou", stride=1, candidates=10, top_k=4, min_score=0.5)
    memory = select(rule, bank, 11)
    assert kept(memory) == [[10, 9, 7, 3], [10, 9, 6, 4]]
    assert memory.valid.T.tolist() == [[False, True, True, True], [False, True, False, True]]
    rule = Oracle(
        score="visible_iou", stride=1, candidates=10, top_k=4, min_score=0.5, pointers="kept"
    )
    memory = select(rule, bank, 11)
    pointers = memory.pointers
    assert pointers.entries is memory.entries and torch.equal(pointers.index, memory.index)
    assert pointers.distance.T.tolist() == [[1, 2, 4, 8], [1, 2, 5, 7]]
    assert torch.equal(pointers.valid, memory.valid)
    # recency keeps the same frames for every object: the pointers are theirs
    recent = select(
        Oracle(score="recency", stride=1, candidates=10, top_k=3, pointers="kept"), bank, 11
    )
    assert recent.pointers.distance.T.tolist() == [[1, 2, 3]] * 2


def test_window_pointers_are_sam2s_window_without_the_frames_below_min_score():
    # frames 1..17 before t = 18: SAM 2's pointer window is 17 ... 3 (fifteen frames)
    scene = {t: [(0.9, 1), (0.9, 1)] for t in range(1, 18)}
    scene[16] = [(0.1, 1), (0.9, 1)]  # object 1's t-2 is wrong
    scene[4] = [(0.9, 1), (0.2, 1)]  # object 2's t-14 is wrong
    scene[2] = [(0.0, 1), (0.0, 1)]  # beyond the window: not read either way
    bank = bank_of(scene)
    rule = Oracle(score="iou", stride=1, candidates=6, top_k=6, min_score=0.3, pointers="window")
    memory = select(rule, bank, 18)
    pointers = memory.pointers
    assert pointers.distance[:, 0].tolist() == list(range(1, 16))
    assert pointers.entries == [bank.non_cond[t] for t in range(17, 2, -1)]
    left_out = (~pointers.valid).nonzero().tolist()  # (row, object): t-2 of 1, t-14 of 2
    assert left_out == [[1, 0], [13, 1]]
    assert pointers.index[:, 1].tolist() == list(range(15))
    # the spatial memory is the threshold's as with SAM 2's pointers
    plain = select(Oracle(score="iou", stride=1, candidates=6, top_k=6, min_score=0.3), bank, 18)
    assert kept(memory) == kept(plain) and torch.equal(memory.valid, plain.valid)
    # a streaming bank drops the maps of frames past the memory horizon, not their pointer
    # and scores: the rule reads the same window
    for t, entry in bank.non_cond.items():
        entry["obj_ptr"] = torch.full((2, 8), float(t))
    bank.drop_older(*rule.horizon(bank, 18, (18 - 6, 18 - 15)))
    assert set(bank.non_cond) == set(range(3, 18))
    assert set(bank.non_cond[5]) == {"obj_ptr", "true_iou", "true_present"}
    assert "maskmem_features" in bank.non_cond[12]
    streamed = select(rule, bank, 18).pointers
    assert torch.equal(streamed.valid, pointers.valid)
    assert torch.equal(streamed.distance, pointers.distance)
    # nothing below the threshold: SAM 2's own rule reads the pointers
    scene[16], scene[4] = scene[15], scene[15]
    assert select(rule, bank_of(scene), 18).pointers is None
    with pytest.raises(ValueError, match=r"tracker\.pointers=window.*min_score"):
        Oracle(score="iou", pointers="window")


def test_ordered_by_recency_the_most_recent_frames_above_the_threshold_are_kept():
    bank = bank_of(SCENE)
    rule = Oracle(score="iou", stride=1, candidates=10, top_k=4, min_score=0.5, order="recency")
    memory = select(rule, bank, 11)
    # object 1: 9, 8 and 7 are good enough, so the better but older 3 is not kept (by
    # score it would be: [10, 8, 7, 3]); t-1 forced in, then left out
    assert kept(memory) == [[10, 9, 8, 7], [10, 9, 8, 4]]
    assert memory.valid.T.tolist() == [[False, True, True, True], [False, True, True, True]]
    # fewer good frames than slots: the rest are the most recent others, all left out
    rule = Oracle(
        score="visible_iou", stride=1, candidates=10, top_k=4, min_score=0.5, order="recency"
    )
    memory = select(rule, bank, 11)
    assert kept(memory) == [[10, 9, 7, 3], [10, 9, 8, 4]]
    assert memory.valid.T.tolist() == [[False, True, True, True], [False, True, False, True]]


def test_slots_by_rank_or_by_distance():
    bank = bank_of(SCENE)
    assert select(Oracle(score="iou", stride=1, candidates=10, top_k=4), bank, 11).slots is None
    by_distance = select(
        Oracle(score="iou", stride=1, candidates=10, top_k=4, slots="distance"), bank, 11
    )
    assert by_distance.slots.T.tolist() == [[1, 3, 4, 8], [1, 2, 3, 7]]


def test_the_model_assembles_slots_by_rank_and_by_distance_clamped_to_its_last(micro):
    """Kept frames enter memory oldest first, each position encoding plus the temporal
    encoding of its slot: SAM 2's slot for t-d is maskmem_tpos_enc[d - 1], and the last
    slot for past frames (t-6, index 5) takes every frame beyond it."""
    model = VideoSAM(micro())
    tpos = model.sam2.maskmem_tpos_enc[:, 0, 0]  # [7, C]
    c = tpos.shape[1]

    def entry(value: float) -> dict:
        return {
            "maskmem_features": torch.full((2, c, 1, 1), value),
            "maskmem_pos_enc": [torch.zeros(2, c, 1, 1)],
        }

    bank = {"cond_frame_outputs": {0: entry(-1.0)}, "non_cond_frame_outputs": {}}
    entries = [entry(float(v)) for v in (30, 29, 25, 20)]  # frames 30, 29, 25, 20 of t = 31
    index = torch.tensor([[0, 0], [1, 2], [3, 3]])  # object 1: 30, 29, 20; object 2: 30, 25, 20
    slots = torch.tensor([1, 2, 11, 1, 6, 11]).view(2, 3).T  # distances of those frames
    cpu = torch.device("cpu")
    for spatial, expected in (
        (SpatialMemory(entries, index), [[6, 2, 1, 0], [6, 2, 1, 0]]),
        (SpatialMemory(entries, index, slots), [[6, 5, 1, 0], [6, 5, 5, 0]]),
    ):
        memory, pos = model._spatial_memory(31, bank, spatial, cpu)
        assert memory.shape == (4, 2, c)
        assert memory[:, 0, 0].tolist() == [-1, 20, 29, 30]  # prompt, then oldest first
        assert memory[:, 1, 0].tolist() == [-1, 20, 25, 30]
        for obj in range(2):
            assert torch.equal(pos[:, obj], tpos[expected[obj]]), (obj, expected)


def test_true_iou_and_presence_from_hand_made_masks():
    truth = torch.zeros(3, 8, 8, dtype=torch.bool)
    truth[0, 2:6] = True  # object 1: 4 rows; predicted: rows 0-3 -> 2 shared of 6
    logits = torch.full((3, 1, 8, 8), -10.0)
    logits[0, 0, 0:4] = 10.0
    logits[2, 0, 4:] = 10.0  # object 3: absent, predicted present
    scores = truth_scores(logits, truth)
    assert scores["true_iou"].tolist() == pytest.approx([1 / 3, 1.0, 0.0])
    assert scores["true_present"].tolist() == [1.0, 0.0, 0.0]
    unknown = truth_scores(logits, None)
    assert unknown["true_iou"].isnan().all() and unknown["true_present"].isnan().all()


def test_a_ground_truth_oracle_on_a_video_without_ground_truth_is_refused_first(
    micro, noise_frames
):
    read = []

    class Counted(noise_frames):
        def image(self, t):
            read.append(t)
            return super().image(t)

    mask = np.zeros((64, 80), bool)
    mask[10:30, 20:50] = True
    engine = VideoPropagator(VideoSAM(micro()), build_tracker({"name": "oracle", "score": "iou"}))
    with pytest.raises(ValueError, match=r"Oracle reads the ground truth.*this video has none"):
        next(engine.propagate(Counted(4), {0: {1: mask}}))
    assert read == []  # before the first frame
    # recency reads no ground truth and runs on any video
    recency = VideoPropagator(
        VideoSAM(micro()), build_tracker({"name": "oracle", "score": "recency"})
    )
    assert len(list(recency.propagate(noise_frames(4), {0: {1: mask}}))) == 4


def test_the_demo_refuses_a_ground_truth_oracle_naming_the_video(
    micro_weights, compose_config, small_synthetic, tmp_path
):
    from mosam_train import tasks

    frames = small_synthetic / "JPEGImages" / "480p" / "val_0000"
    cfg = compose_config(
        "predict", f"video={frames}", "box=[10,10,30,30]", f"ckpt={micro_weights}", "sam2=micro",
        "tracker=oracle", out=tmp_path / "predict",
    )  # fmt: skip
    with pytest.raises(ValueError, match=rf"Oracle .* video={re.escape(str(frames))} has none"):
        tasks.predict(cfg)


@pytest.mark.parametrize(
    ("stride", "candidates", "warns"),
    [(2, 3, True), (1, 4, True), (6, 1, True), (1, 6, False), (2, 12, False), (7, 1, False)],
)
def test_a_selection_that_cannot_reach_past_sam2s_window_is_warned_about(
    caplog, stride, candidates, warns
):
    with caplog.at_level(logging.WARNING):
        MemorySelection(7, 16, stride=stride, candidates=candidates, top_k=1)
        Oracle(score="visible_iou", stride=stride, candidates=candidates)
        Oracle(score="prompt", stride=stride, candidates=candidates)  # no candidates: silent
    messages = [r.getMessage() for r in caplog.records]
    expected = ["model.stms", "tracker"] if warns else []
    assert [m.split(":")[0] for m in messages] == expected
    if warns:
        assert f"stride {stride} x candidates {candidates}" in messages[0]
        assert "cannot act" in messages[0] and "stride=1 candidates=6" in messages[0]
    assert warn_if_within_window(stride, candidates, "x") is warns


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match=r"tracker\.score='best'.*iou, visible_iou"):
        Oracle(score="best")
    with pytest.raises(ValueError, match=r"tracker\.slots='time'"):
        Oracle(slots="time")
    with pytest.raises(ValueError, match=r"tracker\.stride=0"):
        Oracle(stride=0)
    with pytest.raises(ValueError, match=r"tracker\.pointers='all'.*sam2, kept, window"):
        Oracle(pointers="all")
    with pytest.raises(ValueError, match=r"tracker\.min_score=0\.5 with tracker\.score=recency"):
        Oracle(score="recency", min_score=0.5)
    with pytest.raises(ValueError, match=r"tracker\.order='newest'.*score, recency"):
        Oracle(order="newest")
    with pytest.raises(ValueError, match=r"tracker\.order=recency.*min_score=None.*Fix"):
        Oracle(score="iou", order="recency")


@pytest.fixture(scope="module")
def record(small_synthetic):
    return max(read_davis(small_synthetic, "val"), key=lambda r: len(r.object_ids))


def run(model, rule, record) -> tuple[dict[int, torch.Tensor], VideoPropagator]:
    engine = VideoPropagator(model, rule)
    prompts = first_appearance_prompts(record)
    logits = {r.frame_idx: r.logits for r in engine.propagate(RecordFrames(record, 128), prompts)}
    return logits, engine


def test_recency_over_sam2s_window_by_rank_is_sam2_exactly(micro, record):
    model = VideoSAM(micro())
    sam2, _ = run(model, build_tracker({"name": "sam2"}), record)
    rule = {"name": "oracle", "score": "recency", "stride": 1, "candidates": 6, "slots": "rank"}
    oracle, _ = run(model, build_tracker(rule), record)
    assert sam2.keys() == oracle.keys()
    assert all(torch.equal(sam2[t], oracle[t]) for t in sam2)
    # slots by distance over strided candidates: other slots, other logits
    rule.update(stride=2, slots="distance")
    strided, engine = run(model, build_tracker(rule), record)
    assert any(not torch.equal(sam2[t], strided[t]) for t in sam2)
    # the memory reaches back stride x candidates frames
    last = record.num_frames - 1
    assert min(engine.groups[0].bank.non_cond) <= last + 1 - 12


def test_ground_truth_oracles_score_each_remembered_frame_against_it(micro, record):
    _, engine = run(
        VideoSAM(micro()), build_tracker({"name": "oracle", "score": "visible_iou"}), record
    )
    bank = engine.groups[0].bank
    truth = RecordFrames(record, 128)
    for t, entry in bank.non_cond.items():
        if "true_iou" not in entry:
            continue  # pointer-only entries
        gt = truth.ground_truth(t, bank.object_ids)
        assert entry["true_present"].tolist() == [float(m.any()) for m in gt]
        assert ((entry["true_iou"] >= 0) & (entry["true_iou"] <= 1)).all()


def test_an_oracle_on_mosam_leaves_its_motion_history_as_it_was(micro, record):
    """The oracle's memory in place of MoSAM's own selection (the method table's row): its
    ground-truth entries sit beside MGP's keypoint presence, which stays MoSAM's own."""
    from mosam_train.models.mosam import MoSAMTracker

    model = MoSAMTracker(micro(), mgp={"sparse": True, "dense": False}, stms={"stride": 1})
    rule = {"name": "oracle", "score": "iou", "min_score": 0.3, "order": "recency"}
    _, engine = run(model, build_tracker(rule), record)
    entries = [e for e in engine.groups[0].bank.non_cond.values() if "true_iou" in e]
    assert entries and all(e["present"].dtype == torch.bool for e in entries)


def test_an_oracle_that_leaves_out_every_past_frame_and_its_pointer_is_cond_only(micro, record):
    """min_score above any IoU with the kept frames' pointers: each object attends to its
    prompted frames alone, as `tracker=cond_only` tracks; with SAM 2's pointers it does not."""
    model = VideoSAM(micro())
    cond_only, _ = run(model, build_tracker({"name": "cond_only"}), record)
    rule = {"name": "oracle", "score": "iou", "min_score": 1.5, "pointers": "kept"}
    nothing, _ = run(model, build_tracker(rule), record)
    assert cond_only.keys() == nothing.keys()
    assert all(torch.allclose(cond_only[t], nothing[t], atol=1e-4) for t in cond_only)
    sam2_pointers, _ = run(model, build_tracker({**rule, "pointers": "sam2"}), record)
    assert any(not torch.allclose(cond_only[t], sam2_pointers[t], atol=1e-4) for t in cond_only)
