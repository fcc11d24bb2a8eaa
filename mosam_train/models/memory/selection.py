"""Spatial-Temporal Memory Selection: which past frames SAM 2's memory attention reads.

Temporal selection (Rate & Rank): the candidates of frame t are t - Δ, t - 2Δ, ..., t - nΔ;
each was rated by the frame-confidence head when its memory was written; every object keeps
its own top-k (ties, e.g. a fresh head, go to the more recent frame). Prompted frames are
always kept, as in SAM 2.

Temporal position of a kept frame (our choice): its rank by recency among the kept frames,
i.e. the most recent kept frame takes SAM 2's slot for t-1, the next one the slot for t-2,
and so on. SAM 2's temporal embeddings index memory slots, not time: it trains them on
consecutive frames and applies them to strided frames at evaluation
(`memory_temporal_stride_for_eval`), so a slot index is what they know.

Δ is given in frames of the video as the engine processes it; a training clip whose steps
are `frame_step` engine frames apart (SA-V annotations: every 4th frame, YouTube-VOS: every
5th) uses round(Δ / frame_step) clip steps, so one setting means one time span everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mosam_train.models.memory.heads import FrameConfidenceHead, PixelConfidenceHead

log = logging.getLogger(__name__)

#: the past frames SAM 2 attends to: num_maskmem - 1 (7 - 1 in every SAM 2 config)
SAM2_WINDOW = 6


def warn_if_within_window(
    stride: int, candidates: int, setting: str, window: int = SAM2_WINDOW
) -> bool:
    """Warn (and return True) when candidates t-Δ, ..., t-nΔ all lie within SAM 2's window
    of the last `window` frames: the selection then never reaches a frame SAM 2 would not
    read anyway, so it cannot act (it can only leave some of them out). The pass-through
    setting, stride 1 with `window` candidates (SAM 2's window itself), stays silent.
    `setting` names the config node in the message (e.g. "model.stms")."""
    if stride * candidates > window or (stride == 1 and candidates == window):
        return False
    log.warning(
        "%s: stride %d x candidates %d = %d frames back does not reach past SAM 2's window "
        "of the last %d frames, so memory selection cannot act (it can only leave out "
        "frames SAM 2 reads anyway). Fix: set %s.stride x %s.candidates above %d (e.g. "
        "stride=2 candidates=12), or stride=1 candidates=%d for SAM 2's window as it is.",
        setting, stride, candidates, stride * candidates, window, setting, setting, window,
        window,
    )  # fmt: skip
    return True


class MemorySelection(nn.Module):
    """`frame` / `pixel` switch the two heads; with `frame` off the top-k are the most recent
    candidates, with `pixel` off memory tokens are not filtered."""

    def __init__(
        self,
        num_maskmem: int,
        mem_dim: int,
        stride: int = 2,
        candidates: int = 12,
        top_k: int = 6,
        frame: bool = True,
        pixel: bool = True,
        frame_hidden: int = 64,
        pixel_hidden: int = 32,
    ) -> None:
        super().__init__()
        slots = num_maskmem - 1
        if not 1 <= top_k <= slots:
            raise ValueError(
                f"model.stms.top_k={top_k}, but this SAM 2 has {slots} memory slots for past "
                f"frames (num_maskmem={num_maskmem}, one slot is the prompted frame's). "
                f"Fix: set model.stms.top_k between 1 and {slots}."
            )
        if candidates < top_k:
            raise ValueError(
                f"model.stms.candidates={candidates} < top_k={top_k}: nothing to select from. "
                f"Fix: candidates >= top_k."
            )
        if stride < 1:
            raise ValueError(f"model.stms.stride={stride}: must be >= 1")
        warn_if_within_window(stride, candidates, "model.stms", window=slots)
        self.stride = int(stride)
        self.num_candidates = int(candidates)
        self.top_k = int(top_k)
        self.frame_head = FrameConfidenceHead(mem_dim, frame_hidden) if frame else None
        self.pixel_head = PixelConfidenceHead(mem_dim, pixel_hidden) if pixel else None

    def step(self, frame_step: int = 1) -> int:
        """Δ in processed frames for frames `frame_step` engine frames apart."""
        return max(1, round(self.stride / max(1, frame_step)))

    def horizon(self, frame_step: int = 1) -> int:
        """How many processed frames back the oldest candidate lies."""
        return self.num_candidates * self.step(frame_step)

    def candidates(self, frame_idx: int, frame_step: int = 1) -> list[int]:
        """Candidate frame indices, most recent first."""
        d = self.step(frame_step)
        return [t for t in (frame_idx - j * d for j in range(1, self.num_candidates + 1)) if t >= 0]

    def select(
        self, frame_idx: int, pool: Mapping[int, dict[str, Any]], frame_step: int = 1
    ) -> tuple[list[dict[str, Any]], torch.Tensor | None]:
        """The candidate entries found in `pool` and, per object, which to keep.

        Returns (entries, index) with entries most recent first and index [k, N] into
        entries (row r: each object's r-th most recent kept frame); index is None when every
        object keeps the same frames, which are then `entries[:k]`.
        """
        entries = [pool[t] for t in self.candidates(frame_idx, frame_step) if t in pool]
        entries = [e for e in entries if e.get("maskmem_features") is not None]
        k = min(self.top_k, len(entries))
        if self.frame_head is None or k == len(entries):
            return entries[:k], None
        scores = torch.stack([e["frame_score"] for e in entries])  # [C, N]
        order = torch.sort(scores, dim=0, descending=True, stable=True).indices[:k]
        return entries, torch.sort(order, dim=0).values
