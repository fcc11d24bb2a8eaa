"""Spatial-Temporal Memory Selection: which past frames SAM 2's memory attention reads.

Temporal selection (Rate & Rank): the candidates of frame t are t - 1 (always kept, as SAM 2
always keeps it: the frame most like the current one) and t - Δ, t - 2Δ, ..., t - nΔ; each
was rated by the frame-confidence head when its memory was written; every object keeps its
own top-k (ties, e.g. a fresh head, go to the more recent frame). Prompted frames are always
kept, as in SAM 2.

Temporal position of a kept frame (`slots`): `rank`, its rank by recency among the kept
frames (the most recent kept frame takes SAM 2's slot for t-1, the next one the slot for
t-2, and so on), or `distance`, SAM 2's slot for its true distance (clamped to SAM 2's last
slot beyond it). SAM 2's temporal embeddings index memory slots, not time: it trains them
on consecutive frames and applies them to strided frames at evaluation
(`memory_temporal_stride_for_eval`). The oracle rules (`tracker=oracle`) measure both.

Δ is given in frames of the video as the engine processes it; a training clip whose steps
are `frame_step` engine frames apart (SA-V annotations: every 4th frame, YouTube-VOS: every
5th) uses round(Δ / frame_step) clip steps, so one setting means one time span everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from mosam_train.models.memory.heads import FrameConfidenceHead, PixelConfidenceHead
from mosam_train.models.video_sam import PointerMemory, SpatialMemory

log = logging.getLogger(__name__)

#: the past frames SAM 2 attends to: num_maskmem - 1 (7 - 1 in every SAM 2 config)
SAM2_WINDOW = 6
#: how a kept frame's temporal slot is chosen (see the module docstring)
SLOT_RULES = ("rank", "distance")
#: which frames are kept: the top by score, or the most recent scoring at least a threshold
ORDERS = ("score", "recency")
#: the past frames whose object pointers SAM 2 reads: max_obj_ptrs_in_encoder - 1 (16 - 1
#: in every SAM 2 config)
SAM2_POINTER_WINDOW = 15
#: whose object pointers an object reads: SAM 2's window, those of the frames it keeps, or
#: SAM 2's window without the frames scored below the threshold
POINTER_RULES = ("sam2", "kept", "window")


def candidate_frames(
    frame_idx: int, stride: int, count: int, keep_previous: bool = True
) -> list[int]:
    """t-1 (with `keep_previous`), then t-Δ, ..., t-nΔ: frames >= 0, each once, most recent
    first."""
    frames = [frame_idx - j * stride for j in range(1, count + 1)]
    if keep_previous:
        frames.insert(0, frame_idx - 1)
    return [t for t in dict.fromkeys(frames) if t >= 0]


def keep_frames(
    frame_idx: int,
    frames: list[int],
    entries: list[dict[str, Any]],
    scores: torch.Tensor | None,
    top_k: int,
    *,
    slots: str = "rank",
    keep_previous: bool = True,
    order: str = "score",
    min_score: float | None = None,
    pointers: str = "sam2",
) -> SpatialMemory:
    """Each object's kept frames among `entries` (frames `frames`, most recent first), in
    slots by `slots`, with frame t-1 always kept under `keep_previous`.

    `order="score"`: the top-k by `scores` [C, N] (higher first, ties to the more recent
    frame; None: by recency, the same frames for every object); `"recency"`: the most
    recent frames scoring at least `min_score`. With `min_score` a kept frame scoring below
    it (t-1 included) is left out (its row invalid); `pointers="kept"` reads the object
    pointers of the frames each object keeps instead of SAM 2's window (`"window"` is the
    caller's, `window_pointers`). The last three are what the oracle bounds showed a
    selection gains from (README, The shipped base).
    """
    if not entries:
        return SpatialMemory([])
    if scores is None and (min_score is not None or order == "recency"):
        raise ValueError("a threshold or recency among the good frames needs frame scores")
    rank = scores
    if order == "recency":  # good or not; ties (all the good ones) go to the recent
        rank = (scores >= min_score).float()
    k = min(top_k, len(entries))
    if rank is None or k == len(entries):
        kept = frames[:k]
        back = torch.tensor([frame_idx - t for t in kept]) if slots == "distance" else None
        memory = SpatialMemory(entries[:k], None, back)
    else:
        if keep_previous and frames[0] == frame_idx - 1:
            rank = rank.clone()
            rank[0] = float("inf")
        best = torch.sort(rank, dim=0, descending=True, stable=True).indices[:k]
        index = torch.sort(best, dim=0).values  # row r: each object's r-th most recent
        back = None
        if slots == "distance":
            back = torch.tensor([frame_idx - t for t in frames], device=index.device)[index]
        memory = SpatialMemory(entries, index, back)
    if min_score is None and pointers != "kept":
        return memory
    index = memory.index
    if index is None:  # the same frames for every object
        first = entries[0]["maskmem_features"]
        index = torch.arange(len(memory.entries), device=first.device)[:, None]
        index = index.expand(-1, first.shape[0])
    if min_score is not None:
        memory.valid = scores.gather(0, index.to(scores.device)) >= min_score
    if pointers == "kept":
        kept_frames = torch.tensor(frames[: len(memory.entries)], device=index.device)
        distance = frame_idx - kept_frames[index]
        memory.pointers = PointerMemory(memory.entries, index, distance, memory.valid)
    return memory


def window_pointers(
    frame_idx: int,
    pool: Mapping[int, dict[str, Any]],
    score: Callable[[list[dict[str, Any]]], torch.Tensor],
    min_score: float,
    window: int = SAM2_POINTER_WINDOW,
) -> PointerMemory | None:
    """SAM 2's object pointers (those of the frames t-1 ... t-`window` found in `pool`) with
    each object's pointers of frames scoring below `min_score` left out; `score(entries)`
    gives [C, N]. None where none is left out: SAM 2's own rule then reads them, bit for
    bit. Unlike `pointers="kept"`, a frame head that cannot yet tell good frames from bad
    ones (a fresh one rates every frame alike) leaves SAM 2's fifteen pointers as they are,
    where the kept frames' would be six."""
    frames = [t for t in range(frame_idx - 1, frame_idx - window - 1, -1) if t >= 0 and t in pool]
    if not frames:
        return None
    entries = [pool[t] for t in frames]
    valid = score(entries) >= min_score
    if bool(valid.all()):
        return None
    n = valid.shape[1]
    index = torch.arange(len(frames), device=valid.device)[:, None].expand(-1, n)
    distance = torch.tensor([frame_idx - t for t in frames], device=valid.device)[:, None]
    return PointerMemory(entries, index, distance.expand(-1, n), valid)


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


def check_rules(
    frame: bool, slots: str, order: str, min_confidence: float | None, pointers: str
) -> None:
    """Refuse a rule set that cannot run: in a new model (`model.stms.*`) and when eval sets
    a trained model's rules (`MemorySelection.set_rules`)."""
    for name, value, allowed in (
        ("slots", slots, SLOT_RULES),
        ("order", order, ORDERS),
        ("pointers", pointers, POINTER_RULES),
    ):
        if value not in allowed:
            raise ValueError(
                f"model.stms.{name}={value!r}: unknown. Fix: one of {', '.join(allowed)}."
            )
    if not frame and (order == "recency" or min_confidence is not None):
        raise ValueError(
            f"model.stms.order={order} and model.stms.min_confidence={min_confidence} "
            "read the frame head's scores, but model.stms.frame=false. Fix: "
            "model.stms.frame=true, or order=score and min_confidence=null."
        )
    if pointers == "window" and min_confidence is None:
        raise ValueError(
            "model.stms.pointers=window leaves out the pointers of frames the frame head "
            "rates below model.stms.min_confidence, which is null. Fix: "
            "model.stms.min_confidence=0.3 (for example), or model.stms.pointers=sam2."
        )
    if order == "recency" and min_confidence is None:
        raise ValueError(
            "model.stms.order=recency keeps the most recent frames the frame head rates "
            "good enough, and needs the threshold. Fix: model.stms.min_confidence=0.5 "
            "(for example), or model.stms.order=score."
        )


class MemorySelection(nn.Module):
    """`frame` / `pixel` switch the two heads; with `frame` off the top-k are the most recent
    candidates, with `pixel` off memory tokens are not filtered.

    What the frame head's scores decide (`keep_frames`): `order="score"` keeps each
    object's top-k (Rate & Rank), `"recency"` its most recent candidates rated at least
    `min_confidence`; with `min_confidence` (a probability, on the sigmoid of the frame
    score) a kept frame rated below it is left out; `pointers="kept"` reads the kept frames'
    object pointers instead of SAM 2's window. These are the oracle's settings that showed
    gains on the shipped base; the defaults are Rate & Rank as it was.
    """

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
        keep_previous: bool = True,
        slots: str = "rank",
        order: str = "score",
        min_confidence: float | None = None,
        pointers: str = "sam2",
        pointer_window: int = SAM2_POINTER_WINDOW,
    ) -> None:
        super().__init__()
        if min_confidence is not None and not 0.0 < min_confidence < 1.0:
            raise ValueError(
                f"model.stms.min_confidence={min_confidence}: a probability the frame head "
                "rates a frame at. Fix: a value between 0 and 1 (e.g. 0.5), or null."
            )
        check_rules(frame, slots, order, min_confidence, pointers)
        self.order, self.pointers, self.pointer_window = order, pointers, int(pointer_window)
        self.min_confidence = None if min_confidence is None else float(min_confidence)
        self.keep_previous = bool(keep_previous)
        self.slots = slots
        window = num_maskmem - 1
        if not 1 <= top_k <= window:
            raise ValueError(
                f"model.stms.top_k={top_k}, but this SAM 2 has {window} memory slots for past "
                f"frames (num_maskmem={num_maskmem}, one slot is the prompted frame's). "
                f"Fix: set model.stms.top_k between 1 and {window}."
            )
        if candidates < top_k:
            raise ValueError(
                f"model.stms.candidates={candidates} < top_k={top_k}: nothing to select from. "
                f"Fix: candidates >= top_k."
            )
        if stride < 1:
            raise ValueError(f"model.stms.stride={stride}: must be >= 1")
        warn_if_within_window(stride, candidates, "model.stms", window=window)
        self.stride = int(stride)
        self.num_candidates = int(candidates)
        self.top_k = int(top_k)
        self.frame_head = FrameConfidenceHead(mem_dim, frame_hidden) if frame else None
        self.pixel_head = PixelConfidenceHead(mem_dim, pixel_hidden) if pixel else None

    def set_rules(
        self,
        keep_previous: bool | None = None,
        slots: str | None = None,
        order: str | None = None,
        pointers: str | None = None,
    ) -> None:
        """Set inference rules of a trained selection (None keeps one): what a rule does in
        the trained weights, for the method table's rows of reverted fixes."""
        rules = {
            "keep_previous": self.keep_previous if keep_previous is None else bool(keep_previous),
            "slots": slots or self.slots,
            "order": order or self.order,
            "pointers": pointers or self.pointers,
        }
        check_rules(
            self.frame_head is not None,
            rules["slots"],
            rules["order"],
            self.min_confidence,
            rules["pointers"],
        )
        for name, value in rules.items():
            setattr(self, name, value)

    def step(self, frame_step: int = 1) -> int:
        """Δ in processed frames for frames `frame_step` engine frames apart."""
        return max(1, round(self.stride / max(1, frame_step)))

    def horizon(self, frame_step: int = 1) -> int:
        """How many processed frames back the oldest candidate lies."""
        return self.num_candidates * self.step(frame_step)

    def candidates(self, frame_idx: int, frame_step: int = 1) -> list[int]:
        """Candidate frame indices, most recent first."""
        return candidate_frames(
            frame_idx, self.step(frame_step), self.num_candidates, self.keep_previous
        )

    def select(
        self, frame_idx: int, pool: Mapping[int, dict[str, Any]], frame_step: int = 1
    ) -> SpatialMemory:
        """Each object's kept frames among the candidates found in `pool` (with memory
        features), by frame score (by recency without the frame head)."""
        frames = [
            t
            for t in self.candidates(frame_idx, frame_step)
            if t in pool and pool[t].get("maskmem_features") is not None
        ]
        entries = [pool[t] for t in frames]
        scores = None
        # a threshold reads every frame's score; a ranking only when there is a choice
        thresholded = self.min_confidence is not None
        if self.frame_head is not None and entries and (len(entries) > self.top_k or thresholded):
            # [C, N]; the threshold is a probability, a ranking reads the logits
            scores = _confidence(entries) if thresholded else _frame_scores(entries)
        memory = keep_frames(
            frame_idx,
            frames,
            entries,
            scores,
            self.top_k,
            slots=self.slots,
            keep_previous=self.keep_previous,
            order=self.order,
            min_score=self.min_confidence,
            pointers=self.pointers,
        )
        if self.pointers == "window":
            memory.pointers = window_pointers(
                frame_idx, pool, _confidence, self.min_confidence, self.pointer_window
            )
        return memory


def _frame_scores(entries: list[dict[str, Any]]) -> torch.Tensor:
    """[C, N] the frame head's logit per entry."""
    return torch.stack([e["frame_score"] for e in entries])


def _confidence(entries: list[dict[str, Any]]) -> torch.Tensor:
    """[C, N] the frame head's probability per entry."""
    return torch.sigmoid(_frame_scores(entries).float())
