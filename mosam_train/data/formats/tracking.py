"""Box-tracking sequences (LaSOT, GOT-10k): what their readers share.

A tracking sequence is a `VideoRecord` without masks: JPEG frames read lazily (so
`inference.sources.RecordFrames` streams it into the engine like any video), one ground-
truth box per frame and the frames the benchmark leaves out of scoring. Readers check
every text file when the split is read, so a malformed file stops the run before any
frame is processed.

    read_tracking(fmt, root, split, subset=None) -> list[TrackingSequence]
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np

from mosam_train.data.video import VideoRecord
from mosam_train.dataset_files import image_size, read_lines, read_rgb
from mosam_train.errors import DataError

TRACKING_READERS: dict[str, str] = {
    "lasot": "mosam_train.data.formats.lasot:read_lasot",
    "got10k": "mosam_train.data.formats.got10k:read_got10k",
}
_SEPARATORS = re.compile(r"[,\s]+")


def read_tracking(fmt: str, root: str | Path, split: str, **options: Any) -> list[TrackingSequence]:
    """Sequences of `split` of the `fmt`-layout tracking benchmark at `root`."""
    if fmt not in TRACKING_READERS:
        raise ValueError(f"unknown tracking benchmark {fmt!r}; known: {sorted(TRACKING_READERS)}")
    module, name = TRACKING_READERS[fmt].split(":")
    reader: Callable[..., list[TrackingSequence]] = getattr(import_module(module), name)
    return reader(root, split, **options)


def read_boxes(path: str | Path) -> np.ndarray:
    """float [N, 4] from a box file: one ``x,y,w,h`` per line, comma- or whitespace-
    separated (LaSOT and GOT-10k use commas, pytracking results tabs); blank lines skipped."""
    path = Path(path)
    lines = read_lines(path, "box file")
    rows = []
    for i, line in enumerate(lines, 1):
        fields = [f for f in _SEPARATORS.split(line.strip()) if f]
        if not fields:
            continue
        try:
            values = [float(f) for f in fields]
        except ValueError:
            values = []
        if len(values) != 4:
            raise DataError(
                f"{path}:{i}: expected 4 numbers x,y,w,h, got {line.strip()!r}. Fix: write "
                f"one box per line as x,y,w,h.",
                path,
            )
        rows.append(values)
    if not rows:
        raise DataError(f"{path}: no boxes. Fix: one x,y,w,h line per frame.", path)
    return np.asarray(rows, dtype=np.float64)


def read_flags(path: str | Path, length: int, integer: bool = False) -> np.ndarray:
    """int [length] of 0/1 flags (or small integers with `integer`, e.g. GOT-10k cover
    levels 0-8), separated by commas (LaSOT: one line) or newlines (GOT-10k)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e}). Fix: check the path.", path) from e
    fields = [f for f in _SEPARATORS.split(text.strip()) if f]
    try:
        values = np.asarray([int(float(f)) for f in fields], dtype=np.int64)
    except ValueError as e:
        raise DataError(f"{path}: not a list of integers ({e}). Fix: re-extract it.", path) from e
    if len(values) != length:
        raise DataError(
            f"{path}: {len(values)} values for {length} frames. Fix: one value per frame "
            f"(re-extract the sequence).",
            path,
        )
    if not integer and not np.isin(values, (0, 1)).all():
        raise DataError(f"{path}: values other than 0/1. Fix: re-extract it.", path)
    return values


class TrackingSequence(VideoRecord):
    """One tracking sequence: frames, per-frame ground-truth boxes (``x, y, w, h``), the
    frames excluded from scoring, and the first-frame box the tracker starts from.

    gt: float [N, 4] for every frame, or None where the ground truth is withheld (GOT-10k
    test: first frame only). absent: bool [N], frames the benchmark does not score as
    visible (LaSOT: full occlusion or out of view; GOT-10k: cover 0), or None.
    cover: GOT-10k's visible-ratio levels 0-8 (cover.label), or None.
    """

    object_ids = (1,)
    annotated_frames = ()

    def __init__(
        self,
        name: str,
        frames: list[Path],
        init_box: np.ndarray,
        gt: np.ndarray | None,
        absent: np.ndarray | None = None,
        cover: np.ndarray | None = None,
        category: str = "",
        gt_path: Path | None = None,
    ) -> None:
        self.name = name
        self.frame_paths = tuple(frames)
        self.num_frames = len(frames)
        self.init_box = np.asarray(init_box, dtype=np.float64)
        self.gt = gt
        self.absent = absent
        self.cover = cover
        self.category = category
        self.tags = (category,) if category else ()
        self.gt_path = gt_path
        self.height, self.width = image_size(self.frame_paths[0])
        x, y, w, h = self.init_box
        if not (w > 0 and h > 0) or x + w <= 0 or y + h <= 0 or x >= self.width or y >= self.height:
            where = gt_path or self.frame_paths[0].parent
            raise DataError(
                f"{where}: first-frame box {self.init_box.tolist()} is empty or outside the "
                f"{self.width}x{self.height} image. Fix: the first line must be a box "
                f"x,y,w,h with w, h > 0 that overlaps the first frame.",
                where,
            )

    def __repr__(self) -> str:
        return (
            f"TrackingSequence({self.name!r}, frames={self.num_frames}, "
            f"size={self.height}x{self.width}, gt={'yes' if self.has_gt else 'no'})"
        )

    @property
    def has_gt(self) -> bool:
        """Whether frames after the first have ground truth (GOT-10k test has not)."""
        return self.gt is not None

    @property
    def source(self) -> str:
        return str(self.frame_paths[0].parent)

    def frame_name(self, t: int) -> str:
        return self.frame_paths[t].stem

    def load_frame(self, t: int) -> np.ndarray:
        return read_rgb(self.frame_paths[t], (self.height, self.width))

    def load_masks(self, t: int) -> np.ndarray:
        raise DataError(
            f"{self.source}: a tracking sequence has boxes, not masks. Fix: evaluate it with "
            f"task=tracking (boxes), or use a VOS dataset for mask scoring."
        )

    def first_appearance(self) -> dict[int, int]:
        return {1: 0}
