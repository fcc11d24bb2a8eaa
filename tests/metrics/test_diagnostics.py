"""Diagnostics of the J&F scoring on hand-made masks: J on visible frames, false positives on
absent frames, re-detection latency, their pooling per tag and their bootstrap intervals."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from scipy import stats

from mosam_train.metrics.jf import (
    LATENCY_CAP,
    ROW_FIELDS,
    ObjectScore,
    aggregate,
    bootstrap_interval,
    diagnostics,
    score_record,
    score_video,
)
from mosam_train.metrics.metric import VideoJF

H, W = 24, 32
T = 16  # DAVIS protocol: frames 1..14 are scored
ABSENT = range(4, 8)  # the object is hidden on frames 4-7 and re-emerges on frame 8


def hidden_object() -> np.ndarray:
    """GT [T, 1, H, W]: a 6x8 box, absent on frames 4-7."""
    gt = np.zeros((T, 1, H, W), bool)
    gt[:, 0, 4:10, 4:12] = True
    gt[list(ABSENT)] = False
    return gt


def test_a_hidden_object_predicted_present_is_a_false_positive():
    gt = hidden_object()
    pred = gt.copy()
    pred[5, 0, 15:20, 20:30] = True  # on 2 of the 4 absent frames, something elsewhere
    pred[6, 0, 4:10, 4:12] = True  # ... or where it was
    (row,) = score_video("v", gt, pred)
    assert row.fp_absent == 0.5
    assert row.j_visible == 1.0  # every visible frame is right
    assert row.j_mean == pytest.approx(12 / 14)  # J = 0 on the two false positives
    assert row.latencies == (0,) and row.never_redetected == 0  # found on re-emergence


def test_a_late_redetection_has_its_exact_latency():
    gt = hidden_object()
    pred = gt.copy()
    pred[8:11] = False  # missed on frames 8, 9, 10 after re-emerging
    pred[11, 0, 4:10, 4:8] = True  # frame 11: half the box, IoU 0.5 exactly: not > 0.5
    pred[11, 0, 4:10, 8:12] = False
    (row,) = score_video("v", gt, pred)
    assert row.latencies == (4,) and row.never_redetected == 0  # re-detected on frame 12
    assert row.fp_absent == 0.0
    # visible scored frames 1-3 and 8-14: J = 1 on 1-3 and 12-14, 0 on 8-10, 0.5 on 11
    assert row.j_visible == pytest.approx(6.5 / 10)


def test_an_object_never_redetected_is_counted_as_never():
    gt = hidden_object()
    pred = gt.copy()
    pred[4:] = False  # lost at the occlusion, never found again
    (row,) = score_video("v", gt, pred)
    assert row.latencies == () and row.never_redetected == 1 and row.num_events == 1
    assert row.fp_absent == 0.0  # absent and predicted absent: no false positive
    out = aggregate([row])
    assert out["never_redetected"] == 100.0 and out["num_events"] == 1
    assert out["latency_mean"] == out["latency_median"] == LATENCY_CAP  # counted at the cap


def test_j_visible_leaves_out_the_frames_where_the_object_is_absent():
    gt = hidden_object()
    pred = np.zeros_like(gt)
    pred[:, 0, 4:10, 4:8] = True  # half the box on every frame: J = 0.5 where visible
    pred[list(ABSENT)] = False
    (row,) = score_video("v", gt, pred)
    assert row.j_visible == pytest.approx(0.5)
    # J averages in the absent frames, where both masks are empty (J = F = 1)
    assert row.j_mean == pytest.approx((10 * 0.5 + 4 * 1.0) / 14)
    assert row.latencies == () and row.never_redetected == 1  # IoU 0.5 is never > 0.5


def test_an_always_visible_object_has_no_absent_frame_and_no_event():
    gt = np.zeros((T, 1, H, W), bool)
    gt[:, 0, 2:8, 2:8] = True
    (row,) = score_video("v", gt, gt.copy())
    assert math.isnan(row.fp_absent) and row.num_events == 0 and row.j_visible == 1.0
    out = aggregate([row])
    for key in ("FP_absent", "latency_mean", "latency_median", "never_redetected"):
        assert math.isnan(out[key]), key
    assert out["num_events"] == 0


@pytest.mark.parametrize(
    ("j", "visible", "cap", "latencies", "never"),
    [
        # re-emerges at 2, IoU > 0.5 from 5 on: latency 3, unless the cap is 3 frames
        ([1, 1, 0, 0, 0, 1, 1], [1, 0, 1, 1, 1, 1, 1], 4, (3,), 0),
        ([1, 1, 0, 0, 0, 1, 1], [1, 0, 1, 1, 1, 1, 1], 3, (), 1),
        # vanishes again before being found (J = 1 there: both empty): never; the next
        # re-emergence is its own event, found at once
        ([1, 1, 0, 0, 1, 1, 1], [1, 0, 1, 1, 0, 1, 1], 30, (0,), 1),
        # absent on the first scored frames, then visible: an event too (an empty run
        # followed by a visible frame)
        ([1, 1, 1, 1], [0, 0, 1, 1], 30, (0,), 0),
        ([0.2, 0.9], [1, 1], 30, (), 0),
    ],
)
def test_latency_events(j, visible, cap, latencies, never):
    visible = np.asarray(visible, bool)
    _, _, got, got_never = diagnostics(j, visible, visible, cap=cap)
    assert (got, got_never) == (latencies, never)


def row(video: str, tags=(), jf=0.5, fp=math.nan, latencies=(), never=0, jv=math.nan):
    return ObjectScore(video, 1, jf, 0, 0, jf, 0, 0, 10, tuple(tags), jv, fp, latencies, never)


def test_aggregate_pools_diagnostics_per_object_and_per_event_and_per_tag():
    rows = [
        row("a", ("occlusion",), fp=0.5, latencies=(3,), jv=0.8),
        row("b", ("occlusion",), fp=0.0, never=1, jv=0.4),
        row("c", ("exit_reentry",), latencies=(0, 4), jv=1.0),
        row("d"),
    ]
    out = aggregate(rows)
    assert out["J_visible"] == pytest.approx(100 * (0.8 + 0.4 + 1.0) / 3)  # d has none
    assert out["FP_absent"] == pytest.approx(25.0)  # a and b have absent frames
    assert out["num_events"] == 4
    assert out["latency_mean"] == pytest.approx((3 + LATENCY_CAP + 0 + 4) / 4)
    assert out["latency_median"] == pytest.approx(3.5)
    assert out["never_redetected"] == pytest.approx(25.0)
    assert out["tag/occlusion/never_redetected"] == pytest.approx(50.0)
    assert out["tag/occlusion/latency_mean"] == pytest.approx((3 + LATENCY_CAP) / 2)
    assert out["tag/occlusion/num_events"] == 2 and out["tag/occlusion/num_objects"] == 2
    assert out["tag/exit_reentry/latency_mean"] == pytest.approx(2.0)
    assert math.isnan(out["tag/exit_reentry/FP_absent"])


def test_bootstrap_is_reproducible_and_contains_the_estimate():
    rng = np.random.default_rng(1)
    x = rng.beta(2, 5, size=60) * 100
    low, high = bootstrap_interval(x)
    assert (low, high) == bootstrap_interval(x)  # seeded: the same objects, the same interval
    assert low < x.mean() < high
    assert bootstrap_interval(x, seed=2) != (low, high)
    # the same percentile interval as scipy's, up to resampling noise
    ref = stats.bootstrap((x,), np.mean, method="percentile", rng=np.random.default_rng(0))
    width = high - low
    assert low == pytest.approx(ref.confidence_interval.low, abs=0.1 * width)
    assert high == pytest.approx(ref.confidence_interval.high, abs=0.1 * width)
    # a per-event mean: objects with 1 and 3 events
    sums, counts = np.array([3.0, 30.0, 6.0, 0.0]), np.array([1.0, 1.0, 3.0, 1.0])
    low, high = bootstrap_interval(sums, counts)
    assert low <= sums.sum() / counts.sum() <= high
    assert bootstrap_interval([5.0, 5.0, 5.0]) == (5.0, 5.0)
    assert all(math.isnan(v) for v in bootstrap_interval([5.0]))


def test_aggregate_intervals_contain_the_pooled_values():
    rng = np.random.default_rng(0)
    rows = [
        row(f"v{i}", ("occlusion",) if i % 2 else (), jf=float(rng.random()),
            fp=float(rng.random()), latencies=(int(rng.integers(0, 10)),),
            never=int(i % 3 == 0), jv=float(rng.random()))
        for i in range(40)
    ]  # fmt: skip
    out = aggregate(rows)
    for key in ("JF", "J_visible", "FP_absent", "latency_mean", "never_redetected"):
        for prefix in ("", "tag/occlusion/"):
            assert (
                out[f"{prefix}{key}_ci_low"] <= out[prefix + key] <= out[f"{prefix}{key}_ci_high"]
            )
    assert aggregate(rows) == out
    assert "JF_ci_low" not in aggregate(rows, intervals=False)


def test_rows_round_trip_and_old_csv_files_still_read(tmp_path):
    r = row("v", ("a",), fp=0.25, latencies=(3, 0), never=2, jv=0.75)
    back = ObjectScore.from_row({k: str(v) for k, v in r.to_row().items()})
    assert back == r and back.latencies == (3, 0)
    nan_row = row("w")
    assert ObjectScore.from_row({k: str(v) for k, v in nan_row.to_row().items()}) == nan_row
    # a per_object.csv written before the diagnostics existed
    old_fields = ROW_FIELDS[: ROW_FIELDS.index("tags") + 1]
    path = tmp_path / "per_object.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old_fields)
        writer.writeheader()
        writer.writerow({k: v for k, v in r.to_row().items() if k in old_fields})
    with path.open(newline="") as f:
        (old,) = [ObjectScore.from_row(x) for x in csv.DictReader(f)]
    assert (old.video, old.j_mean, old.tags) == ("v", 0.5, ("a",))
    assert math.isnan(old.j_visible) and math.isnan(old.fp_absent) and old.num_events == 0
    assert aggregate([old])["JF"] == 50.0 and math.isnan(aggregate([old])["J_visible"])


class TaggedRecord:
    """A `ScoredVideo` with tags per object: object 1 hidden on frames 4-7, object 2 always
    visible."""

    name = "tagged"
    object_ids = (1, 2)
    annotated_frames = tuple(range(T))
    tags = ("occlusion",)

    def __init__(self) -> None:
        self.object_tags = {1: ("occlusion",)}  # object 2: no tag

    def load_masks(self, t: int) -> np.ndarray:
        m = np.zeros((2, H, W), bool)
        m[0] = hidden_object()[t, 0]
        m[1, 14:20, 20:28] = True
        return m


def test_per_object_tags_reach_the_rows_and_the_tag_pools():
    rec = TaggedRecord()
    preds = {t: rec.load_masks(t) for t in range(T)}
    preds[5][0, 4:10, 4:12] = True  # a false positive of object 1 on an absent frame
    one, two = score_record(rec, preds, protocol="davis")
    assert one.tags == ("occlusion",) and two.tags == ()
    out = aggregate([one, two])
    assert out["tag/occlusion/num_objects"] == 1
    assert out["tag/occlusion/FP_absent"] == pytest.approx(25.0)
    # the same masks with tags given to score_video per object id
    gt = np.stack([rec.load_masks(t) for t in range(T)])
    pred = np.stack([preds[t] for t in range(T)])
    assert score_video("tagged", gt, pred, tags={1: ["occlusion"]}) == [one, two]


def _fake_gather_with(other: VideoJF):
    remote = iter([other._cat(attr) for attr in other._reductions])

    def gather(t, group=None):
        r = next(remote)
        assert t.dtype == r.dtype and t.ndim == r.ndim
        return [t, r]

    return gather


def test_metric_carries_diagnostics_and_object_tags_across_ranks():
    rows = [
        row("a", ("occlusion",), fp=0.5, latencies=(3, 7), jv=0.8),
        row("a2", ("exit_reentry", "distractor"), latencies=(5,), never=2, jv=0.4),
        row("b", (), latencies=(1,)),
    ]
    rows.append(ObjectScore("a", 2, 0.5, 0, 0, 0.5, 0, 0, 10, ("distractor",), 0.9, 0.0))
    rank1 = VideoJF()
    rank1.update(rows[1:])  # row a2 scored on both ranks: its events must count once
    rank0 = VideoJF(dist_sync_fn=_fake_gather_with(rank1), distributed_available_fn=lambda: True)
    rank0.update(rows[:2])
    with rank0.sync_context(dist_sync_fn=rank0.dist_sync_fn, distributed_available=lambda: True):
        gathered = rank0.rows()
    assert sorted(gathered, key=lambda r: (r.video, r.object_id)) == sorted(
        rows, key=lambda r: (r.video, r.object_id)
    )
    rank1 = VideoJF()
    rank1.update(rows[1:])
    rank0 = VideoJF(dist_sync_fn=_fake_gather_with(rank1), distributed_available_fn=lambda: True)
    rank0.update(rows[:2])
    out = rank0.compute()
    assert out == pytest.approx(aggregate(rows), nan_ok=True)
    assert out["num_events"] == 6 and out["tag/distractor/num_objects"] == 2
