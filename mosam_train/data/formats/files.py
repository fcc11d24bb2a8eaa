"""What the frame-folder readers share: split subsets, per-video error collection, the
missing-root and orphan-PNG checks, and `FolderVideo` (one JPEG per frame plus indexed PNGs). The file reading itself is
`mosam_train.dataset_files`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

import numpy as np

from mosam_train.data.video import VideoRecord
from mosam_train.dataset_files import VOID_LABEL, frame_sort_key, read_label, read_list, read_rgb
from mosam_train.errors import DataError

T = TypeVar("T")


def require_root(root: Path, fix: str) -> None:
    """The `DataError` every reader gives for a missing dataset root: the path, then `fix`
    (where to get the dataset and how to unpack it there)."""
    if not root.is_dir():
        raise DataError(f"Dataset root not found: {root}. Fix: {fix} (see data/README.md).", root)


def check_masks_have_frames(
    masks: Mapping[str, Path], frames: Mapping[str, Path], image_dir: Path
) -> None:
    """Refuse annotation files (`{stem: path}`) whose stem has no frame in `frames`: a
    stray or misnamed PNG would otherwise be silently ignored."""
    orphans = sorted(set(masks) - set(frames), key=frame_sort_key)
    if orphans:
        first = masks[orphans[0]]
        raise DataError(
            f"{first}: annotation has no matching frame {image_dir / (orphans[0] + '.jpg')} "
            f"({len(orphans)} such PNG(s), {len(masks)} PNGs vs {len(frames)} JPEGs). Fix: "
            f"add the frames or remove the stray PNGs.",
            first,
        )


def keep_subset(names: Iterable[str], subset: Iterable[str] | str | Path | None) -> list[str]:
    """`names` restricted to `subset` (names, or a file with one per line), in `names` order.

    A subset name that is not in the split is an error: a typo would silently shrink the set.
    """
    names = list(names)
    if subset is None:
        return names
    if isinstance(subset, str | Path):
        subset = read_list(Path(subset))
    wanted = list(dict.fromkeys(subset))
    unknown = [n for n in wanted if n not in set(names)]
    if unknown:
        raise DataError(
            f"subset names {unknown[:5]}{' ...' if len(unknown) > 5 else ''} are not in the "
            f"split ({len(unknown)} of {len(wanted)}). Fix: correct the subset list."
        )
    keep = set(wanted)
    return [n for n in names if n in keep]


def read_each(
    names: Iterable[str],
    make: Callable[[str], T],
    errors: list[DataError] | None = None,
) -> list[T]:
    """`make(name)` for every name. With an `errors` list, a video that raises `DataError`
    is recorded there and left out (the check CLI lists them all); without one the first
    error propagates (training and evaluation refuse a broken split up front)."""
    out = []
    for name in names:
        try:
            out.append(make(name))
        except DataError as e:
            if errors is None:
                raise
            e.video = name
            errors.append(e)
    return out


class FolderVideo(VideoRecord):
    """A video stored as one JPEG per frame plus one indexed PNG per annotated frame
    (DAVIS, MOSE, YouTube-VOS, LVOS): the bookkeeping those readers share. A reader
    validates its folders, calls `_index_files`, and defines `load_label` (its own label
    checks); masks and void follow from the label map."""

    image_dir: Path
    frame_stems: tuple[str, ...]

    def _index_files(self, frames: dict[str, Path], masks: dict[str, Path]) -> None:
        """Record frames = `frames` in their order; annotated = those with a mask (a mask
        whose stem is not a frame is left out: readers refuse such orphans first, with
        `check_masks_have_frames`)."""
        self.frame_stems = tuple(frames)
        self._image_paths = tuple(frames.values())
        self._stem_to_index = {s: i for i, s in enumerate(self.frame_stems)}
        self._mask_paths = {self._stem_to_index[s]: p for s, p in masks.items() if s in frames}
        self.annotated_frames = tuple(sorted(self._mask_paths))
        self.num_frames = len(self.frame_stems)

    @property
    def source(self) -> str:
        return str(self.image_dir)

    def frame_index(self, stem: str) -> int:
        """Frame index of a file stem (e.g. '00045')."""
        return self._stem_to_index[stem]

    def frame_name(self, t: int) -> str:
        return self.frame_stems[t]

    def frame_path(self, t: int) -> Path:
        return self._image_paths[t]

    def mask_path(self, t: int) -> Path:
        if t not in self._mask_paths:
            raise KeyError(f"{self.name}: frame {t} is not annotated")
        return self._mask_paths[t]

    def load_frame(self, t: int) -> np.ndarray:
        return read_rgb(self._image_paths[t], (self.height, self.width))

    def load_label(self, t: int) -> np.ndarray:
        """Raw label map of annotated frame `t` (uint8 [H, W]: 0 bg, ids, 255 void)."""
        raise NotImplementedError

    def checked_label(self, t: int, unknown: str, void: bool = True) -> np.ndarray:
        """Label map of annotated frame `t`, refusing a value that is neither background,
        void (where the layout has one) nor one of `object_ids`. `unknown` completes the
        error: where the object ids come from, and the fix."""
        path = self.mask_path(t)
        label = read_label(path, (self.height, self.width))
        allowed = {0, *self.object_ids, *((VOID_LABEL,) if void else ())}
        extra = set(np.unique(label).tolist()) - allowed
        if extra:
            raise DataError(
                f"{path}: label(s) {sorted(extra)} are not {unknown}",
                path,
            )
        return label

    def load_masks(self, t: int) -> np.ndarray:
        label = self.load_label(t)
        ids = np.asarray(self.object_ids, dtype=np.uint8)
        return label[None] == ids[:, None, None]

    def load_void(self, t: int) -> np.ndarray | None:
        if t not in self._mask_paths:
            return None
        return self.load_label(t) == VOID_LABEL
