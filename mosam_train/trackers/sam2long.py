"""`tracker=sam2long`: SAM2Long's memory tree (Ding et al., arXiv 2410.16268), per object, on
the streaming engine; reimplemented from the published description (shared/PEERS.md
section 2).

Each object follows `pathways` hypotheses (P, rows of its group's batch, each with its own
memory; `TrackerRule.hypotheses`). On a tracked frame every pathway runs once and gives
SAM 2's three candidates; a child's score is its parent's plus log(predicted IoU + 1e-5).
P of the 3P children survive (`keep_pathways`):

- certain (some pathway's |object score logit| > `uncertainty`): the P best scores;
- uncertain: best first, children whose round(±predicted IoU, 2) (sign: object present)
  is not yet kept, then the best child of each pathway not yet represented, then the best
  remaining, up to P.

A surviving child continues its parent's memory (a `Branching`: two children of one parent
both take its memory, a pathway with no surviving child ends). The frame right after the
prompt frame has one pathway (the pathways are copies of it): its candidates start them.

Each pathway's memory (`memory_gate`): scanning its tracked frames t-1, t-2, ..., a frame is
kept iff its chosen predicted IoU > `gate_iou` and its object score > 0, stopping after
`scan` (15) kept; t-1 is always kept; the prompted frames plus the `window` (6) most recent
kept frames are its spatial memory, and its object pointers are the prompted frames' plus
the `scan` most recent kept frames' (not SAM 2's t-1 ... t-15), each encoded by its frame
distance. Key modulation (`key_scale`, [low, high]): the memory frames (the prompted frames
at a fixed object score of 10) are ranked by object score and their keys scaled by
linspace(low, high) in rank order, separately for the pointers, only where a pathway has
more than one; the scale is per frame, whatever the model's tokens per frame.

Decisions are late (`delay`, D frames): frame t's masks are written when frame t + D runs,
from the pathway with the best score then, back-tracked to frame t (each pathway's record
of its own ancestors' masks moves with its memory); at the video's last frame every open
frame is written from the final best pathway. The engine still yields every frame once, in
order. With D = 0 the output is causal (the best pathway's mask now).

Each part switches off on its own; `pathways: 1, memory_gate: false, key_scale: null,
delay: 0` is SAM 2's rule exactly, on any model. More than one pathway needs SAM 2's three
candidates (`multimask_output_for_tracking`).

Departures from SAM2Long's code: one object at a time there, every object of a group at once
here (each with its own pathways); its output is the whole video back-tracked at the end
(non-causal), here D frames late with memory flat (D >= the video length is its final pass);
the key scale is per memory frame, not per 4096 tokens; the uncertain rule's fill order is
this module's reading of the description.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from mosam_train.inference.rules import MemoryBank, TrackerRule
from mosam_train.models.video_sam import (
    Branching,
    Candidates,
    OutputDict,
    PointerMemory,
    SpatialMemory,
)
from mosam_train.trackers.memory_gate import GateSettings, frame_passes, gate_memory, oldest_needed

#: the object score SAM2Long gives the prompted frames when ranking memory frames
PROMPTED_SCORE = 10.0
#: added to a predicted IoU before its log
LOG_EPS = 1e-5


@dataclass(frozen=True)
class SearchSettings:
    """pathways: P; uncertainty: δ_conf (certain iff some pathway's |object score| > it)."""

    pathways: int = 3
    uncertainty: float = 2.0

    def __post_init__(self) -> None:
        if self.pathways < 1:
            raise ValueError(
                f"tracker.pathways={self.pathways}: must be >= 1 (SAM2Long's best: 3; 1 is "
                f"SAM 2's choice)."
            )


@dataclass
class Survivors:
    """The pathways one tracked frame keeps, per object [N, P]: `source` the parent pathway
    each continues, `candidate` which of its parent's candidates, `score` its cumulative
    score."""

    source: torch.Tensor
    candidate: torch.Tensor
    score: torch.Tensor


def keep_pathways(
    parent_score: torch.Tensor,
    ious: torch.Tensor,
    object_scores: torch.Tensor,
    settings: SearchSettings = SearchSettings(),
    first: bool = False,
) -> Survivors:
    """The P survivors of the P x M children of each object (module docstring).

    parent_score [N, P], ious [N, P, M] (predicted IoU of each parent's candidates),
    object_scores [N, P] (each parent's object score logit); `first`: the frame right after
    the prompt frame, where only parent 0 has children (the parents are its copies). One
    host transfer per frame (the uncertain rule is sequential per object)."""
    n, p, m = ious.shape
    child = parent_score[..., None].double() + torch.log(ious.double() + LOG_EPS)
    if first:
        child[:, 1:] = -math.inf
    # one transfer: children's scores, their IoUs and the parents' object scores
    host = torch.cat(
        [child.reshape(n, p * m), ious.reshape(n, p * m).double(), object_scores.double()], 1
    ).cpu()
    flat, ious_host, obj = host.split([p * m, p * m, p], 1)
    present = obj > 0
    certain = obj.abs().amax(1) > settings.uncertainty
    picks = []
    for o in range(n):
        order = [int(c) for c in flat[o].argsort(descending=True, stable=True)]
        order = [c for c in order if math.isfinite(float(flat[o, c]))]
        if bool(certain[o]):
            kept = order[: settings.pathways]
        else:
            kept = _uncertain(order, ious_host[o], present[o], m, settings.pathways)
        kept += [kept[0]] * (settings.pathways - len(kept))  # fewer children than P
        picks.append(kept)
    index = torch.tensor(picks, dtype=torch.long)
    score = flat.gather(1, index).to(parent_score.device, parent_score.dtype)
    index = index.to(ious.device)
    return Survivors(index // m, index % m, score)


def _uncertain(
    order: list[int], ious: torch.Tensor, present: torch.Tensor, m: int, p: int
) -> list[int]:
    """Uncertain keep rule for one object: `order` its children best first (index parent *
    m + candidate), `ious` [P * M], `present` [P] (each parent's object present)."""
    kept: list[int] = []
    seen: set[float] = set()
    for c in order:  # distinct round(±iou, 2), best first
        sign = 1.0 if bool(present[c // m]) else -1.0
        key = round(sign * float(ious[c]), 2)
        if key not in seen and len(kept) < p:
            seen.add(key)
            kept.append(c)
    for c in order:  # then each unrepresented parent's best child
        if len(kept) >= p:
            break
        if c not in kept and all(k // m != c // m for k in kept):
            kept.append(c)
    for c in order:  # then the best remaining
        if len(kept) >= p:
            break
        if c not in kept:
            kept.append(c)
    return kept


def rank_scales(scores: torch.Tensor, valid: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Key scale of each memory item [F, R] (F items of R pathways, `valid` [F, R] which
    exist): linspace(low, high) over each pathway's valid items in ascending score order
    (ties: earlier row first); 1 where a pathway has at most one item, or the item is not
    valid."""
    f = scores.shape[0]
    s = scores.float().masked_fill(~valid, math.inf)
    order = s.argsort(dim=0, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(0, order, torch.arange(f, device=order.device)[:, None].expand_as(order))
    count = valid.sum(0, keepdim=True)
    frac = rank.float() / (count - 1).clamp(min=1).float()
    scale = low + (high - low) * frac
    return torch.where(valid & (count > 1), scale, torch.ones_like(scale))


def reorder_rows(entry: dict[str, Any], source: torch.Tensor, rows: int) -> dict[str, Any]:
    """A memory entry's per-row tensors ([rows, ...], also inside lists) taken from rows
    `source`: the rows continue their source rows' histories."""

    def take(v: Any) -> Any:
        if isinstance(v, torch.Tensor) and v.shape[:1] == (rows,):
            return v.index_select(0, source.to(v.device))
        if isinstance(v, list):
            return [take(x) for x in v]
        return v

    return {k: take(v) for k, v in entry.items()}


class SAM2Long(TrackerRule):
    """pathways, uncertainty: the search (`SearchSettings`); memory_gate: per-pathway
    gated memory, gate_iou its predicted-IoU threshold (None: off), scan and window its scan
    cap and memory size; key_scale: [low, high] key modulation by object-score rank (None:
    off); delay: frames between tracking a frame and writing its masks."""

    def __init__(
        self,
        pathways: int = 3,
        uncertainty: float = 2.0,
        memory_gate: bool = True,
        gate_iou: float | None = 0.3,
        scan: int = 15,
        window: int = 6,
        key_scale: list[float] | tuple[float, float] | None = (0.95, 1.05),
        delay: int = 8,
    ) -> None:
        self.search = SearchSettings(int(pathways), float(uncertainty))
        self.hypotheses = self.search.pathways
        self.needs_candidates = self.hypotheses > 1
        iou = None if gate_iou is None or not memory_gate else float(gate_iou)
        # the gate's tests off keep every frame: SAM 2's window and pointers, which the key
        # scale then reads as explicit lists
        self.gate = GateSettings(iou, 0.0 if memory_gate else None, None, int(scan), int(window))
        self.gated = bool(memory_gate)
        self.key_scale = None
        if key_scale is not None:
            low, high = (float(v) for v in key_scale)
            self.key_scale = (low, high)
        if int(delay) < 0:
            raise ValueError(f"tracker.delay={delay}: must be >= 0 (SAM2Long here: 8).")
        self.delay = int(delay)

    # ------------------------------------------------------------------ search
    def initial_state(self, num_objects: int, device: torch.device) -> dict[str, Any]:
        return {
            "score": torch.zeros(num_objects, self.hypotheses, device=device),
            "tracked": 0,  # tracked frames so far (the first one has a single pathway)
            "trail": {},  # frame -> (masks [R, 1, h, w], object scores [R]) not yet written
        }

    def choose(self, bank: MemoryBank, frame_idx: int, candidates: Candidates) -> Branching:
        p = self.hypotheses
        rows, m = candidates.ious.shape
        n = rows // p
        survivors = keep_pathways(
            bank.state["score"],
            candidates.ious.view(n, p, m),
            candidates.object_score_logits.view(n, p),
            self.search,
            first=bank.state["tracked"] == 0,
        )
        bank.state["score"] = survivors.score
        base = torch.arange(n, device=survivors.source.device)[:, None] * p
        return Branching((base + survivors.source).flatten(), survivors.candidate.flatten())

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
        trail = bank.state["trail"]
        if not prompted:
            bank.state["tracked"] += 1
            source = out.get("source")
            if source is not None:  # each pathway continues its parent's memory and trail
                rows = source.shape[0]
                for t, e in list(bank.non_cond.items()):
                    bank.non_cond[t] = reorder_rows(e, source, rows)
                for t, (masks, scores) in list(trail.items()):
                    trail[t] = (masks.index_select(0, source), scores.index_select(0, source))
            if "choice" in out:
                best_iou = Candidates.take(out["candidates"].ious, out["choice"])
            else:  # SAM 2's choice: its highest predicted IoU (one-mask model: its only)
                best_iou = out["ious"].amax(-1)
            entry = {**entry, "best_iou": best_iou}
        trail[frame_idx] = (out["pred_masks"], out["object_score_logits"].view(-1))
        super().remember(bank, frame_idx, entry, out, prompted=prompted, flow=flow)

    def decided(
        self, bank: MemoryBank, frame_idx: int, out: dict[str, Any], *, last: bool
    ) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        """Frames D behind (all open ones at the last frame), from each object's best
        pathway now, back-tracked (its trail)."""
        trail = bank.state["trail"]
        score = bank.state["score"]
        n, p = score.shape
        best = score.argmax(1) + torch.arange(n, device=score.device) * p
        ready = sorted(t for t in trail if last or t <= frame_idx - self.delay)
        decided = []
        for t in ready:
            masks, scores = trail.pop(t)
            decided.append((t, masks.index_select(0, best), scores.index_select(0, best)))
        return decided

    # ------------------------------------------------------------------ memory
    def _scanned(
        self, pool: dict[int, dict[str, Any]], before: int
    ) -> tuple[list[int], torch.Tensor | None]:
        """The tracked frames before `before` whose memory features are held, most recent
        first, and whether each passes each pathway's gate [C, R] (None: no such frame)."""
        frames = sorted(
            (t for t, e in pool.items() if t < before and e.get("maskmem_features") is not None),
            reverse=True,
        )
        if not frames:
            return frames, None
        entries = [pool[t] for t in frames]
        best_iou = torch.stack([e["best_iou"] for e in entries])
        passed = frame_passes(
            best_iou,
            torch.stack([e["object_score_logits"].flatten() for e in entries]),
            torch.full_like(best_iou, math.nan),
            self.gate,
        )
        return frames, passed

    def select(self, bank: MemoryBank, frame_idx: int, memory: OutputDict) -> SpatialMemory | None:
        if not self.gated and self.key_scale is None:
            return None  # SAM 2's window and pointers
        pool = memory["non_cond_frame_outputs"]
        frames, passed = self._scanned(pool, frame_idx)
        if not frames:
            return SpatialMemory([])
        entries = [pool[t] for t in frames]
        gated = gate_memory(frame_idx, frames, passed, self.gate)
        spatial = gated.spatial(entries)
        k = spatial.index.shape[0] if spatial.index is not None else len(spatial.entries)
        # pointers: the `scan` most recent kept frames (the same list)
        ptr_gate = GateSettings(None, None, None, self.gate.scan, self.gate.scan)
        kept = gate_memory(frame_idx, frames, gated.scanned, ptr_gate)
        distance = frame_idx - torch.tensor(frames, device=kept.index.device)[kept.index]
        pointers = PointerMemory(entries, kept.index, distance, kept.valid)
        if self.key_scale is not None:
            spatial.key_scale = self._scales(entries, spatial.index, spatial.valid, k, gated)
            pointers.key_scale = self._scales(entries, kept.index, kept.valid, None, kept)
        spatial.pointers = pointers
        return spatial

    def _scales(
        self,
        entries: list[dict[str, Any]],
        index: torch.Tensor | None,
        valid: torch.Tensor | None,
        k: int | None,
        gated: Any,
    ) -> torch.Tensor:
        """Key scales [1 + k, R] (row 0: the prompted frames, at PROMPTED_SCORE) of the rows
        `index` [k, R] (None: `gated`'s) of `entries`, by object-score rank."""
        assert self.key_scale is not None
        if index is None:
            index, valid = gated.index, gated.valid
        if k is not None:
            index = index[:k]
            valid = None if valid is None else valid[:k]
        scores = torch.stack([e["object_score_logits"].flatten() for e in entries])
        rows = torch.arange(scores.shape[1], device=scores.device)
        kept = scores[index.to(scores.device), rows].float()
        ok = torch.ones_like(kept, dtype=torch.bool) if valid is None else valid.to(kept.device)
        top = torch.full_like(kept[:1], PROMPTED_SCORE)
        all_valid = torch.cat([torch.ones_like(ok[:1]), ok])
        return rank_scales(torch.cat([top, kept]), all_valid, *self.key_scale)

    def horizon(
        self, bank: MemoryBank, next_frame: int, model_horizon: tuple[int, int]
    ) -> tuple[int, int]:
        if not self.gated and self.key_scale is None:
            return model_horizon
        # frames the scan may still keep (their pointers too) keep their memory features
        frames, passed = self._scanned(bank.non_cond, next_frame)
        reach = GateSettings(None, None, None, self.gate.scan, self.gate.scan)
        oldest = oldest_needed(frames, passed, reach) if frames else None
        oldest_mem, oldest_ptr = model_horizon
        if oldest is not None:
            oldest_mem = min(oldest_mem, oldest)
            oldest_ptr = min(oldest_ptr, oldest)
        return oldest_mem, oldest_ptr


RULE = SAM2Long
