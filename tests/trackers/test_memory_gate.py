"""SAMURAI's memory gate: which tracked frames each object's memory keeps."""

import math

import torch

from mosam_train.trackers.memory_gate import (
    GateSettings,
    frame_passes,
    gate_memory,
    oldest_needed,
)

NAN = math.nan
GOOD = (0.9, 2.0, NAN)  # (best_iou, object_score_logit, kf_iou): passes


def values(per_frame: dict[int, list[tuple[float, float, float]]]):
    """Frames most recent first and their [C, N] best_iou, object scores, kf_iou."""
    frames = sorted(per_frame, reverse=True)
    rows = torch.tensor([per_frame[t] for t in frames])  # [C, N, 3]
    return frames, rows[..., 0], rows[..., 1], rows[..., 2]


def gate(frame_idx, per_frame, settings=None):
    settings = settings or GateSettings()
    frames, iou, obj, kf = values(per_frame)
    return gate_memory(frame_idx, frames, frame_passes(iou, obj, kf, settings), settings)


def test_each_test_of_a_frame_is_strict_and_can_be_switched_off():
    iou = torch.tensor([0.9, 0.5, 0.9, 0.9, 0.9, 0.9])
    obj = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0, -3.0])
    kf = torch.tensor([0.7, 0.7, 0.7, 0.0, NAN, NAN])  # NaN: before the filter is stable
    assert frame_passes(iou, obj, kf).tolist() == [True, False, False, False, True, False]
    off = GateSettings(iou=None, object_score=None, kf_iou=None)
    assert frame_passes(iou, obj, kf, off).all()
    assert frame_passes(iou, obj, kf, GateSettings(kf_iou=None)).tolist()[3]
    assert frame_passes(iou, obj, kf, GateSettings(object_score=-5.0)).tolist()[5]


def test_low_iou_absent_and_motion_inconsistent_frames_stay_out_and_t_minus_1_stays_in():
    per_frame = {t: [GOOD] for t in range(1, 25)}
    per_frame[24] = [(0.2, 2.0, NAN)]  # t-1 fails (low IoU) but is kept
    per_frame[23] = [(0.4, 2.0, 0.9)]  # low predicted IoU
    per_frame[22] = [(0.95, -1.5, NAN)]  # object absent
    per_frame[21] = [(0.95, 2.0, 0.0)]  # mask off the Kalman prediction (stable filter)
    out = gate(25, per_frame)
    assert out.frames_of(0) == [24, 20, 19, 18, 17, 16]  # the 6 most recent kept
    assert out.valid.all() and out.index.shape == (6, 1)
    # the scan stops after 15 kept frames (20 .. 6), t-1 on top as it fails
    scanned = [out.frames[i] for i in out.scanned[:, 0].nonzero()[:, 0]]
    assert scanned == [24, *range(20, 5, -1)]


def test_the_scan_reaches_the_first_tracked_frame():
    # SAMURAI's loop stops at frame 2; frame 1 (the first tracked frame) is scanned here
    per_frame = {t: [(0.1, 2.0, NAN)] for t in range(1, 10)}
    per_frame[1] = [GOOD]
    assert gate(10, per_frame).frames_of(0) == [9, 1]


def test_the_scan_cap_counts_kept_frames_and_binds_only_below_the_memory_size():
    per_frame = {t: [GOOD] for t in range(1, 30)}
    default = gate(30, per_frame)
    assert default.frames_of(0) == [29, 28, 27, 26, 25, 24]
    assert int(default.scanned.sum()) == 15  # the scan stopped after 15 kept frames
    wide = gate(30, per_frame, GateSettings(scan=100))
    assert wide.frames_of(0) == default.frames_of(0) and int(wide.scanned.sum()) == 29
    assert gate(30, per_frame, GateSettings(scan=2)).frames_of(0) == [29, 28]
    per_frame[29] = [(0.1, 2.0, NAN)]  # a failing t-1 comes on top of the cap
    assert gate(30, per_frame, GateSettings(scan=2)).frames_of(0) == [29, 28, 27]
    assert gate(30, per_frame, GateSettings(window=3)).frames_of(0) == [29, 28, 27]


def test_only_tracked_frames_are_scanned_and_a_missing_t_minus_1_is_not_invented():
    # frame 12 was prompted (a conditioning frame, attended anyway): not among `frames`
    per_frame = {t: [GOOD] for t in (3, 5, 8, 10, 11)}
    assert gate(13, per_frame).frames_of(0) == [11, 10, 8, 5, 3]
    empty = gate_memory(1, [], torch.zeros(0, 2, dtype=torch.bool))
    assert empty.index.shape == (0, 2) and empty.frames_of(1) == []
    assert empty.spatial([]).entries == []


def test_each_object_keeps_its_own_frames_in_one_batch():
    bad = (0.3, 2.0, NAN)
    per_frame = {t: [GOOD, GOOD if t % 3 == 0 else bad] for t in range(1, 20)}
    out = gate(20, per_frame)
    assert out.frames_of(0) == [19, 18, 17, 16, 15, 14]
    assert out.frames_of(1) == [19, 18, 15, 12, 9, 6]  # 19: t-1, kept though it fails
    alone = gate(20, {t: [v[1]] for t, v in per_frame.items()})
    assert alone.frames_of(0) == out.frames_of(1)
    few = gate(20, {t: [GOOD, bad] for t in range(1, 20)})
    assert few.frames_of(1) == [19] and few.valid.sum(0).tolist() == [6, 1]


def test_spatial_memory_of_the_gate_reads_each_objects_frames():
    per_frame = {t: [GOOD, GOOD if t % 2 else (0.1, 2.0, NAN)] for t in range(1, 20)}
    out = gate(20, per_frame)
    entries = [{"maskmem_features": torch.full((2, 1, 1, 1), float(t))} for t in out.frames]
    spatial = out.spatial(entries)
    got = spatial.gather(lambda e: e["maskmem_features"], torch.device("cpu"))[..., 0, 0, 0]
    assert got[:, 0].tolist() == [19, 18, 17, 16, 15, 14]
    assert got[:, 1].tolist() == [19, 17, 15, 13, 11, 9]
    assert spatial.slots is None and spatial.valid is None  # by rank; every row filled
    uneven = gate(20, {t: [GOOD, (0.1, 2.0, NAN)] for t in range(1, 20)}).spatial(entries)
    got = uneven.gather(lambda e: e["maskmem_features"], torch.device("cpu"))[..., 0, 0, 0]
    assert got[:, 0].tolist() == [19, 18, 17, 16, 15, 14]
    assert uneven.valid.T.tolist() == [[True] * 6, [True] + [False] * 5]
    assert got[0, 1] == 19  # object 1 keeps t-1 only: its other rows weigh nothing
    one = gate(20, {t: [(0.1, 2.0, NAN)] * 2 for t in range(1, 20)}).spatial(entries)
    assert one.index.shape == (1, 2) and one.valid is None  # both keep t-1 alone


def test_the_oldest_frame_still_needed_is_each_objects_sixth_passing_frame():
    bad = (0.1, 2.0, NAN)
    per_frame = {t: [GOOD, GOOD if t in (2, 5, 9) else bad] for t in range(1, 20)}
    frames, iou, obj, kf = values(per_frame)
    passed = frame_passes(iou, obj, kf)
    assert oldest_needed(frames, passed) == 2  # object 1 has only 3 passing frames
    assert oldest_needed(frames, passed[:, :1]) == 14  # object 0: 19 .. 14
    assert oldest_needed(frames, passed[:, :1], GateSettings(scan=2)) == 18
    assert oldest_needed([], passed[:0]) is None
    # what it keeps is enough: gating any later frame reads no older frame
    later = {**per_frame, 20: [bad, bad], 21: [GOOD, bad]}
    assert min(min(gate(22, later).frames_of(i)) for i in range(2)) >= 2
