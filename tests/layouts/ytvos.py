"""A tiny YouTube-VOS dataset (`<root>/<split>/{JPEGImages,Annotations,meta.json}` and
optionally `<root>/<split>_all_frames/JPEGImages`), written by code.

`ytvos_plan` describes the videos (stems, PNG contents, meta.json objects); `write_ytvos`
writes them and returns the `Truth` a reader must report. Train videos (a PNG for every
JPEG):

- video 0: stems 00010, 00015, ... (spaced by 5, not starting at 00000), objects {1, 3};
  object 3 leaves in frames 2-3 and comes back in frame 4;
- video 1: objects {2, 5}; object 5 enters in frame 1;
- further videos: objects {1, 2} in every frame.

Valid / test videos (a PNG only where objects first appear, labelling only them):

- video 0: objects {1, 2}; object 2 enters in frame 3, whose PNG labels only object 2
  although object 1 is still visible; meta.json has no categories (2019 style);
- video 1: stems from 00005, objects {2, 5} both in frame 0 (one PNG), with categories;
- further videos: object 1 from frame 0.

The all-frames folder holds every 30 fps stem from the first sparse stem to 2 past the
last. Everything is deterministic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from layouts import Truth, VideoTruth
from mosam_train.palette import voc_palette

STEP = 5
CATEGORIES = {1: "person", 2: "dog", 3: "skateboard", 5: "frisbee"}


@dataclass
class YtvosVideoPlan:
    """One video: sparse stems, what each PNG holds (None: no PNG), meta.json objects."""

    name: str
    height: int
    width: int
    stems: list[str]
    # per stem: {object id: box (y0, x0, h, w)} of every object visible in the frame
    visible: list[dict[int, tuple[int, int, int, int]]]
    # per stem: the object ids the PNG labels, or None when the frame has no PNG
    labelled: list[list[int] | None]
    meta: dict[int, dict] = field(default_factory=dict)  # id -> {"category"?, "frames"}

    @property
    def all_stems(self) -> list[str]:
        first, last = int(self.stems[0]), int(self.stems[-1])
        return [f"{s:05d}" for s in range(first, last + 3)]

    def label(self, k: int) -> np.ndarray | None:
        """PNG content of sparse frame k (objects painted in id order, later on top)."""
        if self.labelled[k] is None:
            return None
        h, w = self.height, self.width
        lbl = np.zeros((h, w), np.uint8)
        for oid in sorted(self.labelled[k]):
            y, x, bh, bw = self.visible[k][oid]
            lbl[max(0, y) : max(0, y + bh), max(0, x) : max(0, x + bw)] = oid
        return lbl

    def image(self, k: float) -> np.ndarray:
        """RGB of sparse frame position k (fractional for all-frames stems)."""
        h, w = self.height, self.width
        yy, xx = np.mgrid[0:h, 0:w]
        rgb = np.stack([yy * 4 % 256, xx * 3 % 256, np.full_like(yy, 60)], -1).astype(np.uint8)
        for oid, (y, x, bh, bw) in sorted(self.visible[min(int(k), len(self.stems) - 1)].items()):
            colour = np.array([(oid * 70) % 256, 200, (oid * 40 + 90) % 256], np.uint8)
            rgb[max(0, y) : max(0, y + bh), max(0, x) : max(0, x + bw)] = colour
        return rgb


def _name(i: int) -> str:
    return f"{(0x3F2A1C0B5E + 0x9E3779B1 * i) % 16**10:010x}"


def _box(oid: int, k: int, h: int, w: int) -> tuple[int, int, int, int]:
    """Object `oid`'s box in frame k: moves right by 2 px a frame, its own row."""
    bh, bw = max(3, h // 4), max(4, w // 5)
    y = (oid * 7) % max(1, h - bh)
    x = (oid * 5 + 2 * k) % max(1, w - bw)
    return y, x, bh, bw


def ytvos_plan(
    split: str = "train", num_videos: int = 3, height: int = 32, width: int = 48
) -> list[YtvosVideoPlan]:
    """The videos `write_ytvos` writes for `split` (``valid``/``test*`` are sparse)."""
    sparse = split.startswith(("valid", "test"))
    plans = []
    for i in range(num_videos):
        if i == 0:
            start, n = (10, 6) if not sparse else (0, 6)
            ids = (1, 3) if not sparse else (1, 2)
            present = {
                ids[0]: range(n),
                ids[1]: [0, 1, 4, 5] if not sparse else range(3, n),
            }
        elif i == 1:
            start, n, ids = (0, 5, (2, 5)) if not sparse else (5, 5, (2, 5))
            present = {2: range(n), 5: range(1, n) if not sparse else range(n)}
        else:
            start, n, ids = 5 * (i % 3), 4, ((1, 2) if not sparse else (1,))
            present = {oid: range(n) for oid in ids}
        stems = [f"{start + STEP * k:05d}" for k in range(n)]
        visible = [
            {oid: _box(oid, k, height, width) for oid in ids if k in present[oid]} for k in range(n)
        ]
        first = {oid: min(present[oid]) for oid in ids}
        if sparse:
            labelled = [[oid for oid in ids if first[oid] == k] or None for k in range(n)]
            frames = {oid: stems[first[oid] :] for oid in ids}
        else:
            labelled = [[oid for oid in ids if k in present[oid]] for k in range(n)]
            frames = {oid: [stems[k] for k in present[oid]] for oid in ids}
        with_category = not sparse or i == 1
        meta = {
            oid: ({"category": CATEGORIES[oid]} if with_category else {}) | {"frames": frames[oid]}
            for oid in ids
        }
        plans.append(YtvosVideoPlan(_name(i), height, width, stems, visible, labelled, meta))
    return plans


def ytvos_truth(plans: list[YtvosVideoPlan], all_frames: bool = False) -> Truth:
    """What a reader must report for `plans`, read with or without `all_frames`."""
    truth: Truth = {}
    for p in plans:
        record_stems = p.all_stems if all_frames else p.stems
        index = {s: i for i, s in enumerate(record_stems)}
        ids = sorted(p.meta)
        annotated = [k for k in range(len(p.stems)) if p.labelled[k] is not None]
        counts: dict[int, dict[int, int]] = {oid: {} for oid in ids}
        first: dict[int, int] = {}
        for k in annotated:
            lbl = p.label(k)
            for oid in ids:
                c = int((lbl == oid).sum())
                counts[oid][index[p.stems[k]]] = c
                if c and oid not in first:
                    first[oid] = index[p.stems[k]]
        h, w = p.height, p.width
        truth[p.name] = VideoTruth(
            num_frames=len(record_stems),
            annotated_frames=[index[p.stems[k]] for k in annotated],
            object_ids=ids,
            first_appearance=first,
            pixel_counts=counts,
            height=h,
            width=w,
        )
    return truth


def write_ytvos(
    root: str | Path,
    split: str = "train",
    num_videos: int = 3,
    *,
    all_frames: bool = False,
    height: int = 32,
    width: int = 48,
) -> Truth:
    """Write `split` under `root`; the Truth is for reading with the same `all_frames`."""
    root = Path(root)
    plans = ytvos_plan(split, num_videos, height, width)
    meta: dict = {"videos": {}}
    for p in plans:
        img_dir = root / split / "JPEGImages" / p.name
        ann_dir = root / split / "Annotations" / p.name
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        for k, stem in enumerate(p.stems):
            Image.fromarray(p.image(k)).save(img_dir / f"{stem}.jpg", quality=95)
            lbl = p.label(k)
            if lbl is not None:
                png = Image.fromarray(lbl)
                png.putpalette(list(voc_palette()))
                png.save(ann_dir / f"{stem}.png")
        if all_frames:
            dense_dir = root / f"{split}_all_frames" / "JPEGImages" / p.name
            dense_dir.mkdir(parents=True, exist_ok=True)
            first = int(p.stems[0])
            for stem in p.all_stems:
                rgb = p.image((int(stem) - first) / STEP)
                Image.fromarray(rgb).save(dense_dir / f"{stem}.jpg", quality=95)
        meta["videos"][p.name] = {"objects": {str(k): v for k, v in p.meta.items()}}
    (root / split / "meta.json").write_text(json.dumps(meta, indent=1))
    return ytvos_truth(plans, all_frames)
