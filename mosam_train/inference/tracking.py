"""Box tracking on a benchmark sequence: run a tracker, write the result files in the
layout the benchmark's toolkit or server reads, and score them.

A sequence's results are scored from the file just written (read back), so the numbers
are those the official toolkit computes from the same files.

Result layouts (under the run's ``predictions/``):

- LaSOT: ``<seq>.txt``, one ``x,y,w,h`` per frame (the MATLAB toolkit's
  ``<tracker>_tracking_result/<seq>.txt``, pytracking's ``<results_dir>/<seq>.txt``);
- GOT-10k: ``<seq>/<seq>_001.txt`` (run 1 of a deterministic tracker) and
  ``<seq>/<seq>_time.txt``, seconds per frame, as ``ExperimentGOT10k._record`` writes them
  and the GOT-10k server expects them (zipped with the sequence folders at the top).

A frame without a box (empty mask) is written ``0,0,0,0``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from mosam_train.atomic_files import write_text_atomically
from mosam_train.data.formats.tracking import TrackingSequence, read_boxes
from mosam_train.inference.sources import RecordFrames
from mosam_train.metrics.tracking import (
    Box,
    boxes_array,
    score_got10k_sequence,
    score_lasot_sequence,
)

LASOT_FIELDS = [
    "sequence", "class", "frames", "absent_frames", "scored_frames",
    "success_auc", "precision", "norm_precision", "mean_iou", "fps",
]  # fmt: skip
GOT10K_FIELDS = ["sequence", "frames", "scored_frames", "ao", "sr50", "sr75", "fps"]


class BoxTracker(Protocol):
    """Yields (frame index, box or None) for every frame of a sequence, frame 0 first."""

    def track(self, sequence: TrackingSequence) -> Iterator[tuple[int, Box | None]]: ...


class FirstBoxTracker:
    """Reports the first-frame box on every frame: the no-motion floor (reads no frame)."""

    def track(self, sequence: TrackingSequence) -> Iterator[tuple[int, Box | None]]:
        box = tuple(float(v) for v in sequence.init_box)
        for t in range(sequence.num_frames):
            yield t, box  # type: ignore[misc]


class MaskTracker:
    """A mask propagator prompted with the first-frame box (`inference.boxes.track_boxes`);
    each frame's box is the tight box of the predicted mask (None when it is empty)."""

    def __init__(self, propagator, image_size: int) -> None:
        self.propagator = propagator
        self.image_size = image_size

    def track(self, sequence: TrackingSequence) -> Iterator[tuple[int, Box | None]]:
        from mosam_train.inference.boxes import track_boxes

        frames = RecordFrames(sequence, self.image_size)
        init = tuple(float(v) for v in sequence.init_box)
        for frame in track_boxes(self.propagator, frames, [init]):  # type: ignore[list-item]
            yield frame.frame_idx, frame.boxes[0]


def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.3f}"


def format_boxes(boxes: np.ndarray) -> str:
    """One ``x,y,w,h`` line per row (integers as integers, else 3 decimals as the GOT-10k
    toolkit writes)."""
    return "".join(",".join(_number(v) for v in row) + "\n" for row in boxes)


def result_file(benchmark: str, root: Path, name: str) -> Path:
    """The box file of sequence `name` in the benchmark's result layout under `root`."""
    if benchmark == "got10k":
        return root / name / f"{name}_001.txt"
    return root / f"{name}.txt"


def run_sequence(
    tracker: BoxTracker,
    sequence: TrackingSequence,
    benchmark: str,
    root: Path,
    on_frame: Callable[[int], None] | None = None,
) -> tuple[Path, float]:
    """Track `sequence`, write its result files under `root`; returns (box file, fps)."""
    boxes: list[Box | None] = []
    times: list[float] = []
    start = time.perf_counter()
    for t, box in tracker.track(sequence):
        if t != len(boxes):
            raise RuntimeError(f"{sequence.name}: tracker yielded frame {t}, expected {len(boxes)}")
        boxes.append(box)
        now = time.perf_counter()
        times.append(now - start)
        start = now
        if on_frame is not None:
            on_frame(t)
    if len(boxes) != sequence.num_frames:
        raise RuntimeError(
            f"{sequence.name}: tracker gave {len(boxes)} frames of {sequence.num_frames}"
        )
    path = result_file(benchmark, root, sequence.name)
    if benchmark == "got10k":
        write_text_atomically(
            path.with_name(f"{sequence.name}_time.txt"), "".join(f"{s:.8f}\n" for s in times)
        )
    write_text_atomically(path, format_boxes(boxes_array(boxes)))
    total = sum(times)
    return path, (len(times) / total if total > 0 else math.inf)


def score_sequence(benchmark: str, sequence: TrackingSequence, path: Path) -> dict:
    """Per-sequence row (percentages) from the written box file; without ground truth only
    the frame count."""
    pred = read_boxes(path)
    if benchmark == "lasot":
        s = score_lasot_sequence(pred, sequence.gt, sequence.absent, sequence.name)
        return {
            "sequence": sequence.name,
            "class": sequence.category,
            "frames": s.num_frames,
            "absent_frames": int(np.sum(sequence.absent)) if sequence.absent is not None else 0,
            "scored_frames": s.num_scored,
            "success_auc": 100 * s.success_auc,
            "precision": 100 * s.precision,
            "norm_precision": 100 * s.norm_precision,
            "mean_iou": 100 * s.mean_iou,
        }
    if not sequence.has_gt:
        return {"sequence": sequence.name, "frames": sequence.num_frames}
    g = score_got10k_sequence(
        pred, sequence.gt, sequence.cover, (sequence.width, sequence.height), sequence.name
    )
    return {
        "sequence": sequence.name,
        "frames": g.num_frames,
        "scored_frames": len(g.ious),
        "ao": 100 * g.ao,
        "sr50": 100 * g.sr(0.5),
        "sr75": 100 * g.sr(0.75),
    }
