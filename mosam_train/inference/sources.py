"""Frame sources the streaming engine reads lazily, one frame at a time."""

from __future__ import annotations

import numpy as np
import torch

from mosam_train.data.transforms import preprocess_frame
from mosam_train.data.video import VideoRecord


class RecordFrames:
    """Frames of a `VideoRecord`, preprocessed exactly as SAM 2's video predictor does.

    Frames are read `read_ahead` at a time through `VideoRecord.load_frames`, so a video
    file is decoded in one pass per chunk rather than seeked once per frame.
    """

    def __init__(self, record: VideoRecord, image_size: int, read_ahead: int = 16) -> None:
        self.record = record
        self.image_size = image_size
        self.num_frames = record.num_frames
        self.height = record.height
        self.width = record.width
        self.frame_step = record.frame_step
        self.read_ahead = max(1, read_ahead)
        self._chunk: dict[int, np.ndarray] = {}

    def image(self, t: int) -> torch.Tensor:
        if t not in self._chunk:
            ts = list(range(t, min(t + self.read_ahead, self.num_frames)))
            self._chunk = dict(zip(ts, self.record.load_frames(ts), strict=True))
        return preprocess_frame(self._chunk[t], self.image_size)
