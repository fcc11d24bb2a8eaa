"""Which frames each object is scored on (DAVIS, SA-V, mid-video objects, LVOS), recall,
decay past 256 frames, CSV rows and sharding-independent aggregation. Expected values are
worked out by hand in the comments."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from mosam_train.data.video import VideoRecord
from mosam_train.metrics import (
    APPEARANCE,
    DAVIS,
    LVOS,
    SAV,
    ObjectScore,
    VideoJF,
    aggregate,
    default_protocol,
    object_frames,
    score_record,
    score_video,
)

H, W = 24, 32


def box(r0: int, r1: int, c0: int, c1: int, h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


# --------------------------------------------------------------------------- frame lists


def test_object_frames_per_protocol():
    annotated = range(8)
    first = {1: 0, 2: 3}  # object 2 appears in frame 3 (its prompt frame)
    assert object_frames(annotated, [1, 2], DAVIS, first) == {
        1: [1, 2, 3, 4, 5, 6],
        2: [1, 2, 3, 4, 5, 6],
    }
    assert object_frames(annotated, [1, 2], SAV) == object_frames(annotated, [1, 2], DAVIS)
    assert object_frames(annotated, [1, 2], APPEARANCE, first) == {
        1: [1, 2, 3, 4, 5, 6],  # = DAVIS for an object of the first frame
        2: [4, 5, 6],  # after its prompt frame, before the video's last frame
    }
    assert object_frames(annotated, [1, 2], LVOS, first) == {
        1: [0, 1, 2, 3, 4, 5, 6, 7],
        2: [3, 4, 5, 6, 7],  # from the prompt frame on (lvos-evaluation: range(start, end))
    }
    assert object_frames(annotated, [1, 2], "lvos", first, stop={2: 6}) == {
        1: [0, 1, 2, 3, 4, 5, 6, 7],
        2: [3, 4, 5],  # meta `end` excluded
    }
    # sparse annotations (SA-V: every 4th frame): first and last *annotated* frames skipped
    assert object_frames([0, 4, 8, 12, 16], [7], SAV) == {7: [4, 8, 12]}
    # an object that never appears has nothing to score from its appearance
    assert object_frames(annotated, [3], APPEARANCE, first) == {3: []}


def test_object_frames_errors():
    with pytest.raises(ValueError, match="at least 3"):
        object_frames([0, 4], [1], SAV)
    assert object_frames([0, 4], [1], LVOS, {1: 0}) == {1: [0, 4]}  # LVOS skips nothing
    with pytest.raises(ValueError, match="needs first_appearance"):
        object_frames(range(5), [1], APPEARANCE)
    with pytest.raises(ValueError, match="unknown J&F protocol"):
        object_frames(range(5), [1], "ytvos")


# --------------------------------------------------------------------------- mid-video objects


class MidVideoRecord(VideoRecord):
    """8 frames, every one annotated. Object 1 is in every frame; object 2 first appears
    in frame 3 (YouTube-VOS / LVOS style)."""

    def __init__(self) -> None:
        self.name = "mid"
        self.num_frames = 8
        self.object_ids = (1, 2)
        self.annotated_frames = tuple(range(8))
        self.height, self.width = H, W
        self.tags = ()

    def load_frame(self, t: int) -> np.ndarray:
        return np.zeros((H, W, 3), np.uint8)

    def load_masks(self, t: int) -> np.ndarray:
        return np.stack([box(2, 8, 2, 10), box(14, 20, 16, 26) if t >= 3 else box(0, 0, 0, 0)])


def mid_prediction(t: int) -> np.ndarray:
    """Object 1 perfect. Object 2: a false positive far away in frame 1 (before it
    appears), missed in frame 3 (its prompt frame) and frame 5, perfect elsewhere."""
    gt = MidVideoRecord().load_masks(t)
    if t == 1:
        gt[1] = box(2, 8, 20, 30)
    if t in (3, 5):
        gt[1] = False
    return gt


@pytest.mark.parametrize(
    ("protocol", "stop", "frames", "j2"),
    [
        # frames 1..6: FP (0), empty/empty (1), missed (0), 1, missed (0), 1 -> 3/6
        (DAVIS, None, 6, 3 / 6),
        # frames 4, 5, 6 (after the prompt frame 3, before the last frame 7): 1, 0, 1
        (APPEARANCE, None, 3, 2 / 3),
        # frames 3..7 (prompt frame included, nothing skipped): 0, 1, 0, 1, 1
        (LVOS, None, 5, 3 / 5),
        # frames 3, 4, 5 (meta end 6 excluded): 0, 1, 0
        (LVOS, {2: 6}, 3, 1 / 3),
        # frames 1..6, starting where GT or prediction is non-empty: frame 1 (the FP)
        (SAV, None, 6, 3 / 6),
    ],
    ids=["davis", "appearance", "lvos", "lvos-stop", "sav"],
)
def test_mid_video_object(protocol, stop, frames, j2):
    rows = score_record(MidVideoRecord(), mid_prediction, protocol=protocol, stop=stop)
    by_id = {r.object_id: r for r in rows}
    assert by_id[1].j_mean == 1.0 and by_id[1].f_mean == 1.0
    assert by_id[2].num_frames == frames
    assert by_id[2].j_mean == pytest.approx(j2, abs=1e-12)
    # every per-frame value is 0 or 1 here (perfect, missed, false positive, or both
    # empty), and F follows J: both empty -> 1, exactly one empty -> 0
    assert by_id[2].f_mean == pytest.approx(j2, abs=1e-12)
    assert by_id[2].j_recall == pytest.approx(j2, abs=1e-12)


def test_default_protocol_is_the_one_the_record_names():
    rec = MidVideoRecord()  # not read through a dataset format: no name
    assert default_protocol(rec) is APPEARANCE
    assert score_record(rec, mid_prediction) == score_record(
        rec, mid_prediction, protocol=APPEARANCE
    )
    rec.protocol = "sav"  # what `read_split` sets for an SA-V record
    assert default_protocol(rec) is SAV
    assert score_record(rec, mid_prediction) == score_record(rec, mid_prediction, protocol=SAV)
    assert score_record(rec, mid_prediction) != score_record(
        rec, mid_prediction, protocol=APPEARANCE
    )
    rec.protocol = "nope"
    with pytest.raises(ValueError, match=r"'nope'.*known.*appearance"):
        default_protocol(rec)
    # a precomputed first appearance is used as given (here: object 2 from frame 5)
    rows = score_record(rec, mid_prediction, protocol=APPEARANCE, first_appearance={1: 0, 2: 5})
    assert rows[1].num_frames == 1 and rows[1].j_mean == 1.0  # frame 6 only


# --------------------------------------------------------------------------- SA-V


def test_sav_protocol_objects_start_where_gt_or_prediction_appears():
    """SA-V's evaluator on annotated frames 0, 4, ..., 20 (scored: 4, 8, 12, 16)."""
    t, annotated = 21, [0, 4, 8, 12, 16, 20]
    gt = np.zeros((t, 3, H, W), bool)
    pred = np.zeros_like(gt)
    a, c = box(2, 12, 2, 16), box(6, 16, 8, 24)  # A and C overlap
    for f in (0, 8, 12, 16, 20):
        gt[f, 0] = a
        gt[f, 2] = c
    pred[8, 0] = pred[12, 0] = a  # A: GT empty at 4, missed at 16
    gt[0, 1] = gt[20, 1] = box(18, 22, 2, 6)  # B: GT only on the skipped frames
    pred[12, 1] = box(18, 22, 2, 6)
    pred[4, 2] = box(18, 22, 20, 30)  # C: false positive before it appears ...
    pred[8, 2] = pred[12, 2] = pred[16, 2] = c  # ... then perfect, despite overlapping A
    rows = score_video("v", gt, pred, protocol=SAV, annotated=annotated, object_ids=[0, 1, 2])
    by_id = {r.object_id: r for r in rows}
    # A: frame 4 (both empty) not scored yet; 8, 12, 16 -> 1, 1, 0
    assert by_id[0].num_frames == 3 and by_id[0].j_mean == pytest.approx(2 / 3)
    # B: GT empty on every scored frame -> left out, as SA-V's conclude() reports only
    # objects seen in the GT
    assert 1 not in by_id
    # C: starts at frame 4 with its false positive: 0, 1, 1, 1
    assert by_id[2].num_frames == 4 and by_id[2].j_mean == pytest.approx(3 / 4)
    assert by_id[2].f_mean == pytest.approx(3 / 4)
    # DAVIS rules on the same masks: every object on 4, 8, 12, 16
    davis = {
        r.object_id: r
        for r in score_video(
            "v", gt, pred, protocol=DAVIS, annotated=annotated, object_ids=[0, 1, 2]
        )
    }
    assert davis[0].j_mean == pytest.approx(3 / 4)  # 1, 1, 1, 0
    assert davis[1].j_mean == pytest.approx(3 / 4)  # 1, 1, 0, 1


def test_scored_and_protocol_are_exclusive():
    gt = np.zeros((5, 1, H, W), bool)
    with pytest.raises(ValueError, match="not both"):
        score_video("v", gt, gt, scored=[1, 2], protocol=DAVIS)


# --------------------------------------------------------------------------- statistics


def test_recall_counts_frames_above_one_half():
    # 1-row object of 10 pixels, predicted by its first k pixels: J = k / 10
    gt = np.zeros((6, 1, 8, 16), bool)
    pred = np.zeros_like(gt)
    gt[:, 0, 3, 0:10] = True
    for t, k in zip(range(6), [10, 10, 6, 5, 2, 0], strict=True):
        pred[t, 0, 3, 0:k] = True
    (row,) = score_video("v", gt, pred)  # DAVIS: frames 1..4, J = 1, .6, .5, .2
    assert row.num_frames == 4
    assert row.j_mean == pytest.approx(0.575)
    assert row.j_recall == 0.5  # 0.5 itself is not > 0.5


def test_decay_on_a_302_frame_video():
    """300 scored frames: J = 1 on the first 75, then 0. The official bin edges for 300
    values are [0, 75, 150, 224, 299], so the first bin x[0:76] holds 75 ones and a zero
    and the last bin is all zeros: decay = 75/76. The official uint8 cast turns the last
    edge into 299 - 256 = 43 and its last bin is empty (NaN decay)."""
    t = 302
    gt = np.zeros((t, 1, 16, 16), bool)
    gt[:, 0, 4:12, 4:12] = True
    pred = np.zeros_like(gt)
    pred[1:76] = gt[1:76]
    (row,) = score_video("long", gt, pred)
    assert row.num_frames == 300
    assert row.j_mean == pytest.approx(75 / 300)
    assert row.j_recall == pytest.approx(75 / 300)
    assert row.j_decay == pytest.approx(75 / 76)
    assert row.f_decay == pytest.approx(75 / 76)
    x = np.r_[np.ones(75), np.zeros(225)]
    ids = (np.round(np.linspace(1, 300, 5) + 1e-10) - 1).astype(np.uint8)
    assert ids.tolist() == [0, 75, 150, 224, 43]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert np.isnan(np.nanmean(x[ids[3] : ids[4] + 1]))


# --------------------------------------------------------------------------- rows, metric


def test_csv_row_round_trip():
    r = ObjectScore("v 1", 7, 0.1, 0.2, -0.3, 1 / 3, 0.5, 0.0, 12, ("a", "b c"))
    row = {k: str(v) for k, v in r.to_row().items()}  # what csv.DictReader gives back
    assert row["tags"] == "a|b c"
    assert ObjectScore.from_row(row) == r
    assert ObjectScore.from_row({**row, "tags": ""}).tags == ()


def test_metric_result_does_not_depend_on_row_order():
    """The pooled mean of 0.1, 0.2, 0.3 depends on the summation order in floating point;
    VideoJF pools in a fixed order, so ranks that scored the videos in any order agree."""
    rows = [ObjectScore(f"v{i}", 1, x, 0, 0, x, 0, 0, 3) for i, x in enumerate((0.1, 0.2, 0.3))]
    direct = {aggregate(list(p))["J"] for p in itertools.permutations(rows)}
    assert len(direct) > 1  # plain aggregation order matters ...
    via_metric = set()
    for p in itertools.permutations(rows):
        m = VideoJF()
        m.update(p)
        via_metric.add(m.compute()["J"])
    assert len(via_metric) == 1  # ... the metric's does not


def test_metric_carries_video_names_across_ranks():
    from tests.metrics.test_jf import _fake_gather_with

    rank1 = VideoJF()
    rank1.update([ObjectScore("scored_on_rank_1", 1, 1, 1, 0, 1, 1, 0, 3)])
    rank0 = VideoJF(dist_sync_fn=_fake_gather_with(rank1), distributed_available_fn=lambda: True)
    rank0.update([ObjectScore("rank_0", 1, 0, 0, 0, 0, 0, 0, 3)])
    with rank0.sync_context(dist_sync_fn=rank0.dist_sync_fn, distributed_available=lambda: True):
        names = sorted(r.video for r in rank0.rows())
    assert names == ["rank_0", "scored_on_rank_1"]
