"""SAMURAI's motion model: a constant-velocity Kalman filter on each object's mask box, and
the choice among SAM 2's candidate masks that it scores (Yang et al., arXiv 2411.11922;
reimplemented from the published description, shared/PEERS.md section 1).

The filter (DeepSORT's): state (cx, cy, a = w / h, h, vx, vy, va, vh) in the masks' pixel
grid (SAM 2's model space), F = I8 with F[i, i + 4] = 1, H = [I4 0]; noise scaled by the
current mean's height h with sigma_p = 1/20, sigma_v = 1/160:

    P0 = diag(2 sp h, 2 sp h, 1e-2, 2 sp h, 10 sv h, 10 sv h, 1e-5, 10 sv h)^2  (h: measured)
    Q  = diag(sp h, sp h, 1e-2, sp h, sv h, sv h, 1e-5, sv h)^2                (h: before predict)
    R  = diag(sp h, sp h, 1e-1, sp h)^2                                        (h: predicted)

Every object has its own filter (SAMURAI keeps one on the model, hence single-object); all
of a batch's objects step at once as tensors with the objects on dim 0, the layout of the
engine's per-object `MemoryBank.state`. The state is torch float64: the covariance spans
h^2 * 1e-2 (hundreds at 1024 px) down to the aspect velocity's 1e-10, which float32 cannot
hold side by side, and torch keeps it on the bank's device with no host round trip per
candidate (SAMURAI's numpy filter synchronises with the GPU for each).

Candidate choice per object (`motion_step`), by the object's `stable_frames` count:

- 0 (start, or after a reset): the candidate of highest predicted IoU; the filter starts
  from its box (stable_frames 1);
- 1 .. 14 (warm-up): predict; the candidate of highest predicted IoU; update with its box
  if its predicted IoU > 0.3 (stable_frames + 1), else reset (stable_frames 0);
- 15 and more (stable): predict; the candidate of highest
  `kf_weight * IoU(Kalman box, candidate box) + (1 - kf_weight) * predicted IoU`; reset if
  its predicted IoU < 0.3, else update with its box.

One departure, where SAMURAI divides by zero: a chosen mask without height (empty, or one
pixel row; its aspect would be w / 0) gives the filter no measurement, so it does not start
the filter and resets it in the warm-up and stable phases (SAMURAI's filter turns NaN there
and stays NaN).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mosam_train.trackers.boxes import box_iou, xyah_to_xyxy, xyxy_to_xyah

#: SAMURAI's published kf_weight (alpha_kf) per SAM 2.1 size (its configs
#: sam2.1_hiera_{t,s,b+,l}.yaml); its paper's ablation on the large size: 0.15 is best
KF_WEIGHT_BY_SIZE = {"tiny": 0.25, "small": 0.25, "base_plus": 0.25, "large": 0.15}


def _keep(where: torch.Tensor | None, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """`new` for the objects in `where` (bool [N]; None: all), `old` for the others."""
    if where is None:
        return new
    return torch.where(where.view(-1, *([1] * (new.dim() - 1))), new, old)


class BoxKalmanFilter:
    """The constant-velocity filter above for N objects at once: means [N, 8], covariances
    [N, 8, 8], measurements [N, 4] (cx, cy, a, h); float64. `where` (bool [N]) limits a
    step to some objects; the others keep the mean and covariance they are given."""

    ndim = 4

    def __init__(self, std_position: float = 1 / 20, std_velocity: float = 1 / 160) -> None:
        self.std_position = float(std_position)
        self.std_velocity = float(std_velocity)

    def _diag(self, h: torch.Tensor, scale_p: float, scale_v: float | None, aspect: tuple):
        """diag(std)^2 [N, 8, 8] (or [N, 4, 4] without `scale_v`) for heights `h` [N]."""
        p = scale_p * self.std_position * h
        a = torch.full_like(h, aspect[0])
        std = [p, p, a, p]
        if scale_v is not None:
            v = scale_v * self.std_velocity * h
            std += [v, v, torch.full_like(h, aspect[1]), v]
        return torch.diag_embed(torch.stack(std, -1).square())

    def initiate(
        self,
        z: torch.Tensor,
        where: torch.Tensor | None = None,
        mean: torch.Tensor | None = None,
        covariance: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Filters started at measurements `z` [N, 4], with zero velocity; with `where`,
        only those objects start and the others keep `mean` / `covariance`."""
        z = z.to(torch.float64)
        new_mean = torch.cat([z, torch.zeros_like(z)], -1)
        new_cov = self._diag(z[:, 3], 2, 10, (1e-2, 1e-5))
        if where is None:
            return new_mean, new_cov
        return _keep(where, new_mean, mean), _keep(where, new_cov, covariance)

    def predict(
        self, mean: torch.Tensor, covariance: torch.Tensor, where: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step ahead: x = F x, P = F P F^T + Q (Q from the height before the step)."""
        f = torch.eye(8, dtype=mean.dtype, device=mean.device)
        f[range(4), range(4, 8)] = 1
        new_mean = mean @ f.T
        new_cov = f @ covariance @ f.T + self._diag(mean[:, 3], 1, 1, (1e-2, 1e-5))
        return _keep(where, new_mean, mean), _keep(where, new_cov, covariance)

    def project(
        self, mean: torch.Tensor, covariance: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The measurement the filter expects, H x [N, 4], and its covariance H P H^T + R
        [N, 4, 4] (R from the mean's height)."""
        return mean[:, :4], covariance[:, :4, :4] + self._diag(mean[:, 3], 1, None, (1e-1,))

    def update(
        self,
        mean: torch.Tensor,
        covariance: torch.Tensor,
        z: torch.Tensor,
        where: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Correct with measurements `z` [N, 4]: K = P H^T S^-1, x += K (z - H x),
        P -= K S K^T. Objects outside `where` may hold any state (no error is raised for
        them: their results are discarded)."""
        projected, s = self.project(mean, covariance)
        chol, _ = torch.linalg.cholesky_ex(s)
        gain_t = torch.cholesky_solve(covariance[:, :4, :], chol)  # S^-1 H P = K^T, [N, 4, 8]
        gain = gain_t.transpose(1, 2)
        innovation = z.to(mean.dtype) - projected
        new_mean = mean + (gain @ innovation[:, :, None])[:, :, 0]
        new_cov = covariance - gain @ s @ gain_t
        return _keep(where, new_mean, mean), _keep(where, new_cov, covariance)


@dataclass(frozen=True)
class MotionSettings:
    """SAMURAI's motion constants (defaults: its published ones; `kf_weight` 0.25 is that of
    SAM 2.1 tiny, small and base+, 0.15 that of large: `KF_WEIGHT_BY_SIZE`).

    kf_weight: alpha_kf, the Kalman IoU's weight in the candidate score (0: SAM 2's choice,
    the filter still running); stable_frames: frames of warm-up before the score is used;
    stable_iou: the predicted IoU below which the filter resets; std_position /
    std_velocity: sigma_p / sigma_v, the filter's noise per pixel of height.
    """

    kf_weight: float = 0.25
    stable_frames: int = 15
    stable_iou: float = 0.3
    std_position: float = 1 / 20
    std_velocity: float = 1 / 160

    def __post_init__(self) -> None:
        if not 0 <= self.kf_weight <= 1:
            raise ValueError(
                f"tracker.kf_weight={self.kf_weight}: a weight between 0 and 1. Fix: "
                f"SAMURAI uses 0.25 (SAM 2.1 tiny, small, base+) or 0.15 (large)."
            )
        if self.stable_frames < 1:
            raise ValueError(
                f"tracker.stable_frames={self.stable_frames}: must be >= 1 (SAMURAI: 15)."
            )
        if self.std_position <= 0 or self.std_velocity <= 0:
            raise ValueError(
                f"tracker.std_position={self.std_position}, tracker.std_velocity="
                f"{self.std_velocity}: must be > 0 (SAMURAI: 1/20 and 1/160)."
            )

    def filter(self) -> BoxKalmanFilter:
        """The Kalman filter with these noise settings."""
        return BoxKalmanFilter(self.std_position, self.std_velocity)


@dataclass
class MotionState:
    """Each object's filter: mean [N, 8] and covariance [N, 8, 8] (float64), and
    stable_frames [N] long (0: to start at the next step)."""

    mean: torch.Tensor
    covariance: torch.Tensor
    stable_frames: torch.Tensor

    KEYS = ("kf_mean", "kf_covariance", "stable_frames")

    @classmethod
    def initial(cls, num_objects: int, device: torch.device | str = "cpu") -> MotionState:
        """Filters not started yet (finite placeholders: every object starts at its first
        step)."""
        return cls(
            torch.zeros(num_objects, 8, dtype=torch.float64, device=device),
            torch.eye(8, dtype=torch.float64, device=device).expand(num_objects, 8, 8).clone(),
            torch.zeros(num_objects, dtype=torch.long, device=device),
        )

    def to_state(self) -> dict[str, torch.Tensor]:
        """As entries of a `MemoryBank.state` (objects on dim 0)."""
        return dict(zip(self.KEYS, (self.mean, self.covariance, self.stable_frames), strict=True))

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MotionState:
        """Read back from a `MemoryBank.state` written by `to_state`."""
        return cls(*(state[k] for k in cls.KEYS))


@dataclass
class MotionStep:
    """One frame's decision per object: `choice` [N] long, the chosen candidate;
    `best_iou` [N], its predicted IoU; `kf_iou` [N] float64, the IoU of its box with the
    filter's prediction, NaN where the score was not used (start and warm-up: the memory
    gate then skips its motion test, as SAMURAI's does); `state`, the filters after it."""

    choice: torch.Tensor
    best_iou: torch.Tensor
    kf_iou: torch.Tensor
    state: MotionState


def motion_step(
    state: MotionState,
    boxes: torch.Tensor,
    pred_iou: torch.Tensor,
    settings: MotionSettings = MotionSettings(),
    active: torch.Tensor | None = None,
) -> MotionStep:
    """SAMURAI's candidate choice (module docstring) for N objects at once, from each
    candidate's box [N, K, 4] (xyxy, `boxes.mask_boxes`) and predicted IoU [N, K]. Objects
    outside `active` (bool [N]; None: all) keep their state and take SAM 2's choice (highest
    predicted IoU), with kf_iou NaN. No host synchronisation."""
    kf = settings.filter()
    iou = pred_iou.to(torch.float64)
    stable = state.stable_frames
    start = stable == 0
    scored = stable >= settings.stable_frames
    predicted_mean, predicted_cov = kf.predict(state.mean, state.covariance)
    kf_ious = box_iou(xyah_to_xyxy(predicted_mean[:, :4]), boxes.to(torch.float64))
    score = settings.kf_weight * kf_ious + (1 - settings.kf_weight) * iou
    if active is not None:
        scored = scored & active
    choice = torch.where(scored, score.argmax(-1), iou.argmax(-1))
    rows = torch.arange(len(choice), device=choice.device)
    # thresholds compare in the predicted IoU's own dtype, as SAMURAI's do (0.3 in float32
    # is not above 0.3 in float32, but is above 0.3 in float64)
    best_iou, box = pred_iou[rows, choice], boxes[rows, choice].to(torch.float64)
    z = xyxy_to_xyah(box)
    measured = z[:, 3] > 0  # a box with height: see the module docstring
    # start: from the chosen box; warm-up / stable: predict, then update or reset
    started = start & measured
    warm_ok = ~start & ~scored & (best_iou > settings.stable_iou) & measured
    stable_ok = scored & (best_iou >= settings.stable_iou) & measured
    # an object not started keeps its placeholder (no drift while its masks are empty)
    base_mean = _keep(start, state.mean, predicted_mean)
    base_cov = _keep(start, state.covariance, predicted_cov)
    mean, cov = kf.initiate(z, started, base_mean, base_cov)
    mean, cov = kf.update(mean, cov, z, warm_ok | stable_ok)
    stable_frames = torch.where(
        started | warm_ok, stable + 1, torch.where(stable_ok, stable, torch.zeros_like(stable))
    )
    if active is not None:
        mean = _keep(active, mean, state.mean)
        cov = _keep(active, cov, state.covariance)
        stable_frames = torch.where(active, stable_frames, stable)
    kf_iou = torch.where(scored, kf_ious[rows, choice], torch.nan)
    return MotionStep(choice, best_iou, kf_iou, MotionState(mean, cov, stable_frames))
