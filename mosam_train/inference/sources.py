"""Frame sources the streaming engine reads lazily, one frame at a time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property

import numpy as np
import torch

from mosam_train.data.video import VideoRecord
from mosam_train.images import preprocess_frame


class ChunkedFrames:
    """Frames read `read_ahead` at a time through `read(indices) -> uint8 [N, H, W, 3]` and
    kept until the engine moves past them, preprocessed exactly as SAM 2's video predictor
    does: a video file is decoded in one pass per chunk rather than seeked once per frame,
    and memory holds one chunk. `name` says which video it is (in errors); it has no
    ground truth."""

    has_ground_truth = False

    def __init__(
        self,
        read: Callable[[Sequence[int]], np.ndarray],
        num_frames: int,
        size: tuple[int, int],
        image_size: int,
        frame_step: int = 1,
        read_ahead: int = 16,
        name: str = "the video",
    ) -> None:
        self.name = name
        self._read = read
        self.num_frames = num_frames
        self.height, self.width = size
        self.image_size = image_size
        self.frame_step = frame_step
        self.read_ahead = max(1, read_ahead)
        self._chunk: dict[int, np.ndarray] = {}
        self._previous: dict[int, np.ndarray] = {}

    def rgb(self, t: int) -> np.ndarray:
        """Frame `t` as uint8 [H, W, 3]. The chunk before the current one is kept too: a
        consumer of frames written late by the tracker rule (up to `read_ahead` frames
        behind the engine) reads them without reading them again."""
        if t in self._previous and t not in self._chunk:
            return self._previous[t]
        if t not in self._chunk:
            ts = list(range(t, min(t + self.read_ahead, self.num_frames)))
            self._previous = self._chunk
            self._chunk = dict(zip(ts, self._read(ts), strict=True))
        return self._chunk[t]

    def image(self, t: int) -> torch.Tensor:
        return preprocess_frame(self.rgb(t), self.image_size)


def has_ground_truth(record: VideoRecord, first: dict[int, int] | None = None) -> bool:
    """Whether `record` has annotated frames besides the first-appearance frames the prompts
    come from (`first`: its `first_appearance()`, when the caller has it). YouTube-VOS /
    MOSE valid and DAVIS test-dev have not (their scores come from the benchmarks' servers);
    nor have tracking sequences (boxes, no masks)."""
    first = record.first_appearance() if first is None else first
    return bool(set(record.annotated_frames) - set(first.values()))


class RecordFrames(ChunkedFrames):
    """Frames of a `VideoRecord` (through `VideoRecord.load_frames`), and its ground truth
    for a rule that reads it."""

    def __init__(self, record: VideoRecord, image_size: int, read_ahead: int = 16) -> None:
        super().__init__(
            record.load_frames,
            record.num_frames,
            (record.height, record.width),
            image_size,
            frame_step=record.frame_step,
            read_ahead=read_ahead,
            name=f"video {record.source}",
        )
        self.record = record
        self._annotated = frozenset(record.annotated_frames)

    @cached_property
    def has_ground_truth(self) -> bool:  # type: ignore[override]
        return has_ground_truth(self.record)

    def ground_truth(self, t: int, object_ids: Sequence[int]) -> np.ndarray | None:
        """bool [len(object_ids), H, W]: the annotated masks of `object_ids` on frame `t`
        (an object absent there: all False), or None where frame `t` is not annotated."""
        if t not in self._annotated:
            return None
        masks = self.record.load_masks(t)
        row = {oid: k for k, oid in enumerate(self.record.object_ids)}
        unknown = [oid for oid in object_ids if oid not in row]
        if unknown:
            raise ValueError(
                f"{self.name}: objects {unknown} are not annotated (its objects: "
                f"{list(self.record.object_ids)})"
            )
        return np.ascontiguousarray(masks[[row[oid] for oid in object_ids]]).astype(bool)
