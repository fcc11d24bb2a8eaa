"""Frame sources the streaming engine reads lazily, one frame at a time."""

from __future__ import annotations

import torch

from mosam_train.data.transforms import preprocess_frame
from mosam_train.data.video import VideoRecord


class RecordFrames:
    """Frames of a `VideoRecord`, preprocessed exactly as SAM 2's video predictor does."""

    def __init__(self, record: VideoRecord, image_size: int) -> None:
        self.record = record
        self.image_size = image_size
        self.num_frames = record.num_frames
        self.height = record.height
        self.width = record.width
        self.frame_step = record.frame_step

    def image(self, t: int) -> torch.Tensor:
        return preprocess_frame(self.record.load_frame(t), self.image_size)
