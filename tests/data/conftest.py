"""Fixtures for the data tests: a hand-made DAVIS writer (the synthetic set is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mosam_train.data.formats.davis import voc_palette


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
    for stem, lbl in zip(stems, labels, strict=True):
        shape = (8, 10) if lbl is None else lbl.shape
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


class DavisWriter:
    """Writes hand-made DAVIS-layout sequences (fixture `davis_writer`)."""

    sequence = staticmethod(write_sequence)
    split = staticmethod(write_split)


@pytest.fixture
def davis_writer() -> type[DavisWriter]:
    return DavisWriter
