"""DAVIS 2017 layout writer: JPEG frames + palette PNGs + ImageSets split lists."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from layouts import Truth, VideoTruth
from mosam_train.palette import voc_palette


def write_sequence(
    root: Path,
    name: str,
    labels: Sequence[np.ndarray | None],
    stems: Sequence[str] | None = None,
    resolution: str = "480p",
) -> None:
    """JPEG frames (random colours) + palette PNGs; a None label writes no PNG."""
    stems = stems or [f"{t:05d}" for t in range(len(labels))]
    img_dir = root / "JPEGImages" / resolution / name
    ann_dir = root / "Annotations" / resolution / name
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shape = next(lbl.shape for lbl in labels if lbl is not None)
    for stem, lbl in zip(stems, labels, strict=True):
        rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(img_dir / f"{stem}.jpg", quality=95)
        if lbl is not None:
            png = Image.fromarray(lbl.astype(np.uint8))
            png.putpalette(list(voc_palette()))
            png.save(ann_dir / f"{stem}.png")


def write_split(root: Path, split: str, names: Sequence[str]) -> None:
    sets = root / "ImageSets" / "2017"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / f"{split}.txt").write_text("".join(n + "\n" for n in names))


def write_davis(root: Path, split: str = "val", num_videos: int = 3, num_frames: int = 5) -> Truth:
    """Moving squares with ids {1, 2} (video 0), {3} and void 255 borders (video 1), an
    object leaving and coming back (video 2, ids {1, 4})."""
    truth: Truth = {}
    h, w = 24, 32
    names = []
    for v in range(num_videos):
        name = f"seq{v}"
        ids = [[1, 2], [3], [1, 4]][v % 3]
        labels = []
        counts: dict[int, dict[int, int]] = {i: {} for i in ids}
        for t in range(num_frames):
            lbl = np.zeros((h, w), np.uint8)
            for k, oid in enumerate(ids):
                if v % 3 == 2 and oid == 4 and t in (1, 2):
                    continue  # left the frame
                y, x = 2 + 10 * k, 2 + 3 * t
                lbl[y : y + 6, x : x + 5 + k] = oid
            if v % 3 == 1:
                lbl[0, :] = 255
            for oid in ids:
                counts[oid][t] = int((lbl == oid).sum())
            labels.append(lbl)
        write_sequence(root, name, labels)
        names.append(name)
        truth[name] = VideoTruth(
            num_frames=num_frames,
            annotated_frames=list(range(num_frames)),
            object_ids=ids,
            first_appearance=dict.fromkeys(ids, 0),
            pixel_counts=counts,
            height=h,
            width=w,
        )
    write_split(root, split, names)
    return truth
