"""SA-V layouts written by code.

Train (`write_sav_train`): H.264 mp4s with B-frames + ``_manual.json`` / ``_auto.json``
masklets as COCO RLEs, in ``sav_train/sav_NNN/``. Val/test (`write_sav_val`): JPEG frame
folders + one binary PNG per object and annotated frame.

(decord 0.6 fails on a few tiny widths such as 16, 24, 48 and 72 pixels, so the videos
avoid them; real SA-V videos are hundreds of pixels wide.)

Every frame carries its own index drawn as large black/white blocks (`draw_index`), so a
test can check that frame t read back is frame t (`read_index`) despite lossy coding.

The train videos cover, in the first three (more videos repeat the third with shifted
objects):

- ``sav_000000`` 48x64, 13 frames (annotated entries at 0, 4, 8, 12): object 1 is a part
  of object 0 (overlapping masks); object 2 is absent (empty RLE) on frame 4 and back on
  frame 8; object 3 first appears on frame 8; object 2 is null (not annotated) on frame
  12, so frame 12 is not an annotated frame; an ``_auto.json`` with 2 masklets;
- ``sav_000001`` portrait 64x40, 10 frames; the whole entry of frame 4 is null; no auto;
- ``sav_000002`` 48x64, 16 frames, 3 objects, an ``_auto.json`` with 1 masklet, in the
  second shard folder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from layouts import Truth, VideoTruth

BLOCK = 8  # pixels per side of one index bit
INDEX_BITS = 8  # frames 0..255
ANN_EVERY = 4
AUTO_ID_OFFSET = 1000  # what the reader adds to automatic masklet ids


# ---------------------------------------------------------------------------------------
# frames that say their own index


def draw_index(t: int, height: int, width: int, block: int = BLOCK) -> np.ndarray:
    """uint8 [H, W, 3]: grey, with bit b of `t` as block b (row-major) black or white."""
    rows, cols = height // block, width // block
    if rows * cols < INDEX_BITS:
        raise ValueError(f"{height}x{width} holds fewer than {INDEX_BITS} blocks of {block}")
    img = np.full((height, width, 3), 128, np.uint8)
    for b in range(INDEX_BITS):
        r, c = divmod(b, cols)
        img[r * block : (r + 1) * block, c * block : (c + 1) * block] = 255 * ((t >> b) & 1)
    return img


def read_index(frame: np.ndarray, block: int = BLOCK) -> int:
    """The index `draw_index` drew, from the centre of each block (robust to coding)."""
    cols = frame.shape[1] // block
    t, m = 0, block // 4
    for b in range(INDEX_BITS):
        r, c = divmod(b, cols)
        y, x = r * block, c * block
        t |= int(frame[y + m : y + block - m, x + m : x + block - m].mean() > 128) << b
    return t


def encode_mp4(
    path: Path,
    frames: Iterable[np.ndarray],
    fps: int = 24,
    options: dict[str, str] | None = None,
    rotation: int | None = None,
) -> None:
    """H.264 (libx264, yuv420p) mp4; default options give B-frames and 12-frame GOPs."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(
            "libx264", rate=fps, options=options or {"bf": "3", "g": "12"}
        )
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# ---------------------------------------------------------------------------------------
# train: mp4 + JSON masklets


@dataclass
class Box:
    """A moving rectangle: top-left (y, x) + t * (vy, vx), size (h, w); empty on `absent`
    annotated entries and null (not annotated) on `null` entries."""

    y: int
    x: int
    h: int
    w: int
    vy: int = 0
    vx: int = 0
    absent: set[int] = field(default_factory=set)
    null: set[int] = field(default_factory=set)

    def mask(self, t: int, height: int, width: int) -> np.ndarray:
        m = np.zeros((height, width), bool)
        if t // ANN_EVERY in self.absent:
            return m
        y, x = self.y + self.vy * t, self.x + self.vx * t
        m[max(y, 0) : max(y + self.h, 0), max(x, 0) : max(x + self.w, 0)] = True
        return m


@dataclass
class TrainVideo:
    name: str
    shard: str
    height: int
    width: int
    num_frames: int
    manual: list[Box]
    auto: list[Box] | None = None
    null_entries: set[int] = field(default_factory=set)  # whole entry null

    @property
    def entries(self) -> int:
        return math.ceil(self.num_frames / ANN_EVERY)

    def objects(self, read_auto: bool) -> list[tuple[int, Box]]:
        out = list(enumerate(self.manual))
        if read_auto and self.auto is not None:
            out += [(AUTO_ID_OFFSET + k, b) for k, b in enumerate(self.auto)]
        return out

    def annotated(self, read_auto: bool) -> list[int]:
        boxes = [b for _, b in self.objects(read_auto)]
        return [
            ANN_EVERY * i
            for i in range(self.entries)
            if i not in self.null_entries and not any(i in b.null for b in boxes)
        ]

    def masks(self, t: int, read_auto: bool = False) -> np.ndarray:
        """bool [O, H, W] in reader object order on annotated frame `t`."""
        return np.stack([b.mask(t, self.height, self.width) for _, b in self.objects(read_auto)])


def train_videos(num_videos: int = 3) -> list[TrainVideo]:
    """The train videos `write_sav_train` writes (see the module doc)."""
    videos = [
        TrainVideo(
            "sav_000000",
            "sav_000",
            48,
            64,
            13,
            manual=[
                Box(8, 4, 20, 24, vx=1),
                Box(12, 8, 8, 8, vx=1),  # a part of object 0
                Box(30, 40, 10, 12, absent={1}, null={3}),
                Box(4, 44, 8, 10, absent={0, 1}),
            ],
            auto=[Box(36, 2, 8, 30), Box(2, 2, 40, 60)],
        ),
        TrainVideo(
            "sav_000001",
            "sav_000",
            64,
            40,
            10,
            manual=[Box(10, 6, 30, 20, vy=1), Box(14, 10, 10, 8, vy=1)],
            null_entries={1},
        ),
    ]
    for k in range(2, num_videos):
        d = k - 2
        videos.append(
            TrainVideo(
                f"sav_{k:06d}",
                f"sav_{k // 2:03d}",
                48,
                64,
                16,
                manual=[Box(4 + d, 4, 12, 12, vx=1), Box(24, 20 + d, 16, 10), Box(6, 40, 6, 6)],
                auto=[Box(30, 30 + d, 10, 20)],
            )
        )
    return videos[:num_videos]


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def masklet_json(v: TrainVideo, boxes: Sequence[Box], kind: str) -> dict:
    """An SA-V masklet JSON (keys and number types as in the real files)."""
    masklet: list = []
    for i in range(v.entries):
        t = ANN_EVERY * i
        if i in v.null_entries:
            masklet.append(None)
        else:
            masklet.append(
                [None if i in b.null else _rle(b.mask(t, v.height, v.width)) for b in boxes]
            )
    first = []
    for b in boxes:
        present = [i for i in range(v.entries) if b.mask(ANN_EVERY * i, v.height, v.width).any()]
        first.append(float(present[0]) if kind == "manual" else 0)
    n = len(boxes)
    return {
        "video_id": v.name,
        "video_duration": v.num_frames / 24,
        "video_frame_count": float(v.num_frames),
        "video_height": float(v.height),
        "video_width": float(v.width),
        "video_resolution": float(v.height * v.width),
        "video_environment": "Indoor",
        "video_split": "train",
        "masklet": masklet,
        "masklet_id": list(range(n)),
        "masklet_first_appeared_frame": first,
        "masklet_frame_count": [v.entries] * n,
        "masklet_type": [kind] * n,
        "masklet_num": n,
    }


def write_sav_train(
    root: Path,
    num_videos: int = 3,
    split: str = "sav_train",
    auto_json: bool = True,
    read_auto: bool = False,
) -> Truth:
    """Write the train videos of `train_videos(num_videos)` under `root/split`.

    `auto_json`: write the ``_auto.json`` files. The returned truth describes reading
    with ``read_sav(..., auto=read_auto)``.
    """
    truth: Truth = {}
    for v in train_videos(num_videos):
        folder = Path(root) / split / v.shard
        folder.mkdir(parents=True, exist_ok=True)
        encode_mp4(
            folder / f"{v.name}.mp4",
            (draw_index(t, v.height, v.width) for t in range(v.num_frames)),
        )
        (folder / f"{v.name}_manual.json").write_text(
            json.dumps(masklet_json(v, v.manual, "manual"))
        )
        if auto_json and v.auto is not None:
            (folder / f"{v.name}_auto.json").write_text(json.dumps(masklet_json(v, v.auto, "auto")))
        use_auto = read_auto and auto_json
        truth[v.name] = _truth(
            v.num_frames,
            v.height,
            v.width,
            [oid for oid, _ in v.objects(use_auto)],
            {t: v.masks(t, use_auto) for t in v.annotated(use_auto)},
        )
    return truth


def _truth(
    num_frames: int, height: int, width: int, ids: list[int], masks: dict[int, np.ndarray]
) -> VideoTruth:
    first: dict[int, int] = {}
    counts: dict[int, dict[int, int]] = {oid: {} for oid in ids}
    for t in sorted(masks):
        for oid, m in zip(ids, masks[t], strict=True):
            counts[oid][t] = int(m.sum())
            if m.any():
                first.setdefault(oid, t)
    return VideoTruth(
        num_frames=num_frames,
        annotated_frames=sorted(masks),
        object_ids=ids,
        first_appearance=first,
        pixel_counts=counts,
        height=height,
        width=width,
    )


# ---------------------------------------------------------------------------------------
# val / test: JPEG frames + per-object binary PNGs


@dataclass
class FramesVideo:
    name: str
    height: int
    width: int
    num_frames: int
    objects: dict[int, Box]  # folder number -> box; even numbers 0/1 palette, odd 0/255 grey

    @property
    def annotated(self) -> list[int]:
        return list(range(0, self.num_frames, ANN_EVERY))

    def masks(self, t: int) -> np.ndarray:
        return np.stack([b.mask(t, self.height, self.width) for b in self.objects.values()])


def val_videos(num_videos: int = 2) -> list[FramesVideo]:
    """The videos `write_sav_val` writes: all objects present in frame 0, overlapping
    masks, object 1 absent on frame 4; the second video is portrait."""
    out = []
    for k in range(num_videos):
        h, w = (48, 64) if k % 2 == 0 else (64, 48)
        out.append(
            FramesVideo(
                f"sav_{100000 + k:06d}",
                h,
                w,
                9 + k,
                {
                    0: Box(6 + k, 6, 24, 20, vx=1),
                    1: Box(10 + k, 10, 8, 8, vx=1, absent={1}),  # a part of object 0
                    2: Box(32, 30, 8, 12),
                },
            )
        )
    return out


def _palette_png(mask: np.ndarray) -> Image.Image:
    png = Image.fromarray(mask.astype(np.uint8))  # "L"; putpalette makes it "P"
    png.putpalette([0, 0, 0, 255, 255, 255] + [0, 0, 0] * 254)
    return png


def write_sav_val(root: Path, split: str = "sav_val", num_videos: int = 2) -> Truth:
    """Write `val_videos(num_videos)` in the SA-V val/test layout under `root/split`."""
    split_dir = Path(root) / split
    truth: Truth = {}
    for v in val_videos(num_videos):
        frames = split_dir / "JPEGImages_24fps" / v.name
        frames.mkdir(parents=True, exist_ok=True)
        for t in range(v.num_frames):
            Image.fromarray(draw_index(t, v.height, v.width)).save(
                frames / f"{t:05d}.jpg", quality=95
            )
        for oid, box in v.objects.items():
            folder = split_dir / "Annotations_6fps" / v.name / f"{oid:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for t in v.annotated:
                m = box.mask(t, v.height, v.width)
                png = _palette_png(m) if oid % 2 == 0 else Image.fromarray(255 * m.astype(np.uint8))
                png.save(folder / f"{t:05d}.png")
        truth[v.name] = _truth(
            v.num_frames, v.height, v.width, list(v.objects), {t: v.masks(t) for t in v.annotated}
        )
    (split_dir / f"{split}.txt").write_text("".join(v.name + "\n" for v in val_videos(num_videos)))
    return truth
