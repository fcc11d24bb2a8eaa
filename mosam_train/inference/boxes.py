"""Box in, masks and boxes out: single- or multi-object tracking from first-frame boxes.

The demo (`predict.py`) and the tracking benchmarks both go through `track_boxes`, so a
box tracked in one is tracked identically in the other. Boxes are `x, y, w, h` in pixels
of the video, pixel-inclusive (see `inference.prompts`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from mosam_train.inference.engine import FrameResult, FrameSource, VideoPropagator
from mosam_train.inference.prompts import Box, PointPrompt
from mosam_train.inference.vos import label_map, object_masks

__all__ = ["Box", "TrackedFrame", "mask_to_box", "track_boxes", "tracked_frame"]


def mask_to_box(mask: np.ndarray) -> Box | None:
    """Tight x, y, w, h box of a bool mask (pixel-inclusive: w = x_max - x_min + 1);
    None when the mask is empty (the tracker reports no box)."""
    mask = np.asarray(mask, dtype=bool)
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    x0, x1 = int(cols[0]), int(cols[-1])
    y0, y1 = int(rows[0]), int(rows[-1])
    return float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)


@dataclass
class TrackedFrame:
    """One frame of box tracking.

    labels: uint8 [H, W] label map (0 background, k = object k), no overlaps;
    masks: bool [O, H, W], each object's own mask (overlaps kept);
    boxes: `mask_to_box` of each object's own mask (None: empty mask, no box).
    """

    frame_idx: int
    labels: np.ndarray
    masks: np.ndarray
    boxes: list[Box | None]


def tracked_frame(result: FrameResult, object_ids: Sequence[int]) -> TrackedFrame:
    """A `FrameResult` of the engine as masks, label map and boxes of `object_ids`."""
    masks = object_masks(result.logits, result.object_ids, object_ids)
    return TrackedFrame(
        frame_idx=int(result.frame_idx),
        labels=label_map(result.logits, result.object_ids),
        masks=masks,
        boxes=[mask_to_box(m) for m in masks],
    )


def track_boxes(
    propagator: VideoPropagator, frames: FrameSource, boxes: Sequence[Box]
) -> Iterator[TrackedFrame]:
    """Prompt frame 0 with `boxes` (object ids 1..N; SAM 2's box prompt: two corner
    points, labels 2 and 3), propagate through the whole video with the streaming engine
    and yield every frame, frame 0 included."""
    if not boxes:
        raise ValueError("track_boxes needs at least one box")
    prompts = {0: {k + 1: PointPrompt.from_box(b) for k, b in enumerate(boxes)}}
    ids = list(range(1, len(boxes) + 1))
    for result in propagator.propagate(frames, prompts):
        yield tracked_frame(result, ids)
