"""LaSOT and GOT-10k box scores (metrics.tracking) against hand-computed values and against
an independent pixel-counting IoU."""

from __future__ import annotations

import numpy as np
import pytest

from mosam_train.metrics.tracking import (
    GOT10K_THRESHOLDS,
    PRECISION_THRESHOLDS,
    SUCCESS_THRESHOLDS,
    aggregate_got10k,
    aggregate_lasot,
    box_iou,
    boxes_array,
    score_got10k_sequence,
    score_lasot_sequence,
)


def pixel_iou(a, b) -> float:
    """IoU counted on a pixel grid: a box covers columns x .. x + w - 1 (integer boxes)."""
    size = int(max(a[0] + a[2], b[0] + b[2], a[1] + a[3], b[1] + b[3])) + 2
    ma = np.zeros((size, size), bool)
    mb = np.zeros((size, size), bool)
    ma[int(a[1]) : int(a[1] + a[3]), int(a[0]) : int(a[0] + a[2])] = True
    mb[int(b[1]) : int(b[1] + b[3]), int(b[0]) : int(b[0] + b[2])] = True
    union = (ma | mb).sum()
    return float((ma & mb).sum() / union) if union else 0.0


# ------------------------------------------------------------------------------ LaSOT

GT = np.array(
    [[10, 10, 20, 20], [10, 10, 20, 20], [20, 20, 10, 10], [0, 0, 0, 0], [30, 30, 10, 10]]
)
ABSENT = np.array([0, 0, 0, 1, 0], bool)


def test_hand_computed_lasot_sequence():
    pred = np.array(
        [
            [0, 0, 5, 5],  # frame 0: replaced by the ground truth
            [13, 10, 20, 20],  # 17x20 overlap: IoU 340 / 460, centre 3 px off (0.15 of w)
            [20, 20, 10, 10],  # exact
            [50, 50, 5, 5],  # absent frame: cannot succeed, whatever it is
            [50, 50, 5, 5],  # no overlap; centres (52, 52) vs (34.5, 34.5): 24.75 px
        ],
        float,
    )
    s = score_lasot_sequence(pred, GT, ABSENT)
    assert s.num_frames == 5 and s.num_scored == 4
    # IoUs 1, 0.739, 1, (absent), 0 over 5 frames: 3/5 above t for t <= 0.70 (15
    # thresholds), 2/5 for 0.75 .. 0.95 (5), none above 1.0
    expected_success = np.array([3] * 15 + [2] * 5 + [0]) / 5
    np.testing.assert_allclose(s.success_curve, expected_success)
    assert s.success_auc == pytest.approx((15 * 3 + 5 * 2) / (5 * 21))
    # centre errors 0, 3, 0, inf, 24.75: <= 20 px for 3 frames of 5
    assert s.precision == pytest.approx(3 / 5)
    assert s.precision_curve[0] == pytest.approx(2 / 5)  # t = 0 px: the exact frames
    assert s.precision_curve[3] == pytest.approx(3 / 5)
    assert s.precision_curve[24] == pytest.approx(3 / 5)
    assert s.precision_curve[25] == pytest.approx(4 / 5)
    assert s.precision_curve[50] == pytest.approx(4 / 5)  # the absent frame never counts
    # normalised: 0.15 on frame 1, sqrt(2) * 1.75 on frame 4
    assert s.norm_precision == pytest.approx(3 / 5)
    assert s.mean_iou == pytest.approx((1 + 340 / 460 + 1 + 0) / 4)


def test_missing_box_repeats_the_previous_frame_box_as_the_toolkit_does():
    pred = np.array([GT[0], GT[1], GT[2], [30, 30, 10, 10], [0, 0, 0, 0]], float)
    # frame 4 has no box: the toolkit scores frame 3's box there, which is exact
    with_gap = score_lasot_sequence(pred, GT, ABSENT)
    filled = pred.copy()
    filled[4] = filled[3]
    np.testing.assert_array_equal(
        with_gap.success_curve, score_lasot_sequence(filled, GT, ABSENT).success_curve
    )
    assert with_gap.success_auc == pytest.approx(4 / 5 * 20 / 21)
    # NaN (and negative sizes) are invalid the same way; a run of them repeats the last box
    nan = pred.copy()
    nan[2:] = np.nan
    nan[1] = GT[2]
    s = score_lasot_sequence(nan, GT, ABSENT)
    ious = [1, pixel_iou(GT[2], GT[1]), 1, None, pixel_iou(GT[2], GT[4])]
    assert s.mean_iou == pytest.approx(np.mean([v for v in ious if v is not None]))


def test_perfect_tracker_scores_twenty_of_twenty_one():
    rng = np.random.default_rng(0)
    gt = np.column_stack([rng.integers(0, 50, (40, 2)), rng.integers(1, 30, (40, 2))]).astype(float)
    s = score_lasot_sequence(gt, gt)
    assert s.success_auc == pytest.approx(20 / 21)  # IoU 1 is > t for every t but 1.0
    assert s.precision == 1.0 and s.norm_precision == 1.0
    assert aggregate_lasot([s, s])["success_auc"] == pytest.approx(20 / 21)


def test_absent_frames_cannot_succeed_and_stay_in_the_frame_count():
    gt = np.tile([10.0, 10, 20, 20], (10, 1))
    absent = np.zeros(10, bool)
    absent[[2, 5, 6]] = True
    gt[absent] = 0
    perfect = score_lasot_sequence(gt, gt, absent)
    # MATLAB eval_tracker divides by every frame of the sequence (len_all = size(anno, 1))
    assert perfect.success_auc == pytest.approx(7 / 10 * 20 / 21)
    assert perfect.precision == pytest.approx(7 / 10)
    assert perfect.num_scored == 7
    # whatever is predicted on absent frames changes nothing
    other = gt.copy()
    other[absent] = [10, 10, 20, 20]
    s = score_lasot_sequence(other, gt, absent)
    np.testing.assert_array_equal(s.success_curve, perfect.success_curve)
    np.testing.assert_array_equal(s.precision_curve, perfect.precision_curve)
    np.testing.assert_array_equal(s.norm_precision_curve, perfect.norm_precision_curve)
    # without the flags those frames are zero-area ground truth: not scored either
    assert score_lasot_sequence(gt, gt).success_auc == pytest.approx(7 / 10 * 20 / 21)


def test_first_box_tracker_scores_what_its_overlaps_say():
    rng = np.random.default_rng(1)
    n = 30
    xy = np.cumsum(rng.integers(-3, 4, (n, 2)), axis=0) + 40
    wh = np.clip(20 + np.cumsum(rng.integers(-1, 2, (n, 2)), axis=0), 5, None)
    gt = np.column_stack([xy, wh]).astype(float)
    absent = np.zeros(n, bool)
    absent[[7, 8]] = True
    pred = np.tile(gt[0], (n, 1))
    s = score_lasot_sequence(pred, gt, absent)

    ious = np.array([-1.0 if absent[t] else pixel_iou(gt[0], gt[t]) for t in range(n)])
    success = [np.sum(ious > t) / n for t in SUCCESS_THRESHOLDS]
    np.testing.assert_allclose(s.success_curve, success)
    assert s.success_auc == pytest.approx(np.mean(success))
    centre = lambda b: (b[0] + (b[2] - 1) / 2, b[1] + (b[3] - 1) / 2)  # noqa: E731
    dist = np.array(
        [
            np.inf if absent[t] else np.hypot(*np.subtract(centre(gt[0]), centre(gt[t])))
            for t in range(n)
        ]
    )
    assert s.precision == pytest.approx(np.sum(dist <= 20) / n)
    np.testing.assert_allclose(
        s.precision_curve, [np.sum(dist <= t) / n for t in PRECISION_THRESHOLDS]
    )
    norm = np.array(
        [
            np.inf
            if absent[t]
            else np.hypot(*((np.array(centre(gt[0])) - centre(gt[t])) / gt[t, 2:]))
            for t in range(n)
        ]
    )
    assert s.norm_precision == pytest.approx(np.sum(norm <= 0.2) / n)


def test_box_iou_matches_pixel_counting():
    rng = np.random.default_rng(2)
    a = np.column_stack([rng.integers(0, 30, (200, 2)), rng.integers(1, 25, (200, 2))])
    b = np.column_stack([rng.integers(0, 30, (200, 2)), rng.integers(1, 25, (200, 2))])
    expected = [pixel_iou(x, y) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(box_iou(a, b), expected)
    assert box_iou([[0, 0, 0, 0]], [[0, 0, 0, 0]])[0] == 0.0


def test_aggregate_averages_sequence_curves():
    a = score_lasot_sequence(GT, GT)  # 4 of 5 frames scorable (frame 3 has no box)
    b = score_lasot_sequence(np.tile(GT[4], (5, 1)), GT)
    agg = aggregate_lasot([a, b])
    np.testing.assert_allclose(agg["success_curve"], (a.success_curve + b.success_curve) / 2)
    assert agg["success_auc"] == pytest.approx((a.success_auc + b.success_auc) / 2)
    assert agg["precision"] == pytest.approx((a.precision + b.precision) / 2)
    assert agg["num_sequences"] == 2 and agg["num_frames"] == 10


def test_boxes_array_writes_missing_boxes_as_zeros():
    out = boxes_array([(1, 2, 3, 4), None])
    np.testing.assert_array_equal(out, [[1, 2, 3, 4], [0, 0, 0, 0]])


# ---------------------------------------------------------------------------- GOT-10k


def test_hand_computed_got10k_sequence():
    gt = np.array([[10, 10, 20, 20]] * 5, float)
    cover = np.array([8, 8, 0, 4, 8])
    pred = np.array(
        [
            [0, 0, 1, 1],  # frame 0: never scored
            [15, 10, 20, 20],  # IoU 300 / 500 = 0.6
            [0, 0, 1, 1],  # cover 0: not scored
            [10, 10, 20, 20],  # exact
            [0, 0, 0, 0],  # no box: IoU 0 (no carrying over in GOT-10k)
        ],
        float,
    )
    s = score_got10k_sequence(pred, gt, cover, bound=(100, 100))
    np.testing.assert_allclose(s.ious, [0.6, 1.0, 0.0])
    assert s.ao == pytest.approx(1.6 / 3)
    assert s.sr(0.5) == pytest.approx(2 / 3) and s.sr(0.75) == pytest.approx(1 / 3)
    # the first frame and cover-0 frames do not matter
    pred2 = pred.copy()
    pred2[[0, 2]] = gt[[0, 2]]
    np.testing.assert_array_equal(score_got10k_sequence(pred2, gt, cover, (100, 100)).ious, s.ious)


def test_got10k_clips_boxes_to_the_image_as_the_toolkit():
    gt = np.array([[0, 0, 10, 10], [90, 0, 10, 10]], float)
    # x 95 w 10 in a 100-wide image: clipped to w 5 -> IoU 5*10 / 10*10
    s = score_got10k_sequence(
        np.array([[0, 0, 10, 10], [95, 0, 10, 10]], float), gt, None, (100, 50)
    )
    assert s.ious == pytest.approx([0.5])
    # the toolkit clips x to 0 but keeps w (it is then only capped at W - x)
    s = score_got10k_sequence(
        np.array([[0, 0, 10, 10], [-5, 0, 10, 10]], float), gt[[0, 0]], None, (100, 50)
    )
    assert s.ious == pytest.approx([1.0])


def test_got10k_perfect_and_pooled_over_frames():
    gt = np.array([[10, 10, 20, 20]] * 4, float)
    perfect = score_got10k_sequence(gt, gt, None, (64, 64))
    assert perfect.ao == 1.0 and perfect.sr(0.5) == 1.0 and perfect.sr(0.75) == 1.0
    long = np.array([[10, 10, 20, 20]] * 10, float)
    worst = score_got10k_sequence(np.zeros((10, 4)), long, None, (64, 64))
    agg = aggregate_got10k([perfect, worst])
    # AO over the 3 + 9 scored frames pooled (not the mean of the two sequences' AO)
    assert agg["ao"] == pytest.approx(3 / 12)
    assert agg["sr50"] == pytest.approx(3 / 12) and agg["sr75"] == pytest.approx(3 / 12)
    assert len(agg["success_curve"]) == len(GOT10K_THRESHOLDS) == 101
    assert agg["success_curve"][-1] == 0.0  # IoU 1 is not > 1
