"""Semi-supervised VOS on a `VideoRecord`: prompt with the GT at each object's first
appearance, propagate, turn logits into label maps, score with the project's J&F.

Validation and `eval.py` both call `run_record`, so their numbers cannot differ.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np
import torch

from mosam_train.data.video import VideoRecord
from mosam_train.inference.engine import FrameResult, FrameSource
from mosam_train.inference.sources import RecordFrames
from mosam_train.metrics.jf import ObjectScore, score_record


class Propagator(Protocol):
    def propagate(
        self, frames: FrameSource, prompts: dict[int, dict[int, np.ndarray]]
    ) -> Iterator[FrameResult]: ...


def first_appearance_prompts(record: VideoRecord) -> dict[int, dict[int, np.ndarray]]:
    """GT mask of every object on the frame where it first appears."""
    first = record.first_appearance()
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


def label_map(logits: torch.Tensor, object_ids: list[int]) -> np.ndarray:
    """Per-object logits [O, H, W] -> one uint8 label map.

    Where objects overlap the smaller id wins, as SAM 2's `tools/vos_inference.py` writes
    DAVIS-style PNGs (objects painted in descending id order). Ids must be 1..254 (0 is
    background, 255 void); datasets with other ids are overlapping ones, scored per object.
    """
    bad = [i for i in object_ids if not 0 < i < 255]
    if bad:
        raise ValueError(
            f"object ids {bad} do not fit a uint8 label map (1..254); such videos are scored "
            f"from per-object masks (VideoRecord.overlapping)"
        )
    masks = (logits > 0).cpu().numpy()
    out = np.zeros(masks.shape[1:], dtype=np.uint8)
    for k in np.argsort(object_ids)[::-1]:
        out[masks[k]] = object_ids[k]
    return out


def object_masks(logits: torch.Tensor, object_ids: list[int], wanted: list[int]) -> np.ndarray:
    """Per-object logits [O, H, W] -> bool [len(wanted), H, W] in `wanted` order; objects
    not tracked yet (they appear later) are empty."""
    masks = (logits > 0).cpu().numpy()
    out = np.zeros((len(wanted), *masks.shape[1:]), dtype=bool)
    row = {oid: k for k, oid in enumerate(object_ids)}
    for j, oid in enumerate(wanted):
        if oid in row:
            out[j] = masks[row[oid]]
    return out


def run_record(
    propagator: Propagator,
    record: VideoRecord,
    image_size: int,
    on_frame: Callable[[int, np.ndarray], None] | None = None,
) -> list[ObjectScore]:
    """Segment `record` and score it; `on_frame(t, label_map)` sees every frame (writers).

    Overlapping datasets (`record.overlapping`, SA-V) are scored from each object's own
    mask; the others from the label map, so overlaps resolve as in DAVIS-style PNGs.
    """
    prompts = first_appearance_prompts(record)
    annotated = set(record.annotated_frames)
    preds: dict[int, np.ndarray] = {}
    wanted = list(record.object_ids)
    ids = np.asarray(wanted)[:, None, None]
    for result in propagator.propagate(RecordFrames(record, image_size), prompts):
        labels = None
        if on_frame is not None or not record.overlapping:
            labels = label_map(result.logits, result.object_ids)
        if on_frame is not None:
            on_frame(result.frame_idx, labels)
        if result.frame_idx in annotated:
            if record.overlapping:
                preds[result.frame_idx] = object_masks(result.logits, result.object_ids, wanted)
            else:
                preds[result.frame_idx] = labels[None] == ids
    return score_record(record, preds)
