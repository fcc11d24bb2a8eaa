"""`tracker=oracle`: memory selection that reads the ground truth, a bound for learned ones.

Each tracked frame t attends, per object, to its prompted frames plus at most `top_k` past
frames (SAM 2's 6 past slots): t-1 (always, with `keep_previous`; else it competes like the
others), and the best of the candidates t-Δ, t-2Δ, ..., t-nΔ (Δ = `stride`, n =
`candidates`, in the engine's frames) by `score`:

- `iou`: the true IoU of that frame's prediction (each object's own mask, at the video's
  resolution) with its ground truth; an object absent and predicted absent scores 1, as J;
- `visible_iou`: the same, but a frame where the object is absent in the ground truth is
  worth 0 (an absent object is no memory of it);
- `recency`: the most recent candidates (SAM 2's rule restated: with stride 1, 6
  candidates and slots by rank it is `tracker=sam2` exactly);
- `prompt`: no past frame, the prompted frames alone (object pointers, like every
  setting's, still follow SAM 2's rule; `tracker=cond_only` drops those too).

Ties go to the more recent frame; a frame without annotation ranks below every annotated
one. With `min_score`, a kept frame scoring below it (t-1 included) is left out: its row
weighs nothing, so an object may attend to fewer frames (a ground-truth score only).

Order of the kept frames (`order`): `score`, the top by score, as above; `recency`, the most
recent candidates scoring at least `min_score` (the score then only says which frames are
good enough, and recency which of them to keep). Ranked by score over a long candidate
horizon, old frames displace recent ones while the object is in view; ranked by recency
among the good ones, the window stays SAM 2's while tracking holds and reaches back past a
loss or an absence.

Object pointers (`pointers`): `sam2`, SAM 2's rule (every frame of its pointer window,
t-1 ... t-15, whatever its worth); `kept`, the pointers of the frames each object keeps,
left out with them; `window`, SAM 2's window without the pointers of frames scoring below
`min_score`. Without `kept`, a frame the selection drops still steers tracking
through its pointer, so the bound covers the spatial memory alone.

Temporal slots (`slots`) of the kept frames, SAM 2's `maskmem_tpos_enc`:

- `rank`: the r-th most recent kept frame takes SAM 2's slot for t-r, as SAM 2 does with a
  stride and MoSAM does with its selection;
- `distance`: a frame d frames back takes SAM 2's slot for t-d; frames beyond SAM 2's last
  past slot (t-6) all share that one.

The scores are computed when a frame enters memory, from `truth` (the engine hands it to
rules that need ground truth), so the oracle runs on annotated videos only (eval).
"""

from __future__ import annotations

from typing import Any

import torch

from mosam_train.inference.engine import video_logits
from mosam_train.inference.rules import MemoryBank, TrackerRule
from mosam_train.models.memory.selection import (
    ORDERS,
    POINTER_RULES,
    SAM2_WINDOW,
    SLOT_RULES,
    candidate_frames,
    keep_frames,
    warn_if_within_window,
    window_pointers,
)
from mosam_train.models.video_sam import OutputDict, SpatialMemory

SCORES = ("iou", "visible_iou", "recency", "prompt")


def truth_scores(pred_masks: torch.Tensor, truth: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """{"true_iou": [N], "true_present": [N]} of a frame's low-resolution mask logits [N, 1, h, w]
    against its ground truth bool [N, H, W]; NaN where the frame is not annotated (None)."""
    n = pred_masks.shape[0]
    if truth is None:
        unknown = torch.full((n,), float("nan"), device=pred_masks.device)
        return {"true_iou": unknown, "true_present": unknown}
    pred = video_logits(pred_masks.float(), tuple(truth.shape[-2:]))[:, 0] > 0
    truth = truth.to(pred.device, torch.bool)
    inter = (pred & truth).flatten(1).sum(1)
    union = (pred | truth).flatten(1).sum(1)
    iou = torch.where(
        union > 0, inter / union.clamp(min=1), torch.ones_like(inter, dtype=torch.float)
    )
    return {"true_iou": iou.float(), "true_present": truth.flatten(1).any(1).float()}


class Oracle(TrackerRule):
    """score: one of `SCORES`; stride (Δ) and candidates (n): the candidate frames t-Δ ...
    t-nΔ; slots: one of `SLOT_RULES`; top_k: past frames kept per object (t-1 included);
    keep_previous: t-1 always kept; min_score: kept frames below it left out (None: none);
    pointers: one of `POINTER_RULES`; order: one of `ORDERS`."""

    def __init__(
        self,
        score: str = "visible_iou",
        stride: int = 1,
        candidates: int = 12,
        slots: str = "rank",
        top_k: int = SAM2_WINDOW,
        keep_previous: bool = True,
        min_score: float | None = None,
        pointers: str = "sam2",
        order: str = "score",
    ) -> None:
        if score not in SCORES:
            raise ValueError(
                f"tracker.score={score!r}: not an oracle score. Fix: one of {', '.join(SCORES)}."
            )
        if slots not in SLOT_RULES:
            raise ValueError(
                f"tracker.slots={slots!r}: not a slot rule. Fix: one of {', '.join(SLOT_RULES)}."
            )
        if pointers not in POINTER_RULES:
            raise ValueError(
                f"tracker.pointers={pointers!r}: not a pointer rule. "
                f"Fix: one of {', '.join(POINTER_RULES)}."
            )
        if order not in ORDERS:
            raise ValueError(
                f"tracker.order={order!r}: not an order. Fix: one of {', '.join(ORDERS)}."
            )
        if order == "recency" and (min_score is None or score not in ("iou", "visible_iou")):
            raise ValueError(
                f"tracker.order=recency with tracker.score={score} and tracker.min_score="
                f"{min_score}: recency among the good frames needs a ground-truth score and "
                "the threshold that says which are good. Fix: tracker.score=iou (or "
                "visible_iou) and tracker.min_score=0.3, or tracker.order=score."
            )
        if pointers == "window" and min_score is None:
            raise ValueError(
                "tracker.pointers=window leaves out the pointers of frames scoring below "
                "tracker.min_score, which is null. Fix: tracker.min_score=0.3 (for example), "
                "or tracker.pointers=sam2."
            )
        if min_score is not None and score not in ("iou", "visible_iou"):
            raise ValueError(
                f"tracker.min_score={min_score} with tracker.score={score}: only a ground-truth "
                "score (iou, visible_iou) has a worth to threshold. Fix: tracker.min_score=null."
            )
        for name, value in (("stride", stride), ("candidates", candidates), ("top_k", top_k)):
            if int(value) < 1:
                raise ValueError(f"tracker.{name}={value}: must be >= 1")
        self.score, self.slots = score, slots
        self.stride, self.num_candidates, self.top_k = int(stride), int(candidates), int(top_k)
        self.keep_previous, self.pointers, self.order = bool(keep_previous), pointers, order
        self.min_score = None if min_score is None else float(min_score)
        self.needs_ground_truth = score in ("iou", "visible_iou")
        if score != "prompt":
            warn_if_within_window(self.stride, self.num_candidates, "tracker")

    def candidates(self, frame_idx: int) -> list[int]:
        """t-1, then t-Δ, ..., t-nΔ (frames >= 0, each once), most recent first."""
        return candidate_frames(frame_idx, self.stride, self.num_candidates)

    def _scores(self, entries: list[dict[str, Any]]) -> torch.Tensor:
        """[C, N]: each candidate's true worth per object (higher is kept first)."""
        iou = torch.stack([e["true_iou"] for e in entries])
        if self.score == "visible_iou":
            iou = iou * torch.stack([e["true_present"] for e in entries])
        return iou.nan_to_num(nan=-1.0)  # not annotated: below every annotated frame

    def select(self, bank: MemoryBank, frame_idx: int, memory: OutputDict) -> SpatialMemory:
        if self.score == "prompt":
            return SpatialMemory([])
        pool = memory["non_cond_frame_outputs"]
        frames = [
            t
            for t in self.candidates(frame_idx)
            if t in pool and pool[t].get("maskmem_features") is not None
        ]
        if not frames:
            return SpatialMemory([])
        entries = [pool[t] for t in frames]
        scores = None if self.score == "recency" else self._scores(entries)
        kept = keep_frames(
            frame_idx,
            frames,
            entries,
            scores,
            self.top_k,
            slots=self.slots,
            keep_previous=self.keep_previous,
            order=self.order,
            min_score=self.min_score,
            pointers=self.pointers,
        )
        if self.pointers == "window":
            kept.pointers = window_pointers(frame_idx, pool, self._scores, self.min_score)
        return kept

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
        if self.needs_ground_truth and not prompted:  # prompted frames are never candidates
            entry = {**entry, **truth_scores(out["pred_masks"], truth)}
        super().remember(bank, frame_idx, entry, out, prompted=prompted, flow=flow)

    def horizon(
        self, bank: MemoryBank, next_frame: int, model_horizon: tuple[int, int]
    ) -> tuple[int, int]:
        oldest_mem, oldest_ptr = model_horizon
        if self.score != "prompt":
            oldest_mem = min(oldest_mem, next_frame - self.stride * self.num_candidates)
        return oldest_mem, oldest_ptr


RULE = Oracle
