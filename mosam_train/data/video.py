"""The record every on-disk layout is read into, and the clip sample the model trains on.

Readers in `mosam_train.data.formats` produce `VideoRecord`s; everything downstream
(sampling, transforms, inference, metrics) only sees this interface, so a new layout is a
new reader and nothing else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch


class VideoRecord(ABC):
    """One video: frame references and per-frame object masks, read lazily.

    Frame indices are positions in the frame sequence as the engine processes it
    (0..num_frames-1), not file-name numbers.
    """

    name: str
    num_frames: int
    object_ids: tuple[int, ...]
    annotated_frames: tuple[int, ...]
    height: int
    width: int
    tags: tuple[str, ...] = ()
    # Tags per object id where the dataset gives them per object (an object not in it has
    # none; `tags` is then their union); None: every object carries `tags`.
    object_tags: dict[int, tuple[str, ...]] | None = None
    # Frames of the original video between two consecutive frames of this record: 1 when the
    # record holds every frame; e.g. 4 for SA-V's 6 fps annotations of 24 fps videos. Memory
    # strides given in video frames are converted with it.
    frame_step: int = 1
    # True where objects' masks may overlap (SA-V: a person and their hand). Such videos
    # are scored object by object from each object's own mask, as SA-V's evaluator does;
    # the others from one label map per frame, as DAVIS-style PNG predictions are.
    overlapping: bool = False

    @abstractmethod
    def load_frame(self, t: int) -> np.ndarray:
        """RGB frame `t` as uint8 [H, W, 3]."""

    def load_frames(self, ts: Sequence[int]) -> np.ndarray:
        """Frames `ts` as uint8 [N, H, W, 3]. Layouts that decode a video file override it
        to read all of them in one pass (one seek) instead of one seek per frame."""
        return np.stack([self.load_frame(t) for t in ts])

    @abstractmethod
    def load_masks(self, t: int) -> np.ndarray:
        """Binary masks of `object_ids` on annotated frame `t` as bool [O, H, W]."""

    @property
    def source(self) -> str:
        """The file or folder this video is read from, for messages (readers override it)."""
        return self.name

    def frame_name(self, t: int) -> str:
        """File stem of frame `t` in the dataset's own naming (predictions mirror it)."""
        return f"{t:05d}"

    def load_void(self, t: int) -> np.ndarray | None:
        """Pixels excluded from scoring on frame `t` (bool [H, W]), or None."""
        return None

    def annotation_step(self) -> int:
        """Video frames between consecutive annotated frames (their median gap): 1 for DAVIS
        and MOSE train, 4 for SA-V, 5 for YouTube-VOS. Frame skips given in video frames
        are converted with it, so one setting spans the same time on every dataset."""
        a = self.annotated_frames
        gap = int(np.median(np.diff(a))) if len(a) > 1 else 1
        return self.frame_step * max(1, gap)

    def first_appearance(self) -> dict[int, int]:
        """Frame where each object is first annotated as present."""
        first: dict[int, int] = {}
        for t in self.annotated_frames:
            present = self.load_masks(t).reshape(len(self.object_ids), -1).any(axis=1)
            for oid, p in zip(self.object_ids, present, strict=True):
                if p and oid not in first:
                    first[oid] = t
            if len(first) == len(self.object_ids):
                break
        return first


@dataclass
class ClipSample:
    """A training clip after transforms.

    frames: float [T, 3, S, S], normalised with ImageNet mean/std.
    masks: bool [T, O, S, S] for the O sampled objects.
    video: name of the source video; frame_indices: source frame of each clip step.
    flows: optional float [T, 2, S, S], each frame's optical flow to the frame before it
    (zeros for frame 0), computed on the augmented frames.
    """

    frames: torch.Tensor
    masks: torch.Tensor
    video: str
    frame_indices: list[int]
    object_ids: list[int]
    meta: dict = field(default_factory=dict)
    flows: torch.Tensor | None = None


@dataclass
class ClipBatch:
    """Collated clips. Objects are padded to the largest count in the batch.

    frames: [B, T, 3, S, S]; masks: bool [B, T, O, S, S]; object_valid: bool [B, O].
    meta: each clip's `ClipSample.meta` (e.g. "skipped": bad samples skipped to make it).
    flows: [B, T, 2, S, S] when the clips carry optical flow.
    """

    frames: torch.Tensor
    masks: torch.Tensor
    object_valid: torch.Tensor
    videos: list[str]
    frame_indices: list[list[int]]
    object_ids: list[list[int]]
    meta: list[dict] = field(default_factory=list)
    flows: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> ClipBatch:
        return ClipBatch(
            frames=self.frames.to(device),
            masks=self.masks.to(device),
            object_valid=self.object_valid.to(device),
            videos=self.videos,
            frame_indices=self.frame_indices,
            object_ids=self.object_ids,
            meta=self.meta,
            flows=None if self.flows is None else self.flows.to(device),
        )

    def __len__(self) -> int:
        return self.frames.shape[0]
