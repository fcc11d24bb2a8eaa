"""Tiny LVOS v1 / v2 datasets in the real layout, with the ground truth they were made from.

    <root>/<version>/<folder>/JPEGImages/<video>/00000001.jpg, 00000006.jpg, ...
    <root>/<version>/<folder>/Annotations/<video>/<same stems>.png   palette PNGs
    <root>/<version>/<folder>/<folder>_meta.json

<folder> is ``train``, or for the validation split ``valid`` (v1) / ``val`` (v2). v1 also
gets ``<folder>_expression_meta.json`` (captions), v2 ``<folder>_meta_attribute.json``
(tags: `ATTRIBUTES`), as the real downloads have.

Videos cycle through three scripts (frame numbers step by `stride`, from 1):

- 0: ids (2, 5): object 2 visible at record frames 0-3, absent 4-8 (a long stretch for
  this size), back 9-11; object 5 appears at frame 3 and stays.
- 1: ids (1, 7), two JPEGs before the first annotated frame (the reader leaves them out):
  object 1 always visible; object 7 appears at frame 6, leaves after frame 8.
- 2: id 4 alone, always visible.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from layouts import Truth, VideoTruth

# Per script: record frames, leading JPEGs without PNG, {object id: visible record frames}.
SCRIPTS: list[tuple[int, int, dict[int, list[int]]]] = [
    (12, 0, {2: [0, 1, 2, 3, 9, 10, 11], 5: list(range(3, 12))}),
    (10, 2, {1: list(range(10)), 7: [6, 7, 8]}),
    (6, 0, {4: list(range(6))}),
]
ATTRIBUTES = {0: ["LRA", "OCC"], 1: ["CTC"], 2: []}


def valid_folder(version: str) -> str:
    """Validation split folder as each version's download names it."""
    return "valid" if version == "v1" else "val"


def video_name(i: int) -> str:
    return f"lv{i:06d}"  # 8 characters, like LVOS's ids (e.g. 0tCWPOrc)


def stem(k: int, stride: int = 5) -> str:
    """Name of the k-th JPEG of a video: 30 fps frame numbers, every `stride`-th, from 1."""
    return f"{1 + stride * k:08d}"


def _palette() -> list[int]:
    rng = np.random.default_rng(7)
    pal = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    pal[0] = 0
    return pal.reshape(-1).tolist()


def _label(t: int, visible: dict[int, list[int]], h: int, w: int) -> np.ndarray:
    """Each object is a box in its own horizontal band, sliding right over time."""
    lbl = np.zeros((h, w), np.uint8)
    band = h // max(3, len(visible))
    for k, (oid, frames) in enumerate(sorted(visible.items())):
        if t in frames:
            y0 = k * band + 1
            x0 = (2 * t + 3 * k) % (w - 8)
            lbl[y0 : y0 + band - 2, x0 : x0 + 4 + (t + k) % 4] = oid
    return lbl


def write_lvos(
    root: str | Path,
    *,
    version: str = "v2",
    split: str = "train",
    num_videos: int = 3,
    height: int = 24,
    width: int = 32,
    stride: int = 5,
    seed: int = 0,
) -> Truth:
    """Write `num_videos` videos of LVOS `version` split `split` ("train" or "valid") under
    `root`; return their ground truth in record frame indices."""
    folder = "train" if split == "train" else valid_folder(version)
    sdir = Path(root) / version / folder
    rng = np.random.default_rng(seed)
    palette = _palette()
    truth: Truth = {}
    meta: dict[str, dict] = {}
    for i in range(num_videos):
        script = i % len(SCRIPTS)
        num_frames, lead, visible = SCRIPTS[script]
        name = video_name(i)
        img_dir = sdir / "JPEGImages" / name
        ann_dir = sdir / "Annotations" / name
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        counts: dict[int, dict[int, int]] = {oid: {} for oid in visible}
        for k in range(lead + num_frames):
            rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(rgb).save(img_dir / f"{stem(k, stride)}.jpg", quality=95)
            t = k - lead
            if t < 0:
                continue
            lbl = _label(t, visible, height, width)
            png = Image.fromarray(lbl)  # "L"; putpalette makes it "P"
            png.putpalette(palette)
            png.save(ann_dir / f"{stem(k, stride)}.png")
            for oid in visible:
                counts[oid][t] = int((lbl == oid).sum())
        first = {oid: min(fr) for oid, fr in visible.items()}
        meta[name] = {
            "objects": {
                str(oid): {
                    "frame_range": {
                        "start": int(stem(lead + min(fr), stride)),
                        "end": int(stem(lead + max(fr), stride)),
                        "frame_nums": len(fr),
                    }
                }
                for oid, fr in sorted(visible.items())
            }
        }
        truth[name] = VideoTruth(
            num_frames=num_frames,
            annotated_frames=list(range(num_frames)),
            object_ids=sorted(visible),
            first_appearance=first,
            pixel_counts=counts,
            height=height,
            width=width,
        )
    (sdir / f"{folder}_meta.json").write_text(json.dumps({"videos": meta}))
    if version == "v1":
        captions = {
            v: {"objects": {o: {**e, "caption": f"object {o}"} for o, e in m["objects"].items()}}
            for v, m in meta.items()
        }
        (sdir / f"{folder}_expression_meta.json").write_text(json.dumps({"videos": captions}))
    else:
        attrs = {
            video_name(i): {**meta[video_name(i)], "attributes": ATTRIBUTES[i % len(SCRIPTS)]}
            for i in range(num_videos)
        }
        (sdir / f"{folder}_meta_attribute.json").write_text(
            json.dumps({"sets": [folder], "attributes": ["LRA", "OCC", "CTC"], "videos": attrs})
        )
    return truth
