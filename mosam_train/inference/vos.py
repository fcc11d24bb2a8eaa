"""Semi-supervised VOS on a `VideoRecord`: prompt with the GT at each object's first
appearance, propagate, turn logits into masks or label maps, score with the project's J&F.

Validation and `eval.py` both call `run_record`, so their numbers cannot differ.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import Protocol

import numpy as np
import torch

from mosam_train.data.video import VideoRecord
from mosam_train.inference.engine import FrameResult, FrameSource
from mosam_train.inference.sources import RecordFrames, has_ground_truth
from mosam_train.metrics.jf import ObjectScore, default_protocol, object_frames, score_record

log = logging.getLogger(__name__)


class Propagator(Protocol):
    def propagate(
        self, frames: FrameSource, prompts: dict[int, dict[int, np.ndarray]]
    ) -> Iterator[FrameResult]: ...


def first_appearance_prompts(
    record: VideoRecord, first: dict[int, int] | None = None
) -> dict[int, dict[int, np.ndarray]]:
    """GT mask of every object on the frame where it first appears (`first`: the record's
    `first_appearance()`, when the caller already has it)."""
    first = record.first_appearance() if first is None else first
    missing = set(record.object_ids) - set(first)
    if missing:
        raise ValueError(f"{record.name}: objects {sorted(missing)} never appear in the GT")
    prompts: dict[int, dict[int, np.ndarray]] = {}
    for t in sorted(set(first.values())):
        masks = record.load_masks(t)
        prompts[t] = {
            oid: masks[k] for k, oid in enumerate(record.object_ids) if first.get(oid) == t
        }
    return prompts


def unscorable_reason(record: VideoRecord, first: dict[int, int] | None = None) -> str | None:
    """Why `record` yields no J&F although it is not a video without ground truth (see
    `has_ground_truth`), or None. J&F leaves out the first and the last annotated frame
    (DAVIS protocol; `metrics.jf.default_protocol`) and each object's prompt frame, so a
    video of 1-2 frames, or with 1-2 annotated frames, has nothing to score."""
    first = record.first_appearance() if first is None else first
    if record.num_frames >= 3 and not has_ground_truth(record, first):
        return None  # e.g. YouTube-VOS valid: scored by the benchmark's server
    annotated = sorted(set(record.annotated_frames))
    protocol = default_protocol(record)
    try:
        frames = object_frames(annotated, record.object_ids, protocol, first)
    except ValueError:  # too few annotated frames for the protocol
        return (
            f"{record.num_frames} frame(s), {len(annotated)} annotated: J&F leaves out the "
            f"first and the last annotated frame, so a video needs at least 3"
        )
    if any(frames.values()):
        return None
    return (
        f"no object has an annotated frame to score: J&F leaves out the first and the last "
        f"annotated frame ({annotated[0]}, {annotated[-1]}) and each object's prompt frame"
    )


def unscorable_videos(
    records: Iterable[VideoRecord], firsts: Mapping[str, dict[int, int]] | None = None
) -> dict[str, str]:
    """{video: reason} of the records `unscorable_reason` leaves without J&F, each warned
    about by name (their predictions are still written; they are not videos without
    ground truth). `firsts`: the records' first appearances by name, when known."""
    out: dict[str, str] = {}
    for record in records:
        first = None if firsts is None else firsts.get(record.name)
        reason = unscorable_reason(record, first)
        if reason is not None:
            log.warning("%s is not scored (its predictions are written): %s", record.name, reason)
            out[record.name] = reason
    return out


def label_map(logits: torch.Tensor, object_ids: Sequence[int]) -> np.ndarray:
    """Per-object logits [O, H, W] -> one uint8 label map without overlaps.

    Each pixel goes to the object with the highest logit there, if that logit is > 0, else
    to the background (0). This is what SAM 2's `tools/vos_inference.py` writes for
    DAVIS-style palette PNGs: it builds the predictor with `non_overlap_masks=True`, whose
    `_apply_non_overlapping_constraints` keeps only the highest-scoring object per pixel
    (ties: the first object, i.e. the smallest id) and clamps the others to <= -10 before
    the masks are thresholded at 0. Ids must be 1..254 (0 is background, 255 void);
    datasets with other ids (SA-V) are overlapping ones, written and scored per object.
    """
    ids = [int(i) for i in object_ids]
    bad = [i for i in ids if not 0 < i < 255]
    if bad:
        raise ValueError(
            f"object ids {bad} do not fit a uint8 label map (1..254); such videos are written "
            f"and scored from per-object masks (VideoRecord.overlapping)"
        )
    if not ids:
        return np.zeros(tuple(logits.shape[-2:]), dtype=np.uint8)
    order = sorted(range(len(ids)), key=lambda k: ids[k])  # ties go to the smaller id
    top, best = logits[order].detach().float().max(dim=0)  # first maximum on ties
    palette = torch.tensor([ids[k] for k in order], dtype=torch.uint8, device=best.device)
    out = torch.where(top > 0, palette[best], torch.zeros_like(best, dtype=torch.uint8))
    return out.cpu().numpy()


def object_masks(
    logits: torch.Tensor, object_ids: Sequence[int], wanted: Sequence[int]
) -> np.ndarray:
    """Per-object logits [O, H, W] -> bool [len(wanted), H, W] in `wanted` order, each
    object's own `logit > 0` (overlaps kept); objects not tracked yet (they appear later)
    are empty."""
    masks = (logits > 0).cpu().numpy()
    out = np.zeros((len(wanted), *masks.shape[1:]), dtype=bool)
    row = {oid: k for k, oid in enumerate(object_ids)}
    for j, oid in enumerate(wanted):
        if oid in row:
            out[j] = masks[row[oid]]
    return out


class FramePrediction:
    """One frame's output for a record, converted on first use (and only once) into what
    its consumer needs: a label map (palette PNGs, DAVIS-style scoring) or each object's
    own mask (SA-V's per-object PNGs and scoring)."""

    def __init__(
        self, result: FrameResult, object_ids: Sequence[int], overlapping: bool = False
    ) -> None:
        self.result = result
        self.frame_idx = int(result.frame_idx)
        self.object_ids = tuple(object_ids)  # the record's order
        self.overlapping = overlapping

    @cached_property
    def labels(self) -> np.ndarray:
        """uint8 [H, W]: non-overlapping label map (see `label_map`)."""
        return label_map(self.result.logits, self.result.object_ids)

    @cached_property
    def masks(self) -> np.ndarray:
        """bool [O, H, W] in `object_ids` order, overlaps kept (see `object_masks`)."""
        return object_masks(self.result.logits, self.result.object_ids, self.object_ids)

    @cached_property
    def scored(self) -> np.ndarray:
        """bool [O, H, W] in `object_ids` order, as the frame is scored: each object's own
        mask for overlapping datasets, else the objects' regions of the label map."""
        if self.overlapping:
            return self.masks
        return self.labels[None] == np.asarray(self.object_ids)[:, None, None]


def run_record(
    propagator: Propagator,
    record: VideoRecord,
    image_size: int,
    on_frame: Callable[[FramePrediction], None] | None = None,
    score: bool = True,
    first: dict[int, int] | None = None,
) -> list[ObjectScore]:
    """Segment `record` and score it; `on_frame` sees every frame as it is produced
    (submission writers). `score=False` only segments (splits without ground truth) and
    returns no rows. `first`: the record's `first_appearance()`, when the caller has it.

    Overlapping datasets (`record.overlapping`, SA-V) are scored from each object's own
    mask; the others from the label map, so overlaps resolve as in DAVIS-style PNGs.
    """
    first = record.first_appearance() if first is None else first
    prompts = first_appearance_prompts(record, first)
    annotated = set(record.annotated_frames) if score else set()
    preds: dict[int, np.ndarray] = {}
    for result in propagator.propagate(RecordFrames(record, image_size), prompts):
        frame = FramePrediction(result, record.object_ids, record.overlapping)
        if on_frame is not None:
            on_frame(frame)
        if frame.frame_idx in annotated:
            preds[frame.frame_idx] = frame.scored
    return score_record(record, preds, first_appearance=first) if score else []
