"""Benchmark submission layouts, written frame by frame while a video is segmented, so a
crash loses at most the video in progress.

`make_writer` builds the writer a dataset format declares (`data.formats.SubmissionLayout`,
in its registry entry): which frames each video gets a file for (every frame, the annotated
ones, or the record's own `submission_frames()`), palette PNGs
(``<root>[/<subdir>]/<video>/<frame>.png``, pixel = object id, no overlaps) or one binary
PNG per object (``<root>/<video>/<object 3 digits>/<frame>.png``, values 0/1, overlaps
kept, any object id), and whether the benchmark's server takes a zip of the tree (always,
or only for a split without ground truth). Frames before an object's first prompt are
background.

Palette PNGs hold object ids as pixel values (servers and toolkits read the raw indices)
with the dataset's own palette when its first annotation is a palette PNG, else the DAVIS
palette, as SAM 2's `tools/vos_inference.py` does.
"""

from __future__ import annotations

import logging
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from mosam_train.atomic_files import atomic_open
from mosam_train.data.formats import SubmissionLayout, get_format
from mosam_train.data.video import VideoRecord
from mosam_train.inference.vos import FramePrediction
from mosam_train.palette import voc_palette

log = logging.getLogger(__name__)

# Index 1 white: a per-object mask is visible in an image viewer; the evaluator reads > 0.
BINARY_PALETTE = (0, 0, 0, 255, 255, 255) + (0, 0, 0) * 254
# Fixed member timestamps: a rerun that resumes produces the same bytes.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def save_png(path: Path, values: np.ndarray, palette: Sequence[int]) -> None:
    """uint8 [H, W] as an indexed ('P') PNG: the values are the pixel indices."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.ascontiguousarray(values, dtype=np.uint8))
    img.putpalette(list(palette))
    img.save(path)


def record_palette(record: VideoRecord) -> tuple[int, ...]:
    """The palette of `record`'s first annotation PNG when it is a palette PNG, else the
    DAVIS one; always 768 values."""
    mask_path = getattr(record, "mask_path", None)
    palette = None
    if mask_path is not None and record.annotated_frames:
        try:
            with Image.open(mask_path(record.annotated_frames[0])) as im:
                if im.mode == "P":
                    palette = im.getpalette()
        except (OSError, KeyError, ValueError):
            palette = None
    if not palette:
        return voc_palette()
    palette = list(palette)[:768]
    return tuple(palette + [0] * (768 - len(palette)))


def write_zip(zip_path: Path, members: Iterable[tuple[Path, str]]) -> Path:
    """Zip `(file, name in the archive)` pairs in name order, byte-for-byte reproducibly;
    written to a temporary file and renamed, so a crash never leaves half a zip."""
    members = sorted(members, key=lambda m: m[1])
    missing = [str(p) for p, _ in members if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{zip_path}: cannot build the submission, {len(missing)} prediction file(s) are "
            f"missing (first: {missing[0]}). Fix: evaluate into a new directory, or delete "
            f"that video's line from done_videos.txt / per_object.csv so it is predicted again."
        )
    with atomic_open(zip_path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
        folders: set[str] = set()
        for path, name in members:
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):  # folder entries, as `zip -r` writes them
                folder = "/".join(parts[:i]) + "/"
                if folder not in folders:
                    folders.add(folder)
                    info = zipfile.ZipInfo(folder, ZIP_DATE)
                    info.external_attr = (0o40755 << 16) | 0x10
                    zf.writestr(info, b"")
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    return zip_path


class VideoWriter(ABC):
    """Files of one video. `write` is called for every frame the engine produces;
    `close` (only after the video finished) fills the frames the layout needs but the engine
    never produced (before the first prompt) with background."""

    def __init__(self, folder: Path, record: VideoRecord, frames: Iterable[int]) -> None:
        self.folder = folder
        self.record = record
        self.frames = tuple(sorted(set(frames)))
        self._wanted = set(self.frames)
        self._written: set[int] = set()

    def write(self, frame: FramePrediction) -> None:
        t = frame.frame_idx
        if t in self._wanted:
            self._write(t, frame)
            self._written.add(t)

    def close(self) -> None:
        empty = [t for t in self.frames if t not in self._written]
        if empty:
            log.debug(
                "%s: %d frame(s) before the first prompt written empty",
                self.record.name,
                len(empty),
            )
        for t in empty:
            self._write_empty(t)

    @abstractmethod
    def _write(self, t: int, frame: FramePrediction) -> None: ...

    @abstractmethod
    def _write_empty(self, t: int) -> None: ...

    @abstractmethod
    def files(self) -> list[Path]:
        """Every file this video has in the layout, in frame order."""


class PaletteVideoWriter(VideoWriter):
    """One palette PNG per frame, pixel value = object id (non-overlapping label map)."""

    @cached_property
    def palette(self) -> tuple[int, ...]:
        return record_palette(self.record)

    def _path(self, t: int) -> Path:
        return self.folder / f"{self.record.frame_name(t)}.png"

    def _write(self, t: int, frame: FramePrediction) -> None:
        save_png(self._path(t), frame.labels, self.palette)

    def _write_empty(self, t: int) -> None:
        empty = np.zeros((self.record.height, self.record.width), np.uint8)
        save_png(self._path(t), empty, self.palette)

    def files(self) -> list[Path]:
        return [self._path(t) for t in self.frames]


class PerObjectVideoWriter(VideoWriter):
    """One binary (0/1) PNG per object and frame; each object's own mask, overlaps kept."""

    def _path(self, oid: int, t: int) -> Path:
        return self.folder / f"{oid:03d}" / f"{self.record.frame_name(t)}.png"

    def _write(self, t: int, frame: FramePrediction) -> None:
        for oid, mask in zip(self.record.object_ids, frame.masks, strict=True):
            save_png(self._path(oid, t), mask.astype(np.uint8), BINARY_PALETTE)

    def _write_empty(self, t: int) -> None:
        empty = np.zeros((self.record.height, self.record.width), np.uint8)
        for oid in self.record.object_ids:
            save_png(self._path(oid, t), empty, BINARY_PALETTE)

    def files(self) -> list[Path]:
        return [self._path(oid, t) for oid in self.record.object_ids for t in self.frames]


class SubmissionWriter:
    """A benchmark's layout under `root`: which frames each video needs, how they are
    written, and the zip (if the benchmark takes one) built from them at the end.

    `layout`: the name of the dataset format that declares `spec` (reported in
    metrics.json, named in errors). The zip holds the tree under `root`, so it starts with
    `spec.subdir` when there is one.
    """

    def __init__(
        self, layout: str, root: Path, spec: SubmissionLayout, zip_path: Path | None = None
    ) -> None:
        self.layout = layout
        self.root = Path(root)
        self.spec = spec
        self.zip_path = zip_path

    def frames(self, record: VideoRecord) -> Sequence[int]:
        """The frames of `record` this layout holds a file for."""
        if self.spec.frames == "all":
            return range(record.num_frames)
        if self.spec.frames == "annotated":
            return record.annotated_frames
        frames = getattr(record, "submission_frames", None)
        if frames is None:
            raise TypeError(
                f"{record.name}: the {self.layout} layout writes the frames each record "
                f"lists in submission_frames(), which {type(record).__name__} does not have. "
                f"Fix: evaluate with data.format={self.layout} (its records have it), or "
                f"give the record class a submission_frames() method."
            )
        return frames()

    def video_dir(self, record: VideoRecord) -> Path:
        return self.root / self.spec.subdir / record.name

    def video(self, record: VideoRecord) -> VideoWriter:
        """The writer of one video (creates nothing until the first frame is written)."""
        folder = self.video_dir(record)
        if self.spec.masks == "per_object":
            return PerObjectVideoWriter(folder, record, self.frames(record))
        return PaletteVideoWriter(folder, record, self.frames(record))

    def files(self, record: VideoRecord) -> list[Path]:
        """Every file `record` has in this layout."""
        return self.video(record).files()

    def finish(self, records: Sequence[VideoRecord]) -> Path | None:
        """Build the zip from every video's files (all must exist); None if no zip."""
        if self.zip_path is None:
            return None
        members = [(p, p.relative_to(self.root).as_posix()) for r in records for p in self.files(r)]
        return write_zip(self.zip_path, members)


def make_writer(
    fmt: str, root: str | Path, zip_path: str | Path | None, ground_truth: bool = True
) -> SubmissionWriter:
    """The submission writer of dataset format `fmt` (its registry entry's layout) into
    `root`.

    `zip_path`: where the zip goes when the layout takes one (``always``, or
    ``without_ground_truth`` and the split has no `ground_truth`, i.e. DAVIS test-dev).
    """
    layout = get_format(fmt).submission
    zips = layout.zip == "always" or (layout.zip == "without_ground_truth" and not ground_truth)
    zip_path = Path(zip_path) if zips and zip_path is not None else None
    return SubmissionWriter(fmt, Path(root), layout, zip_path)
