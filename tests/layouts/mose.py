"""A tiny MOSE dataset (`<root>/<split>/{JPEGImages,Annotations}/<8-hex vid>/`), written
by code, plus an optional `meta_<split>.json` in one of the schemas seen in the wild
(the reader must ignore it).

Videos (train: a PNG for every frame; valid / test: only `00000.png`):

- video 0: objects {1, 2}; object 2 disappears in frames 2-3 and reappears in frame 4;
- video 1: objects {1, 2, 3}; object 1 disappears in the last frame, objects 2 and 3
  overlap (3 is painted over 2);
- further videos: object 1 in every frame.

Everything is deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from layouts import Truth, VideoTruth
from mosam_train.palette import voc_palette

META_SCHEMAS = (None, "ytvos", "flat", "broken")


def mose_name(i: int) -> str:
    return f"{(0x1A2B3C4D + 0x9E3779B1 * i) % 16**8:08x}"


def _presence(i: int) -> tuple[int, dict[int, list[int]]]:
    """(number of frames, {object id: frames where it is visible}) of video i."""
    if i == 0:
        return 6, {1: list(range(6)), 2: [0, 1, 4, 5]}
    if i == 1:
        return 5, {1: [0, 1, 2, 3], 2: list(range(5)), 3: list(range(5))}
    return 4, {1: list(range(4))}


def _label(oids: list[int], k: int, h: int, w: int) -> np.ndarray:
    lbl = np.zeros((h, w), np.uint8)
    bh, bw = max(3, h // 3), max(4, w // 4)
    for oid in sorted(oids):  # higher ids on top
        y = (oid * 5) % max(1, h - bh)
        x = (oid * 6 + 3 * k) % max(1, w - bw)
        lbl[y : y + bh, x : x + bw] = oid
    return lbl


def _image(lbl: np.ndarray) -> np.ndarray:
    h, w = lbl.shape
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 5 % 256, yy * 3 % 256, np.full_like(yy, 90)], -1).astype(np.uint8)
    for oid in np.unique(lbl[lbl > 0]).tolist():
        rgb[lbl == oid] = ((oid * 80) % 256, 230, (oid * 50 + 30) % 256)
    return rgb


def write_mose(
    root: str | Path,
    split: str = "train",
    num_videos: int = 3,
    *,
    meta: str | None = None,
    height: int = 32,
    width: int = 48,
) -> Truth:
    """Write `split` under `root` and return what `read_mose(root, split)` must report.

    `meta`: also write `<root>/meta_<split>.json`: "ytvos" ({"videos": {vid: {"objects":
    {id: {"frames": [...]}}}}}), "flat" ({vid: {"num_frames", "objects": [ids]}}) or
    "broken" (not JSON).
    """
    if meta not in META_SCHEMAS:
        raise ValueError(f"meta must be one of {META_SCHEMAS}")
    root = Path(root)
    sparse = split.startswith(("valid", "test"))
    palette = list(voc_palette())
    truth: Truth = {}
    meta_videos: dict[str, dict] = {}
    for i in range(num_videos):
        name = mose_name(i)
        n, present = _presence(i)
        img_dir = root / split / "JPEGImages" / name
        ann_dir = root / split / "Annotations" / name
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        ids = sorted(present)
        annotated = [0] if sparse else list(range(n))
        counts: dict[int, dict[int, int]] = {oid: {} for oid in ids}
        for k in range(n):
            lbl = _label([oid for oid in ids if k in present[oid]], k, height, width)
            Image.fromarray(_image(lbl)).save(img_dir / f"{k:05d}.jpg", quality=95)
            if k in annotated:
                png = Image.fromarray(lbl)
                png.putpalette(palette)
                png.save(ann_dir / f"{k:05d}.png")
                for oid in ids:
                    counts[oid][k] = int((lbl == oid).sum())
        truth[name] = VideoTruth(
            num_frames=n,
            annotated_frames=annotated,
            object_ids=ids,
            first_appearance=dict.fromkeys(ids, 0),
            pixel_counts=counts,
            height=height,
            width=width,
        )
        meta_videos[name] = {
            "objects": {str(oid): {"frames": [f"{k:05d}" for k in present[oid]]} for oid in ids},
            "num_frames": n,
        }
    path = root / f"meta_{split}.json"
    if meta == "ytvos":
        videos = {v: {"objects": e["objects"]} for v, e in meta_videos.items()}
        path.write_text(json.dumps({"videos": videos}))
    elif meta == "flat":
        flat = {
            v: {"num_frames": e["num_frames"], "objects": sorted(e["objects"])}
            for v, e in meta_videos.items()
        }
        path.write_text(json.dumps(flat))
    elif meta == "broken":
        path.write_text('{"videos": [')
    return truth
