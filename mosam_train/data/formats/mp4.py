"""Exact random-access frame reading from video files (mp4 with H.264, HEVC, ... anything
FFmpeg decodes), for layouts that ship videos instead of frame folders (SA-V train).

Frame index ``t`` is the t-th frame in presentation order, counted from the first frame
the decoder outputs. Only the frames asked for are decoded, from the keyframe at or before
them; a batch is read in one forward pass per group of pictures. Two backends give the
same frames:

- ``decord`` (`VideoReader.get_batch`): fastest; maps indices to timestamps itself.
- ``pyav`` (where decord has no wheel, e.g. Apple Silicon): on open, the packets are
  demuxed once (no decoding) to build the sorted table of presentation timestamps (pts)
  and the keyframes; a read seeks to the keyframe at or before the first wanted frame and
  decodes forward, and every decoded frame is identified by its pts looked up in that
  table, never by counting frames after a seek (seeks land on keyframes only
  approximately, and B-frames reorder decode vs presentation order). A seek that lands
  after the wanted frame falls back to the keyframe before, then to decoding from the
  start. Frames before the keyframe a seek started from (open-GOP leading pictures) are
  never returned.

``backend="auto"`` picks decord when importable, else PyAV.

Orientation: frames are returned as players display them. decord applies the
container's rotation (display matrix) itself; the PyAV backend applies the same rotation
with `np.rot90`, so a portrait video stored as rotated landscape is portrait in both, and
`height`/`width` are the displayed size. Sample aspect ratio is not applied (frames keep
their stored pixel grid).

Handles are opened lazily and never pickled: an `Mp4Video` holds only the path and the
metadata it has learnt, so records can be sent to DataLoader workers (forkserver/spawn);
each process opens its own decoders and keeps the most recently used `MAX_OPEN` of them
(closing older ones), so iterating over 50k videos does not exhaust file handles, while
successive reads of one video (the frames of a training clip) reuse the open decoder
and, when they move forward, its position.

Every problem with the file (missing, truncated, corrupt, index out of range, decode
failure) raises `DataError` naming the file and the fix.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mosam_train.errors import DataError

BACKENDS = ("decord", "pyav")
# decoders kept open per process (least recently used closed first)
MAX_OPEN = 8
REENCODE = "ffmpeg -i {path} -c:v libx264 -pix_fmt yuv420p fixed.mp4"


@cache
def available_backends() -> tuple[str, ...]:
    """Backends whose library imports here, in `auto` preference order."""
    found = []
    for name, module in (("decord", "decord"), ("pyav", "av")):
        try:
            __import__(module)
        except ImportError:
            continue
        found.append(name)
    return tuple(found)


def resolve_backend(backend: str) -> str:
    """`backend` itself, or for ``"auto"`` the first available one."""
    if backend not in ("auto", *BACKENDS):
        raise ValueError(f"unknown video backend {backend!r}; use 'auto' or one of {BACKENDS}")
    have = available_backends()
    if backend == "auto":
        if not have:
            raise ImportError(
                "no video decoder: install decord (`pip install decord`) or PyAV "
                "(`pip install av`) to read mp4 videos"
            )
        return have[0]
    if backend not in have:
        module = "av" if backend == "pyav" else "decord"
        raise ImportError(f"video backend {backend!r} needs `pip install {module}`")
    return backend


class _Decoder(Protocol):
    num_frames: int
    fps: float
    height: int
    width: int
    lock: threading.Lock

    @property
    def closed(self) -> bool: ...

    def read(self, indices: list[int]) -> dict[int, np.ndarray]: ...

    def close(self) -> None: ...


def _fix(path: Path) -> str:
    return (
        f"Fix: re-download the file, or re-encode it (`{REENCODE.format(path=path)}`) and "
        f"check it plays."
    )


class _DecordDecoder:
    def __init__(self, path: Path, threads: int) -> None:
        import decord

        self.path = path
        self.lock = threading.Lock()
        self._errors = (RuntimeError, decord.DECORDError)
        try:
            self.vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=threads)
            self.num_frames = len(self.vr)
            self.fps = float(self.vr.get_avg_fps())
            first = self.vr[0].asnumpy() if self.num_frames else None
            self.vr.seek(0)
        except self._errors as e:
            raise DataError(
                f"{path}: cannot open the video ({_short(e)}). {_fix(path)}", path
            ) from e
        if first is None:
            raise DataError(f"{path}: the video has no frames. {_fix(path)}", path)
        self.height, self.width = first.shape[:2]

    def read(self, indices: list[int]) -> dict[int, np.ndarray]:
        try:
            frames = self.vr.get_batch(indices).asnumpy()
        except self._errors as e:
            raise DataError(
                f"{self.path}: decoding frames {_span(indices)} failed ({_short(e)}). "
                f"{_fix(self.path)} decord also fails on some valid files (e.g. a few tiny "
                f"frame widths): try backend='pyav'.",
                self.path,
            ) from e
        return dict(zip(indices, frames, strict=True))

    @property
    def closed(self) -> bool:
        return self.vr is None

    def close(self) -> None:
        self.vr = None


class _PyAVDecoder:
    def __init__(self, path: Path, threads: int) -> None:
        import av

        self.path = path
        self.threads = threads
        self.lock = threading.Lock()
        self._errors = (av.FFmpegError, OSError)
        self.container: Any = None
        try:
            self._index()
            first = self.read([0])[0]
        except self._errors as e:
            self.close()
            raise DataError(
                f"{path}: cannot open the video ({_short(e)}). {_fix(path)}", path
            ) from e
        except DataError:
            self.close()
            raise
        self.height, self.width = first.shape[:2]

    def _index(self) -> None:
        """Timestamp table and keyframes from one demux pass (packets only, no decoding)."""
        self._open()
        stream = self.stream
        declared = int(stream.frames or 0)
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        packets = [p for p in self.container.demux(stream) if p.size]
        if declared and len(packets) < declared:
            raise DataError(
                f"{self.path}: the file is truncated: its index lists {declared} frames but "
                f"the file holds {len(packets)}. Fix: re-download it (the download or the "
                f"extraction was cut short).",
                self.path,
            )
        kept = [p for p in packets if not p.is_discard]
        pts = [p.pts if p.pts is not None else p.dts for p in kept]
        if not pts or None in pts or len(set(pts)) != len(pts):
            problem = "has no frames" if not pts else "has missing or repeated timestamps"
            raise DataError(f"{self.path}: the video {problem}. {_fix(self.path)}", self.path)
        self.pts = sorted(pts)
        self.index = {p: i for i, p in enumerate(self.pts)}
        self.num_frames = len(self.pts)
        keys = sorted(
            (self.index[p.pts], p.dts) for p in kept if p.is_keyframe and p.pts is not None
        )
        # seek target per keyframe: its decode timestamp (the demuxer's index is in dts)
        self.key_index = [k for k, _ in keys] or [0]
        self.key_dts = [d for _, d in keys] or [None]
        self._restart()

    def _open(self) -> None:
        import av

        self.container = av.open(str(self.path))
        if not self.container.streams.video:
            raise DataError(
                f"{self.path}: no video stream in the file. {_fix(self.path)}", self.path
            )
        self.stream = self.container.streams.video[0]
        self.stream.codec_context.thread_count = self.threads
        if self.threads != 1:
            self.stream.thread_type = "AUTO"

    def _restart(self) -> None:
        """Decode from the very start of the file (reopened, so always exact)."""
        self.close()
        self._open()
        self._start(0, from_start=True)

    def _start(self, floor: int, from_start: bool = False) -> None:
        self._frames: Iterator[Any] | None = self.container.decode(self.stream)
        self._pos = -1  # index of the last frame the decoder output
        self._floor = floor  # frames before the keyframe we started from are not trusted
        self._from_start = from_start

    def _seek(self, k: int) -> None:
        """Start decoding at keyframe `k` (the first one: from the start of the file)."""
        import av

        dts = self.key_dts[k]
        if k == 0 or dts is None:
            self._restart()
            return
        try:
            self.container.seek(dts, stream=self.stream, backward=True, any_frame=False)
        except av.FFmpegError:
            self._restart()
            return
        self._start(self.key_index[k])

    def _advance_to(self, t: int) -> Any | None:
        """Decode forward to frame `t`; None if the decoder passed it or the stream ended."""
        assert self._frames is not None
        for frame in self._frames:
            ts = frame.pts if frame.pts is not None else frame.dts
            idx = self.index.get(ts)
            if idx is None:
                raise DataError(
                    f"{self.path}: decoded a frame with timestamp {ts} that the "
                    f"container does not list. {_fix(self.path)}",
                    self.path,
                )
            if idx < self._floor:
                continue
            self._pos = idx
            if idx == t:
                return frame
            if idx > t:
                return None
        self._frames = None
        return None

    def _frame(self, t: int) -> np.ndarray:
        k = max(bisect_right(self.key_index, t) - 1, 0)
        # moving forward inside the current group of pictures: keep decoding, no seek
        if self._frames is None or not (self.key_index[k] <= self._pos < t):
            self._seek(k)
        while (frame := self._advance_to(t)) is None:
            if self._from_start:
                raise DataError(
                    f"{self.path}: frame {t} could not be decoded (the decoder never output "
                    f"it). {_fix(self.path)}",
                    self.path,
                )
            # the seek landed after frame t (or t was skipped): start one keyframe earlier
            k = max(k - 1, 0) if self._floor == self.key_index[k] else k
            self._seek(k)
        rgb = frame.to_ndarray(format="rgb24")
        turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
        return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb

    def read(self, indices: list[int]) -> dict[int, np.ndarray]:
        try:
            return {t: self._frame(t) for t in sorted(set(indices))}
        except self._errors as e:
            self._frames = None
            raise DataError(
                f"{self.path}: decoding frames {_span(indices)} failed ({_short(e)}). "
                f"{_fix(self.path)}",
                self.path,
            ) from e

    @property
    def closed(self) -> bool:
        return self.container is None

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
        self.container = None
        self._frames = None


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 200 else text[:200] + "..."


def _span(indices: Sequence[int]) -> str:
    return f"{min(indices)}..{max(indices)}" if len(set(indices)) > 1 else str(indices[0])


_DECODERS = {"decord": _DecordDecoder, "pyav": _PyAVDecoder}
_open: OrderedDict[tuple[str, str, int], _Decoder] = OrderedDict()
_open_lock = threading.Lock()
_open_pid = os.getpid()


def _decoder(path: Path, backend: str, threads: int) -> _Decoder:
    """The open decoder of `path` in this process (opened on first use, LRU-bounded)."""
    global _open_pid
    key = (str(path), backend, threads)
    with _open_lock:
        if os.getpid() != _open_pid:  # a forked child: the parent's handles are not ours
            _open.clear()
            _open_pid = os.getpid()
        dec = _open.get(key)
        if dec is not None:
            _open.move_to_end(key)
            return dec
    if not path.is_file():
        raise DataError(
            f"{path}: video file not found. Fix: check the dataset root and that the "
            f"download was fully extracted.",
            path,
        )
    dec = _DECODERS[backend](path, threads)
    with _open_lock:
        _open[key] = dec
        while len(_open) > MAX_OPEN:
            _, old = _open.popitem(last=False)
            with old.lock:
                old.close()
    return dec


def close_all() -> None:
    """Close every decoder this process holds (they reopen on the next read)."""
    with _open_lock:
        while _open:
            _, dec = _open.popitem()
            with dec.lock:
                dec.close()


class Mp4Video:
    """One video file read by frame index; cheap to create and to pickle (see module doc).

    `threads`: decoder threads per open video (1 suits DataLoader workers, where the
    parallelism is across workers; 0 lets FFmpeg choose).
    """

    def __init__(self, path: str | Path, backend: str = "auto", threads: int = 1) -> None:
        self.path = Path(path)
        self.backend = resolve_backend(backend)
        self.threads = int(threads)
        self._info: tuple[int, float, int, int] | None = None

    def __repr__(self) -> str:
        return f"Mp4Video({str(self.path)!r}, backend={self.backend!r})"

    def _decoder(self) -> _Decoder:
        dec = _decoder(self.path, self.backend, self.threads)
        if self._info is None:
            self._info = (dec.num_frames, dec.fps, dec.height, dec.width)
        return dec

    def _meta(self) -> tuple[int, float, int, int]:
        if self._info is None:
            self._decoder()
        assert self._info is not None
        return self._info

    @property
    def num_frames(self) -> int:
        return self._meta()[0]

    @property
    def fps(self) -> float:
        return self._meta()[1]

    @property
    def height(self) -> int:
        """Displayed height (rotation applied)."""
        return self._meta()[2]

    @property
    def width(self) -> int:
        """Displayed width (rotation applied)."""
        return self._meta()[3]

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames `indices` (any order, repeats allowed) as uint8 [N, H, W, 3] RGB."""
        wanted = [int(t) for t in indices]
        dec = self._decoder()
        n = dec.num_frames
        bad = [t for t in wanted if not 0 <= t < n]
        if bad:
            raise DataError(
                f"{self.path}: frame index {bad[0]} is out of range: the video has {n} frames "
                f"(0..{n - 1}). Fix: the annotation refers to frames the video does not "
                f"have; check that the video and its annotation belong together.",
                self.path,
            )
        if not wanted:
            return np.empty((0, dec.height, dec.width, 3), np.uint8)
        while True:
            with dec.lock:
                if not dec.closed:
                    frames = dec.read(sorted(set(wanted)))
                    break
            dec = self._decoder()  # closed by another thread (evicted): reopen
        for t, f in frames.items():
            if f.shape != (dec.height, dec.width, 3):
                raise DataError(
                    f"{self.path}: frame {t} is {f.shape[0]}x{f.shape[1]} but frame 0 is "
                    f"{dec.height}x{dec.width}; the resolution changes mid-video. "
                    f"{_fix(self.path)}",
                    self.path,
                )
        return np.stack([frames[t] for t in wanted])

    def read_frame(self, t: int) -> np.ndarray:
        """Frame `t` as uint8 [H, W, 3] RGB."""
        return self.read([t])[0]
