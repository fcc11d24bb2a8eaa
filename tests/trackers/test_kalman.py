"""SAMURAI's box Kalman filter (equal to filterpy's with PEERS.md's F, H, P0, Q and R) and
the candidate choice it scores: start, warm-up, stable phase, resets, per object."""

import math

import numpy as np
import pytest
import torch
from filterpy.kalman import KalmanFilter

from mosam_train.trackers.boxes import xyxy_to_xyah
from mosam_train.trackers.kalman import (
    KF_WEIGHT_BY_SIZE,
    BoxKalmanFilter,
    MotionSettings,
    MotionState,
    motion_step,
)

SP, SV = 1 / 20, 1 / 160  # PEERS.md section 1 (2)


# ------------------------------------------------------------------ the filter vs filterpy
def peers_filter() -> KalmanFilter:
    """filterpy's filter with PEERS.md's F and H (P0, Q and R are set per step)."""
    kf = KalmanFilter(dim_x=8, dim_z=4)
    kf.F = np.eye(8)
    for i in range(4):
        kf.F[i, i + 4] = 1.0
    kf.H = np.hstack([np.eye(4), np.zeros((4, 4))])
    return kf


def peers_initiate(kf: KalmanFilter, z: np.ndarray) -> None:
    h = z[3]
    kf.x = np.concatenate([z, np.zeros(4)])[:, None]
    std = [2 * SP * h, 2 * SP * h, 1e-2, 2 * SP * h, 10 * SV * h, 10 * SV * h, 1e-5, 10 * SV * h]
    kf.P = np.diag(np.square(std))


def peers_predict(kf: KalmanFilter) -> None:
    h = kf.x[3, 0]
    kf.Q = np.diag(np.square([SP * h, SP * h, 1e-2, SP * h, SV * h, SV * h, 1e-5, SV * h]))
    kf.predict()


def peers_update(kf: KalmanFilter, z: np.ndarray) -> None:
    h = kf.x[3, 0]
    kf.R = np.diag(np.square([SP * h, SP * h, 1e-1, SP * h]))
    kf.update(z)


def random_tracks(rng: np.random.Generator, n: int, steps: int) -> np.ndarray:
    """[steps, n, 4] noisy (cx, cy, a, h) of boxes drifting in a 1024 px frame."""
    start = np.column_stack(
        [rng.uniform(100, 900, n), rng.uniform(100, 900, n), rng.uniform(0.4, 2.5, n),
         rng.uniform(20, 600, n)]
    )  # fmt: skip
    velocity = rng.normal(0, [8, 8, 0.02, 4], (n, 4))
    t = np.arange(steps)[:, None, None]
    noise = rng.normal(0, 1, (steps, n, 4)) * np.array([3, 3, 0.05, 3])
    z = start + velocity * t + noise
    z[..., 3] = np.clip(z[..., 3], 10, None)
    return z


def test_the_filter_equals_filterpy_with_peers_matrices_on_random_tracks():
    rng = np.random.default_rng(0)
    n, steps = 6, 60
    z = random_tracks(rng, n, steps)
    kf = BoxKalmanFilter()
    refs = [peers_filter() for _ in range(n)]
    mean, cov = kf.initiate(torch.from_numpy(z[0]))
    for i, ref in enumerate(refs):
        peers_initiate(ref, z[0, i])
    worst = 0.0
    for t in range(1, steps):
        moving = rng.random(n) < 0.9  # the others keep their state this step
        measured = rng.random(n) < 0.75
        restart = rng.random(n) < 0.05
        mean, cov = kf.predict(mean, cov, torch.from_numpy(moving))
        mean, cov = kf.update(mean, cov, torch.from_numpy(z[t]), torch.from_numpy(measured))
        mean, cov = kf.initiate(torch.from_numpy(z[t]), torch.from_numpy(restart), mean, cov)
        for i, ref in enumerate(refs):
            if moving[i]:
                peers_predict(ref)
            if measured[i]:
                peers_update(ref, z[t, i])
            if restart[i]:
                peers_initiate(ref, z[t, i])
            worst = max(
                worst,
                np.abs(mean[i].numpy() - ref.x[:, 0]).max(),
                np.abs(cov[i].numpy() - ref.P).max(),
            )
    assert mean.dtype == torch.float64 and cov.dtype == torch.float64
    assert worst < 1e-9, worst


def test_a_step_leaves_the_objects_outside_where_untouched():
    kf = BoxKalmanFilter()
    mean, cov = kf.initiate(torch.tensor([[100.0, 100.0, 1.0, 50.0], [300.0, 200.0, 0.5, 80.0]]))
    keep = torch.tensor([True, False])
    p_mean, p_cov = kf.predict(mean, cov, keep)
    assert not torch.equal(p_cov[0], cov[0]) and torch.equal(p_cov[1], cov[1])
    z = torch.tensor([[110.0, 100.0, 1.0, 50.0], [0.0, 0.0, 0.0, 0.0]])
    u_mean, _ = kf.update(p_mean, p_cov, z, keep)
    assert u_mean[0, 0] > 100 and torch.equal(u_mean[1], p_mean[1])


# ------------------------------------------------------------------ SAMURAI's choice
def box(x1: float, y1: float, x2: float, y2: float) -> list[float]:
    return [x1, y1, x2, y2]


TARGET = box(100, 100, 150, 200)  # where the filter expects the object
ELSEWHERE = box(600, 600, 650, 700)  # a distractor's mask
EMPTY = box(0, 0, 0, 0)


def state_at(boxes: list[list[float]], stable: list[int]) -> MotionState:
    """Filters started at `boxes` (xyxy), at `stable` frames."""
    mean, cov = BoxKalmanFilter().initiate(xyxy_to_xyah(torch.tensor(boxes, dtype=torch.float64)))
    return MotionState(mean, cov, torch.tensor(stable))


def step(state, candidates, ious, **settings):
    return motion_step(
        state,
        torch.tensor(candidates, dtype=torch.float64),
        torch.tensor(ious),
        MotionSettings(**settings),
    )


def test_the_kalman_score_picks_the_candidate_where_the_object_moves_once_stable():
    # SAM 2 would take candidate 0 (predicted IoU 0.9); the filter expects candidate 1:
    # 0.25 * 0 + 0.75 * 0.9 = 0.675 < 0.25 * 1 + 0.75 * 0.8 = 0.85
    cands, ious = [[ELSEWHERE, TARGET, EMPTY]], [[0.9, 0.8, 0.1]]
    out = step(state_at([TARGET], [15]), cands, ious)
    assert out.choice.tolist() == [1]
    assert out.best_iou.tolist() == pytest.approx([0.8])  # the raw predicted IoU, not the score
    assert out.kf_iou.tolist() == [1.0]  # zero velocity: predicted where it was
    assert out.state.stable_frames.tolist() == [15]
    # ... not with a smaller weight (0.05 * 1 + 0.95 * 0.8 = 0.81 < 0.855), nor in the warm-up
    assert step(state_at([TARGET], [15]), cands, ious, kf_weight=0.05).choice.tolist() == [0]
    warm = step(state_at([TARGET], [14]), cands, ious)
    assert warm.choice.tolist() == [0] and math.isnan(warm.kf_iou.item())
    assert step(state_at([TARGET], [3]), cands, ious, stable_frames=3).choice.tolist() == [1]


def test_published_kf_weights_per_size():
    assert MotionSettings().kf_weight == KF_WEIGHT_BY_SIZE["base_plus"] == 0.25
    assert KF_WEIGHT_BY_SIZE["large"] == 0.15
    with pytest.raises(ValueError, match=r"tracker.kf_weight=1.5"):
        MotionSettings(kf_weight=1.5)


def test_start_and_restart_take_sam2s_choice_and_start_the_filter_there():
    out = step(MotionState.initial(1), [[ELSEWHERE, TARGET, EMPTY]], [[0.4, 0.7, 0.9]])
    assert out.choice.tolist() == [2]  # highest predicted IoU, even an empty mask...
    assert out.state.stable_frames.tolist() == [0]  # ... which gives no box to start from
    assert math.isnan(out.kf_iou.item())
    out = step(MotionState.initial(1), [[ELSEWHERE, TARGET, EMPTY]], [[0.4, 0.7, 0.2]])
    assert out.choice.tolist() == [1] and out.state.stable_frames.tolist() == [1]
    assert out.state.mean[0].tolist() == [125, 150, 0.5, 100, 0, 0, 0, 0]
    assert torch.equal(out.state.covariance, state_at([TARGET], [1]).covariance)


def test_warm_up_updates_above_the_iou_threshold_and_resets_otherwise():
    state = state_at([TARGET], [5])
    moved = box(110, 100, 160, 200)
    kept = step(state, [[moved, ELSEWHERE, EMPTY]], [[0.31, 0.2, 0.1]])
    assert kept.choice.tolist() == [0] and kept.state.stable_frames.tolist() == [6]
    assert 125 < kept.state.mean[0, 0] < 135  # pulled towards the new box
    reset = step(state, [[moved, ELSEWHERE, EMPTY]], [[0.3, 0.2, 0.1]])  # not > 0.3
    assert reset.state.stable_frames.tolist() == [0]
    predicted, _ = BoxKalmanFilter().predict(state.mean, state.covariance)
    assert torch.equal(reset.state.mean, predicted)  # predicted, never updated


def test_stable_phase_resets_when_the_chosen_iou_is_below_the_threshold():
    state = state_at([TARGET], [20])
    predicted, _ = BoxKalmanFilter().predict(state.mean, state.covariance)
    low = step(state, [[TARGET, ELSEWHERE, EMPTY]], [[0.29, 0.1, 0.0]])
    assert low.choice.tolist() == [0] and low.kf_iou.tolist() == [1.0]
    assert low.state.stable_frames.tolist() == [0] and torch.equal(low.state.mean, predicted)
    edge = step(state, [[box(104, 100, 154, 200), ELSEWHERE, EMPTY]], [[0.3, 0.1, 0.0]])
    assert edge.state.stable_frames.tolist() == [20]  # 0.3 is not below 0.3: update
    assert edge.state.mean[0, 0] > predicted[0, 0]
    # a chosen mask without height gives no measurement: reset, as a failed frame
    empty = step(state, [[EMPTY, ELSEWHERE, EMPTY]], [[0.9, 0.1, 0.0]], kf_weight=0.0)
    assert empty.choice.tolist() == [0] and empty.state.stable_frames.tolist() == [0]
    assert torch.isfinite(empty.state.mean).all()


def test_a_stable_filter_keeps_a_moving_object_when_a_distractor_scores_higher():
    state = MotionState.initial(1)
    stable, kf_ious = [], []
    for t in range(30):
        target = box(100 + 5 * t, 100, 150 + 5 * t, 200)
        # from frame 20 on, SAM 2 predicts a higher IoU for the distractor's mask
        ious = [[0.7, 0.9, 0.1]] if t < 20 else [[0.95, 0.8, 0.1]]
        out = step(state, [[ELSEWHERE, target, EMPTY]], ious)
        state = out.state
        stable.append(out.state.stable_frames.item())
        kf_ious.append(out.kf_iou.item())
        assert out.choice.item() == 1, t
    assert stable[:15] == list(range(1, 16)) and stable[15:] == [15] * 15
    assert all(math.isnan(v) for v in kf_ious[:15])  # start and warm-up: not scored
    assert min(kf_ious[15:]) > 0.8  # the filter has learnt the motion
    assert out.state.mean[0, 4] == pytest.approx(5, abs=0.5)  # vx, px per frame


def test_objects_in_one_batch_decide_as_if_alone():
    states = [
        MotionState.initial(1),
        state_at([TARGET], [5]),
        state_at([TARGET], [15]),
        state_at([ELSEWHERE], [40]),
    ]
    cands = [
        [TARGET, ELSEWHERE, EMPTY],
        [box(105, 100, 155, 200), ELSEWHERE, EMPTY],
        [ELSEWHERE, TARGET, EMPTY],
        [TARGET, ELSEWHERE, EMPTY],
    ]
    ious = [[0.5, 0.7, 0.1], [0.6, 0.2, 0.1], [0.9, 0.8, 0.1], [0.4, 0.25, 0.1]]
    batch = MotionState(
        torch.cat([s.mean for s in states]),
        torch.cat([s.covariance for s in states]),
        torch.cat([s.stable_frames for s in states]),
    )
    together = step(batch, cands, ious)
    for i, state in enumerate(states):
        alone = step(state, cands[i : i + 1], ious[i : i + 1])
        assert together.choice[i] == alone.choice[0]
        assert torch.equal(together.kf_iou[i : i + 1].nan_to_num(-1), alone.kf_iou.nan_to_num(-1))
        assert torch.allclose(together.state.mean[i], alone.state.mean[0], rtol=0, atol=1e-9)
        assert torch.allclose(
            together.state.covariance[i], alone.state.covariance[0], rtol=0, atol=1e-9
        )
        assert together.state.stable_frames[i] == alone.state.stable_frames[0]
    assert together.choice.tolist() == [1, 0, 1, 1]
    # the last one: the filter's choice has predicted IoU 0.25 < 0.3, a reset
    assert together.state.stable_frames.tolist() == [1, 6, 15, 0]


def test_inactive_objects_keep_their_state_and_take_sam2s_choice():
    state = state_at([TARGET, TARGET], [20, 20])
    out = motion_step(
        state,
        torch.tensor([[ELSEWHERE, TARGET, EMPTY]] * 2, dtype=torch.float64),
        torch.tensor([[0.9, 0.8, 0.1]] * 2),
        active=torch.tensor([True, False]),
    )
    assert out.choice.tolist() == [1, 0]
    assert out.kf_iou[0] == 1.0 and math.isnan(out.kf_iou[1].item())
    assert torch.equal(out.state.mean[1], state.mean[1])
    assert torch.equal(out.state.covariance[1], state.covariance[1])
    assert not torch.equal(out.state.covariance[0], state.covariance[0])


def test_the_state_round_trips_through_a_memory_bank_state():
    state = MotionState.initial(3)
    stored = state.to_state()
    assert set(stored) == {"kf_mean", "kf_covariance", "stable_frames"}
    assert all(v.shape[0] == 3 for v in stored.values())
    back = MotionState.from_state(stored)
    assert back.mean is state.mean and back.stable_frames is state.stable_frames
