"""Frame sources the streaming engine reads lazily, one frame at a time."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from mosam_train.data.video import VideoRecord
from mosam_train.images import preprocess_frame


class ChunkedFrames:
    """Frames read `read_ahead` at a time through `read(indices) -> uint8 [N, H, W, 3]` and
    kept until the engine moves past them, preprocessed exactly as SAM 2's video predictor
    does: a video file is decoded in one pass per chunk rather than seeked once per frame,
    and memory holds one chunk."""

    def __init__(
        self,
        read: Callable[[Sequence[int]], np.ndarray],
        num_frames: int,
        size: tuple[int, int],
        image_size: int,
        frame_step: int = 1,
        read_ahead: int = 16,
    ) -> None:
        self._read = read
        self.num_frames = num_frames
        self.height, self.width = size
        self.image_size = image_size
        self.frame_step = frame_step
        self.read_ahead = max(1, read_ahead)
        self._chunk: dict[int, np.ndarray] = {}

    def rgb(self, t: int) -> np.ndarray:
        """Frame `t` as uint8 [H, W, 3]."""
        if t not in self._chunk:
            ts = list(range(t, min(t + self.read_ahead, self.num_frames)))
            self._chunk = dict(zip(ts, self._read(ts), strict=True))
        return self._chunk[t]

    def image(self, t: int) -> torch.Tensor:
        return preprocess_frame(self.rgb(t), self.image_size)


class RecordFrames(ChunkedFrames):
    """Frames of a `VideoRecord` (through `VideoRecord.load_frames`)."""

    def __init__(self, record: VideoRecord, image_size: int, read_ahead: int = 16) -> None:
        super().__init__(
            record.load_frames,
            record.num_frames,
            (record.height, record.width),
            image_size,
            frame_step=record.frame_step,
            read_ahead=read_ahead,
        )
        self.record = record
