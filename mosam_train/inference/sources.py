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


class LiveFrames:
    """Frames that arrive one at a time while the video plays: a TraX session, where the
    toolkit sends a frame only once it has the previous frame's result. `push` each frame
    (uint8 [H, W, 3]) before asking the engine for its result; frame t is the t-th pushed,
    whatever its place in the original video (the toolkit runs some sequences backwards).

    The length is unknown, so `num_frames` is only an upper bound. SAM 2 reads the length
    in two places: as a bound on how far back object pointers reach (a frame already
    received never exceeds it) and, for videos shorter than its pointer window
    (`max_obj_ptrs_in_encoder`, 16 frames), to scale the pointers' temporal encoding. So the
    results are those of the same frames read from a file of 16 frames or more (a test
    checks), and differ slightly (logits by about 1e-4 on the micro model) from a file of
    fewer frames, whose length a stream cannot know. The engine reads no frame ahead of a
    `live` source."""

    has_ground_truth = False
    live = True
    frame_step = 1
    num_frames = 2**31 - 1

    def __init__(self, size: tuple[int, int], image_size: int, name: str = "the stream") -> None:
        self.height, self.width = size
        self.image_size = image_size
        self.name = name
        self.received = 0
        self._current: tuple[int, np.ndarray] | None = None

    def push(self, rgb: np.ndarray) -> int:
        """Make `rgb` the next frame; returns its index."""
        if rgb.shape != (self.height, self.width, 3):
            raise ValueError(
                f"{self.name}: frame {self.received} is {rgb.shape[0]}x{rgb.shape[1]}, "
                f"the first frame {self.height}x{self.width}"
            )
        self._current = (self.received, rgb)
        self.received += 1
        return self.received - 1

    def image(self, t: int) -> torch.Tensor:
        if self._current is None or self._current[0] != t:
            have = "none" if self._current is None else str(self._current[0])
            raise RuntimeError(f"{self.name}: frame {t} asked for, frame {have} received last")
        return preprocess_frame(self._current[1], self.image_size)
