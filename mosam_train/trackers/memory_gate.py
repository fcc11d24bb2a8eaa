"""SAMURAI's memory gate: which past frames each object's memory attention reads (Yang et
al., arXiv 2411.11922; from the published description, shared/PEERS.md section 1 (3)).

Per object, for tracked frame t: scan the tracked frames t-1, t-2, ... down to the first
tracked frame, keeping frame i iff

    best_iou > 0.5  and  object_score_logit > 0  and  (kf_iou missing or kf_iou > 0)

(best_iou: the chosen candidate's predicted IoU, not its Kalman-weighted score; kf_iou:
the chosen candidate's IoU with the Kalman prediction, missing (NaN) before the filter is
stable), stopping once 15 frames are kept; t-1 is kept even when it fails. The memory is
the 6 most recent kept frames, in SAM 2's temporal slots by rank (the r-th most recent
kept frame takes the slot of t-r). The prompted frames are attended to as in SAM 2, and
the object pointers are SAM 2's (SAMURAI leaves both alone).

So a frame of low predicted IoU, one where the object is absent, and (once the filter is
stable) one whose mask does not overlap the Kalman prediction never enter memory unless
they are t-1.

Two departures from SAMURAI's code: its scan stops at frame 2 (frames 0 and 1 are never
read, an artefact of its loop bounds, PEERS.md section 5.1 item 2); here it reaches the
first tracked frame. And it reads frames by index as tracked frames; here only tracked
frames are scanned, so a video prompted again mid-way works. The 15-frame scan cap bounds
the scan's work; with the defaults (cap 15 >= memory 6) it never changes the memory, it
does when set below the memory size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mosam_train.models.video_sam import SpatialMemory


@dataclass(frozen=True)
class GateSettings:
    """SAMURAI's gate constants (defaults: its published ones, used for all its results).

    iou, object_score, kf_iou: a frame is kept only where its value is above the
    threshold (None: that test is off; kf_iou's is skipped where kf_iou is NaN); scan: the
    scan stops after this many kept frames (SAM 2's max_obj_ptrs_in_encoder - 1); window:
    kept frames in memory (SAM 2's num_maskmem - 1).
    """

    iou: float | None = 0.5
    object_score: float | None = 0.0
    kf_iou: float | None = 0.0
    scan: int = 15
    window: int = 6

    def __post_init__(self) -> None:
        for name in ("scan", "window"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"tracker.{name}={getattr(self, name)}: must be >= 1 (SAMURAI: scan 15, "
                    f"window 6)."
                )


def frame_passes(
    best_iou: torch.Tensor,
    object_score: torch.Tensor,
    kf_iou: torch.Tensor,
    settings: GateSettings = GateSettings(),
) -> torch.Tensor:
    """Whether each frame may enter each object's memory: bool, the inputs' shape (e.g.
    [C, N] for C frames of N objects)."""
    ok = torch.ones_like(best_iou, dtype=torch.bool)
    if settings.iou is not None:
        ok &= best_iou > settings.iou
    if settings.object_score is not None:
        ok &= object_score > settings.object_score
    if settings.kf_iou is not None:
        ok &= kf_iou.isnan() | (kf_iou > settings.kf_iou)
    return ok


@dataclass
class GatedMemory:
    """The gate's decision for one tracked frame.

    frames: the scanned frames, most recent first; scanned: bool [C, N], the frames the scan
    kept per object (at most `scan`, plus t-1); index: long [k, N] into `frames`, row r each
    object's r-th most recent frame in memory, k = min(window, C); valid: bool [k, N],
    whether row r holds a frame for that object (an object may keep fewer than k frames,
    each object its own number).
    """

    frames: list[int]
    scanned: torch.Tensor
    index: torch.Tensor
    valid: torch.Tensor

    def frames_of(self, obj: int) -> list[int]:
        """Object `obj`'s memory frames, most recent first."""
        rows = self.index[:, obj][self.valid[:, obj]].tolist()
        return [self.frames[r] for r in rows]

    def spatial(self, entries: list[dict[str, Any]]) -> SpatialMemory:
        """The memory as the model reads it, `entries` being the memory entries of `frames`
        (slots by rank). Where objects keep different numbers of frames, the rows an object
        does not fill are marked invalid (`SpatialMemory.valid`) and weigh nothing in its
        memory attention."""
        counts = self.valid.sum(0)
        k = int(counts.max()) if counts.numel() else 0
        if k == 0:
            return SpatialMemory([])
        valid = self.valid[:k]
        return SpatialMemory(entries, self.index[:k], valid=None if bool(valid.all()) else valid)


def gate_memory(
    frame_idx: int,
    frames: list[int],
    passed: torch.Tensor,
    settings: GateSettings = GateSettings(),
) -> GatedMemory:
    """Each object's memory for tracked frame `frame_idx` (module docstring), from the
    tracked frames before it, most recent first (`frames`: every one still in memory, down
    to the first) and `frame_passes` of each [C, N]. No host synchronisation."""
    c = len(frames)
    count = passed.long().cumsum(0)
    scanned = passed & (count <= settings.scan)
    if c and frames[0] == frame_idx - 1:
        scanned[0] = True  # t-1, even when it fails
    rank = scanned.long().cumsum(0) - 1
    in_memory = scanned & (rank < settings.window)
    k = min(settings.window, c)
    position = torch.arange(c, device=passed.device)[:, None]
    order = torch.where(in_memory, position, position + c).argsort(0)[:k]
    return GatedMemory(list(frames), scanned, order, in_memory.gather(0, order))


def oldest_needed(
    frames: list[int], passed: torch.Tensor, settings: GateSettings = GateSettings()
) -> int | None:
    """The oldest of `frames` (tracked frames in memory, most recent first; `passed` [C, N]
    as for `gate_memory`) that the gate may still keep for a later frame: each object's
    min(window, scan)-th most recent passing frame (newer ones replace older ones, and a
    frame failing now fails for ever; t-1 is the newest frame). None: no frame is needed."""
    if not frames:
        return None
    n = min(settings.window, settings.scan)
    count = passed.long().cumsum(0)
    needed = (passed & (count <= n)).any(1)
    needed[0] = True
    return frames[int(needed.nonzero().max())]
