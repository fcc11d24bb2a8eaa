"""A user's video for the demo: an mp4 (any file FFmpeg decodes) or a folder of frames,
checked when opened and then read lazily, a few frames at a time.

`open_video` checks everything it can without decoding the whole video: the file or
folder exists, the video decodes (its first frame), a folder holds frames and all of
them have the size of the first (image headers only). Problems raise `DataError` naming
the file and the fix, before any model work.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mosam_train.data.formats.mp4 import Mp4Video
from mosam_train.dataset_files import image_size, list_frames, read_rgb
from mosam_train.errors import DataError
from mosam_train.inference.sources import ChunkedFrames

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


class VideoInput(ABC):
    """Frames of one video as uint8 RGB, by index."""

    path: Path
    num_frames: int
    height: int
    width: int
    fps: float | None  # None: the source has no frame rate (a frame folder)

    @abstractmethod
    def read(self, ts: Sequence[int]) -> np.ndarray:
        """Frames `ts` as uint8 [N, H, W, 3]."""


class FileVideo(VideoInput):
    """A video file (mp4, mov, avi, ...) decoded with decord or PyAV (`data.formats.mp4`)."""

    def __init__(self, path: Path, backend: str = "auto") -> None:
        self.path = path
        self.video = Mp4Video(path, backend=backend, threads=0)
        # opens the decoder and decodes frame 0: an unreadable file fails here
        self.num_frames = self.video.num_frames
        self.height, self.width = self.video.height, self.video.width
        self.fps = self.video.fps or None
        if self.num_frames < 1:
            raise DataError(f"{path}: the video has no frames. Fix: check the file.", path)

    def read(self, ts: Sequence[int]) -> np.ndarray:
        return self.video.read(ts)


class FolderVideo(VideoInput):
    """A folder of JPEG/PNG frames in natural order (2.jpg before 10.jpg; numeric names
    first, see `frame_sort_key`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        frames = list_frames(path, FRAME_SUFFIXES)
        if not frames:
            raise DataError(
                f"{path}: the folder holds no frames (.jpg, .jpeg or .png files). Fix: pass "
                f"the folder with the video's frames, or an mp4 file.",
                path,
            )
        self.files = list(frames.values())
        self.height, self.width = image_size(self.files[0])
        for f in self.files[1:]:
            size = image_size(f)
            if size != (self.height, self.width):
                raise DataError(
                    f"{f}: frame is {size[0]}x{size[1]} but the first frame "
                    f"({self.files[0].name}) is {self.height}x{self.width}; all frames of a "
                    f"video must have one size. Fix: resize the frames consistently or remove "
                    f"the odd one.",
                    f,
                )
        self.num_frames = len(self.files)
        self.fps = None

    def read(self, ts: Sequence[int]) -> np.ndarray:
        size = (self.height, self.width)
        return np.stack([read_rgb(self.files[t], size) for t in ts])


def open_video(path: str | Path, backend: str = "auto") -> VideoInput:
    """The video at `path`: a frame folder or a video file."""
    path = Path(path)
    if path.is_dir():
        return FolderVideo(path)
    if not path.is_file():
        raise DataError(
            f"{path}: no such file or folder. Fix: pass video=<file.mp4> or video=<folder "
            f"of frames>.",
            path,
        )
    return FileVideo(path, backend=backend)


class VideoFrames(ChunkedFrames):
    """A `VideoInput` as the engine's `FrameSource`; the demo draws its overlay from the
    same decoded chunk (`rgb`), so no frame is decoded twice."""

    def __init__(self, video: VideoInput, image_size: int, read_ahead: int = 16) -> None:
        super().__init__(
            video.read, video.num_frames, (video.height, video.width), image_size,
            read_ahead=read_ahead, name=f"video={video.path}",
        )  # fmt: skip
        self.video = video
