"""J&F against the DAVIS 2017 definition (REFERENCE.md section 4) and independent oracles."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from mosam_train.data.video import VideoRecord
from mosam_train.metrics import (
    ObjectScore,
    VideoJF,
    aggregate,
    boundary_f,
    boundary_radius,
    davis_scored_frames,
    evaluate_frame,
    evaluate_video,
    frame_statistics,
    jaccard,
    score_record,
    score_video,
    seg2bmap,
)

H, W = 480, 854


def box(r0: int, r1: int, c0: int, c1: int, h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


# --------------------------------------------------------------------------- oracles


def seg2bmap_ref(seg: np.ndarray) -> np.ndarray:
    """Literal transcription of the DAVIS rule (zero-padded neighbours, then edge overrides)."""
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def dilate_ref(b: np.ndarray, r: int) -> np.ndarray:
    """Disk dilation by shifting, no cv2."""
    h, w = b.shape
    pad = np.pad(b, r)
    out = np.zeros_like(b)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx <= r * r:
                out |= pad[r + dy : r + dy + h, r + dx : r + dx + w]
    return out


def boundary_f_ref(pred: np.ndarray, gt: np.ndarray, r: int) -> float:
    bp, bg = seg2bmap_ref(pred), seg2bmap_ref(gt)
    n_p, n_g = bp.sum(), bg.sum()
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    p = (bp & dilate_ref(bg, r)).sum() / n_p
    rc = (bg & dilate_ref(bp, r)).sum() / n_g
    return 0.0 if p + rc == 0 else 2 * p * rc / (p + rc)


def random_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Boxes (some touching the image edge) plus speckle: many boundary configurations."""
    m = rng.random((h, w)) < 0.05
    for _ in range(rng.integers(1, 4)):
        r0, c0 = rng.integers(0, h - 2), rng.integers(0, w - 2)
        m[r0 : rng.integers(r0 + 1, h + 1), c0 : rng.integers(c0 + 1, w + 1)] ^= True
    return m


# --------------------------------------------------------------------------- per frame

EMPTY = np.zeros((H, W), dtype=bool)
FULL = np.ones((H, W), dtype=bool)
BOX = box(100, 200, 100, 300)


@pytest.mark.parametrize(
    ("gt", "pred", "j", "f"),
    [
        (EMPTY, EMPTY, 1.0, 1.0),
        (EMPTY, BOX, 0.0, 0.0),
        (BOX, EMPTY, 0.0, 0.0),
        (BOX, box(110, 210, 100, 300), 0.81818, 0.35667),
        (FULL, FULL, 1.0, 1.0),
        (FULL, BOX, 0.04879, 0.0),
    ],
    ids=["both-empty", "gt-empty", "pred-empty", "shift-10px", "both-full", "full-vs-box"],
)
def test_golden_values(gt, pred, j, f):
    assert jaccard(pred, gt) == pytest.approx(j, abs=1e-5)
    assert boundary_f(pred, gt) == pytest.approx(f, abs=1e-5)


@pytest.mark.parametrize(("h", "w", "r"), [(480, 854, 8), (720, 1280, 12), (1024, 1024, 12)])
def test_radius(h, w, r):
    assert boundary_radius(h, w) == r


def test_radius_absolute_pixels():
    assert boundary_radius(480, 854, 3) == 3
    with pytest.raises(ValueError):
        boundary_radius(480, 854, 2.5)


def test_seg2bmap_matches_davis_rule_and_edges():
    rng = np.random.default_rng(0)
    for h, w in [(17, 23), (1, 9), (9, 1), (30, 40)]:
        for _ in range(10):
            m = random_mask(rng, h, w) if min(h, w) > 2 else rng.random((h, w)) < 0.5
            np.testing.assert_array_equal(seg2bmap(m), seg2bmap_ref(m))
    assert not seg2bmap(np.ones((20, 30), bool)).any()
    # a box touching the right and bottom edges has no boundary along them
    b = seg2bmap(box(5, 20, 10, 30, 20, 30))
    assert not b[-1, 10:].any() and not b[5:, -1].any() and b[4, 10:29].all()


def test_boundary_f_matches_shift_oracle():
    rng = np.random.default_rng(1)
    for bound_th in (0.008, 0.05, 3):
        for _ in range(8):
            g, p = random_mask(rng, 36, 52), random_mask(rng, 36, 52)
            r = boundary_radius(36, 52, bound_th)
            assert boundary_f(p, g, bound_th=bound_th) == pytest.approx(
                boundary_f_ref(p, g, r), abs=1e-12
            )


def test_boundary_f_precision_recall():
    g = box(10, 20, 10, 20, 64, 64)
    far = box(40, 50, 40, 60, 64, 64)
    # boundaries further apart than the radius: precision = recall = 0 -> F = 0
    assert boundary_f(far, g) == 0.0
    # an extra far blob: recall 1, precision = |Bg| / (|Bg| + |Bfar|)
    n_g, n_far = seg2bmap(g).sum(), seg2bmap(far).sum()
    p = n_g / (n_g + n_far)
    assert boundary_f(g | far, g) == pytest.approx(2 * p / (p + 1), abs=1e-12)
    assert boundary_f(g, g | far) == pytest.approx(2 * p / (p + 1), abs=1e-12)


def test_void_is_removed_from_both_masks():
    gt = box(100, 200, 100, 300)
    pred = gt | box(300, 350, 400, 500)  # extra blob ...
    void = box(290, 360, 390, 510)  # ... entirely inside void
    assert jaccard(pred, gt) < 1 and boundary_f(pred, gt) < 1
    assert jaccard(pred, gt, void) == 1.0
    assert boundary_f(pred, gt, void) == 1.0
    # void over the whole GT object and no prediction elsewhere: both empty -> 1
    assert jaccard(EMPTY, gt, box(90, 210, 90, 310)) == 1.0
    # void changes the boundary: GT cut by a void band equals the cut prediction
    band = box(150, 160, 0, W)
    assert boundary_f(gt & ~band, gt, band) == 1.0
    assert boundary_f(gt & ~band, gt) < 1.0


def test_evaluate_frame_equals_single_functions():
    rng = np.random.default_rng(2)
    gt = np.stack([random_mask(rng, 40, 50) for _ in range(3)])
    pred = np.stack([random_mask(rng, 40, 50) for _ in range(3)])
    void = rng.random((40, 50)) < 0.1
    j, f = evaluate_frame(gt, pred, void)
    for k in range(3):
        assert j[k] == jaccard(pred[k], gt[k], void)
        assert f[k] == boundary_f(pred[k], gt[k], void)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        jaccard(np.zeros((4, 5), bool), np.zeros((5, 4), bool))


# --------------------------------------------------------------------------- per video


def test_scored_frames_and_bool_equivalence():
    np.testing.assert_array_equal(davis_scored_frames(6), [1, 2, 3, 4])
    with pytest.raises(ValueError):
        davis_scored_frames(2)
    rng = np.random.default_rng(3)
    gt = np.stack([np.stack([random_mask(rng, 24, 32)]) for _ in range(6)])
    pred = np.stack([np.stack([random_mask(rng, 24, 32)]) for _ in range(6)])
    mask = np.zeros(6, bool)
    mask[1:5] = True
    j1, f1 = evaluate_video(gt, pred, mask)
    j2, f2 = evaluate_video(gt, pred, [4, 2, 3, 1])
    assert j1.shape == (1, 4)
    np.testing.assert_array_equal(j1, j2)
    np.testing.assert_array_equal(f1, f2)
    assert j1[0, 0] == jaccard(pred[1, 0], gt[1, 0])


def official_stats_uint8(x: np.ndarray) -> tuple[float, float, float]:
    """The official db_statistics, uint8 cast included."""
    ids = (np.round(np.linspace(1, len(x), 5) + 1e-10) - 1).astype(np.uint8)
    bins = [x[ids[i] : ids[i + 1] + 1] for i in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # wrapped indices -> empty bins
        return (
            float(np.nanmean(x)),
            float(np.nanmean(x > 0.5)),
            float(np.nanmean(bins[0]) - np.nanmean(bins[3])),
        )


def test_statistics_match_official_on_short_videos():
    rng = np.random.default_rng(4)
    for n in (1, 2, 3, 4, 5, 7, 50, 255):
        x = rng.random(n)
        assert frame_statistics(x) == pytest.approx(official_stats_uint8(x))


def test_decay_on_300_frames():
    x = np.linspace(1.0, 0.0, 300)  # quality falls over time -> positive decay
    mean, recall, decay = frame_statistics(x)
    # bin edges for 300 values: [0, 75, 150, 224, 299]
    expected = x[0:76].mean() - x[224:300].mean()
    assert np.isfinite(decay) and decay > 0
    assert decay == pytest.approx(expected)
    assert mean == pytest.approx(0.5) and recall == pytest.approx(150 / 300)
    assert frame_statistics(x[::-1])[2] == pytest.approx(-expected)
    # the official uint8 indices wrap past 256 and give a different (wrong) decay
    assert official_stats_uint8(x)[2] != pytest.approx(expected)


# --------------------------------------------------------------------------- aggregate

SH, SW = 48, 64
# At 48x64 (radius 1) this pair gives J = 40/120 = 1/3 and F = 0.325 exactly.
SEQB_GT = (10, 14, 10, 20)
SEQB_PRED = (10, 16, 5, 25)


def two_sequences() -> list[ObjectScore]:
    t = 6
    a_gt = np.zeros((t, 2, SH, SW), bool)
    a_gt[:, 0, 5:20, 5:25] = True
    a_gt[:, 1, 25:40, 30:60] = True
    a_pred = a_gt.copy()
    a_pred[:, 1] = False  # object 2 missed everywhere
    b_gt = np.broadcast_to(box(*SEQB_GT, SH, SW), (t, 1, SH, SW))
    b_pred = np.broadcast_to(box(*SEQB_PRED, SH, SW), (t, 1, SH, SW))
    return [
        *score_video("seqA", a_gt, a_pred, tags=("easy", "multi")),
        *score_video("seqB", b_gt, b_pred, object_ids=[7], tags=("hard",)),
    ]


def test_seqb_construction():
    g, p = box(*SEQB_GT, SH, SW), box(*SEQB_PRED, SH, SW)
    assert jaccard(p, g) == pytest.approx(1 / 3, abs=1e-12)
    assert boundary_f(p, g) == pytest.approx(0.325, abs=1e-12)


def test_aggregation_is_per_object():
    rows = two_sequences()
    assert [(r.video, r.object_id) for r in rows] == [("seqA", 1), ("seqA", 2), ("seqB", 7)]
    assert rows[0].num_frames == 4 and rows[1].j_mean == 0.0 and rows[1].f_mean == 0.0
    out = aggregate(rows)
    assert out["J"] == pytest.approx(44.44, abs=0.01)
    assert out["F"] == pytest.approx(44.17, abs=0.01)
    assert out["JF"] == pytest.approx(44.31, abs=0.01)
    assert out["num_videos"] == 2 and out["num_objects"] == 3
    # per-sequence means would give J = (0.5 + 1/3) / 2 = 41.67
    assert out["J"] != pytest.approx(41.67, abs=0.1)
    assert out["J_recall"] == pytest.approx(100 / 3)
    assert out["J_decay"] == pytest.approx(0.0)
    assert out["tag/hard/J"] == pytest.approx(100 / 3)
    assert out["tag/hard/F"] == pytest.approx(32.5)
    assert out["tag/easy/J"] == pytest.approx(50.0) and out["tag/easy/num_objects"] == 2
    assert out["tag/multi/JF"] == out["tag/easy/JF"]


def test_aggregate_rejects_duplicates_and_handles_empty():
    rows = two_sequences()
    with pytest.raises(ValueError, match="seqB"):
        aggregate([*rows, rows[2]])
    empty = aggregate([])
    assert np.isnan(empty["JF"]) and empty["num_objects"] == 0


# --------------------------------------------------------------------------- VideoRecord


class BoxRecord(VideoRecord):
    """Tiny in-memory record: two objects, annotated every other frame, a void band."""

    def __init__(self) -> None:
        self.name = "rec"
        self.num_frames = 9
        self.object_ids = (3, 5)
        self.annotated_frames = (0, 2, 4, 6, 8)
        self.height, self.width = 32, 40
        self.tags = ("synthetic",)
        self.loaded: list[int] = []

    def load_frame(self, t: int) -> np.ndarray:
        return np.zeros((self.height, self.width, 3), np.uint8)

    def load_masks(self, t: int) -> np.ndarray:
        self.loaded.append(t)
        m = np.zeros((2, self.height, self.width), bool)
        m[0, 4 + t : 12 + t, 4:14] = True
        m[1, 20:28, 20:36] = True
        return m

    def load_void(self, t: int) -> np.ndarray:
        v = np.zeros((self.height, self.width), bool)
        v[18:30, 30:40] = True
        return v


def test_score_record():
    rec = BoxRecord()
    preds = {t: rec.load_masks(t) for t in range(rec.num_frames)}
    for t in (2, 4, 6):
        preds[t][1, 20:28, 30:40] = True  # spill into the void band only
    rec.loaded.clear()
    rows = score_record(rec, preds, protocol="davis")
    assert rec.loaded == [2, 4, 6]  # first and last annotated frames skipped
    # The default (objects from their first appearance) reads frame 0 to find where each
    # object appears; both are in frame 0, so it scores exactly what DAVIS scores.
    rec.loaded.clear()
    assert score_record(rec, preds) == rows
    assert rec.loaded == [0, 2, 4, 6]
    assert [r.object_id for r in rows] == [3, 5]
    assert rows[0].j_mean == 1.0 and rows[0].tags == ("synthetic",) and rows[0].num_frames == 3
    assert rows[1].j_mean < 1.0  # official: void is background, the spill counts
    with_void = score_record(rec, preds.__getitem__, use_void=True)
    assert with_void[1].j_mean == 1.0 and with_void[1].f_mean == 1.0
    with pytest.raises(KeyError, match="frame 4"):
        score_record(rec, {2: preds[2]})
    with pytest.raises(ValueError, match="prediction shape"):
        score_record(rec, lambda t: preds[t][:1])


# --------------------------------------------------------------------------- torchmetrics


def test_metric_equals_aggregate_and_dedupes():
    rows = two_sequences()
    m = VideoJF()
    m.update(rows[:2])
    m.update(rows[2:])
    m.update(rows[2:])  # a DistributedSampler-style repeat
    m.update([])
    out = m.compute()
    assert out == pytest.approx(aggregate(rows), nan_ok=True)
    assert set(out) == set(aggregate(rows))
    assert [(r.video, r.object_id, r.tags) for r in m.rows()] == [
        (r.video, r.object_id, r.tags) for r in rows
    ]
    m.reset()
    m.update(rows[:1])
    assert m.compute()["num_objects"] == 1


def _fake_gather_with(other: VideoJF):
    """dist_sync_fn for a 2-rank world whose other rank holds `other`'s state."""
    remote = iter([other._cat(attr) for attr in other._reductions])

    def gather(t: torch.Tensor, group=None) -> list[torch.Tensor]:
        r = next(remote)
        assert t.dtype == r.dtype and t.ndim == r.ndim  # what all_gather needs
        return [t, r]

    return gather


def test_metric_gathered_rows_are_deduplicated_and_keep_tags():
    rows = two_sequences()
    rank1 = VideoJF()
    rank1.update(rows[1:])  # seqA obj 2 is scored on both ranks (padding repeat)
    rank0 = VideoJF(dist_sync_fn=_fake_gather_with(rank1), distributed_available_fn=lambda: True)
    rank0.update(rows[:2])
    out = rank0.compute()
    assert out == pytest.approx(aggregate(rows), nan_ok=True)
    assert out["tag/hard/F"] == pytest.approx(32.5)  # seqB's tags came from rank 1


def test_metric_rank_without_updates_still_syncs():
    rows = two_sequences()
    rank1 = VideoJF()
    rank1.update(rows)
    rank0 = VideoJF(dist_sync_fn=_fake_gather_with(rank1), distributed_available_fn=lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "compute called before update"
        out = rank0.compute()
    assert out == pytest.approx(aggregate(rows), nan_ok=True)
