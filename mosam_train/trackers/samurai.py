"""`tracker=samurai`: SAMURAI's motion scoring and memory gate (Yang et al., arXiv
2411.11922), per object, on the streaming engine; reimplemented from the published
description (shared/PEERS.md section 1).

Two parts, each switchable on its own (both off: SAM 2's rule exactly):

- motion scoring (`motion`): a constant-velocity Kalman filter on each object's chosen mask
  box picks among SAM 2's three candidates by `kf_weight * Kalman IoU + (1 - kf_weight) *
  predicted IoU` once the filter is stable (`trackers/kalman.py`, `motion_step`). Needs a
  model that tracks with three candidates (`multimask_output_for_tracking`); off, SAM 2
  keeps its highest predicted IoU and the rule runs on any model.
- memory gate (`memory_gate`): each object's memory is its prompted frames plus the 6 most
  recent tracked frames of predicted IoU > 0.5, object score > 0 and (once the filter is
  stable) Kalman IoU > 0, t-1 always (`trackers/memory_gate.py`). Off, SAM 2's window.
  With motion scoring off the gate reads SAM 2's own choice's predicted IoU (on a one-mask
  model, its only one) and skips the Kalman test.

Each object's filter (mean, covariance, stable_frames) lives in its group's
`MemoryBank.state`, reset per video; objects never share one (SAMURAI keeps one filter on
the model, hence single-object). With the gate on, each tracked frame's entry keeps what
the gate reads: "best_iou" (the chosen candidate's predicted IoU) and "kf_iou" (its Kalman
IoU, NaN before the filter is stable or with motion scoring off), next to SAM 2's object
score.
"""

from __future__ import annotations

from typing import Any

import torch

from mosam_train.inference.rules import MemoryBank, TrackerRule
from mosam_train.models.video_sam import Candidates, OutputDict, SpatialMemory
from mosam_train.trackers.boxes import mask_boxes
from mosam_train.trackers.kalman import MotionSettings, MotionState, motion_step
from mosam_train.trackers.memory_gate import (
    GateSettings,
    frame_passes,
    gate_memory,
    oldest_needed,
)

# bank.state key of the Kalman IoU `choose` computed for the frame `remember` stores next
PENDING_KF_IOU = "pending_kf_iou"


class Samurai(TrackerRule):
    """motion: SAMURAI's candidate choice on (needs three candidates); kf_weight,
    stable_frames, stable_iou, std_position, std_velocity: its Kalman settings
    (`MotionSettings`); memory_gate: its memory gate on; gate_iou, gate_object_score,
    gate_kf_iou: the gate's thresholds (None: that test off), scan and window: its scan cap
    and memory size (`GateSettings`)."""

    def __init__(
        self,
        motion: bool = True,
        kf_weight: float = 0.25,
        stable_frames: int = 15,
        stable_iou: float = 0.3,
        std_position: float = 1 / 20,
        std_velocity: float = 1 / 160,
        memory_gate: bool = True,
        gate_iou: float | None = 0.5,
        gate_object_score: float | None = 0.0,
        gate_kf_iou: float | None = 0.0,
        scan: int = 15,
        window: int = 6,
    ) -> None:
        self.motion = None
        if motion:
            self.motion = MotionSettings(
                float(kf_weight),
                int(stable_frames),
                float(stable_iou),
                float(std_position),
                float(std_velocity),
            )
        self.gate = None
        if memory_gate:
            thresholds = (gate_iou, gate_object_score, gate_kf_iou)
            self.gate = GateSettings(
                *(None if v is None else float(v) for v in thresholds), int(scan), int(window)
            )
        self.needs_candidates = self.motion is not None

    # ------------------------------------------------------------------ motion scoring
    def initial_state(self, num_objects: int, device: torch.device) -> dict[str, Any]:
        if self.motion is None:
            return {}
        return MotionState.initial(num_objects, device).to_state()

    def choose(self, bank: MemoryBank, frame_idx: int, candidates: Candidates) -> torch.Tensor:
        assert self.motion is not None  # called only when needs_candidates
        boxes = mask_boxes(candidates.high_res_masks)  # SAM 2's model space, as SAMURAI's
        step = motion_step(MotionState.from_state(bank.state), boxes, candidates.ious, self.motion)
        bank.state.update(step.state.to_state())
        bank.state[PENDING_KF_IOU] = step.kf_iou
        return step.choice

    # ------------------------------------------------------------------ memory gate
    def remember(
        self,
        bank: MemoryBank,
        frame_idx: int,
        entry: dict[str, Any],
        out: dict[str, Any],
        *,
        prompted: bool,
        flow: torch.Tensor | None = None,
        truth: torch.Tensor | None = None,
    ) -> None:
        if self.gate is not None and not prompted:
            if "choice" in out:  # motion scoring chose
                best_iou = Candidates.take(out["candidates"].ious, out["choice"])
            else:  # SAM 2's choice: its highest predicted IoU (one-mask model: its only)
                best_iou = out["ious"].amax(-1)
            kf_iou = bank.state.pop(PENDING_KF_IOU, None)
            if kf_iou is None:
                kf_iou = torch.full_like(best_iou, torch.nan, dtype=torch.float64)
            entry = {**entry, "best_iou": best_iou, "kf_iou": kf_iou}
        super().remember(bank, frame_idx, entry, out, prompted=prompted, flow=flow)

    def _scanned(self, pool: dict[int, dict[str, Any]], before: int) -> tuple[list[int], Any]:
        """The tracked frames before `before` whose memory features are still held, most
        recent first, and whether each passes the gate [C, N] (None: no such frame)."""
        frames = sorted(
            (t for t, e in pool.items() if t < before and e.get("maskmem_features") is not None),
            reverse=True,
        )
        if not frames:
            return frames, None
        entries = [pool[t] for t in frames]
        assert self.gate is not None
        passed = frame_passes(
            torch.stack([e["best_iou"] for e in entries]),
            torch.stack([e["object_score_logits"].flatten() for e in entries]),
            torch.stack([e["kf_iou"] for e in entries]),
            self.gate,
        )
        return frames, passed

    def select(self, bank: MemoryBank, frame_idx: int, memory: OutputDict) -> SpatialMemory | None:
        if self.gate is None:
            return None
        pool = memory["non_cond_frame_outputs"]
        frames, passed = self._scanned(pool, frame_idx)
        if not frames:
            return SpatialMemory([])
        gated = gate_memory(frame_idx, frames, passed, self.gate)
        return gated.spatial([pool[t] for t in frames])

    def horizon(
        self, bank: MemoryBank, next_frame: int, model_horizon: tuple[int, int]
    ) -> tuple[int, int]:
        if self.gate is None:
            return model_horizon
        frames, passed = self._scanned(bank.non_cond, next_frame)
        oldest = oldest_needed(frames, passed, self.gate) if frames else None
        oldest_mem, oldest_ptr = model_horizon
        if oldest is not None:
            oldest_mem = min(oldest_mem, oldest)
        return oldest_mem, oldest_ptr


RULE = Samurai
