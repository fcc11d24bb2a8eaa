"""YouTube-VOS 2018 / 2019 reader.

Layout (the official archives unpacked side by side)::

    <root>/<split>/JPEGImages/<vid>/00000.jpg, 00005.jpg, ...   split: train, valid, test
    <root>/<split>/Annotations/<vid>/00000.png, ...             8-bit palette PNGs
    <root>/<split>/meta.json     {"videos": {vid: {"objects": {"<id>": {"category": str,
                                                                        "frames": [stem, ...]}}}}}
    <root>/<split>_all_frames/JPEGImages/<vid>/00000.jpg, 00001.jpg, ...   optional

File stems are 30 fps frame numbers; the split folders hold every 5th frame, and a video
need not start at 00000. `<split>_all_frames` holds every frame (for dense inference).

Rules (`YouTubeVOSVideo` applies them):

- videos = every video of meta.json plus every folder under JPEGImages or Annotations,
  sorted; a video missing from meta.json, or listed there without both folders, raises
  `DataError` naming the folder (with an `errors` list it is recorded and skipped);
- record frames = the JPEGs of `<split>/JPEGImages/<vid>` with ``frame_step`` = the median
  spacing of their stems (5 in the official data; 5 when a video has a single frame), or
  with ``all_frames=True`` the JPEGs of `<split>_all_frames/JPEGImages/<vid>` with
  ``frame_step`` = 1, annotated frames mapped there by stem; ``frame_name(t)`` = the stem;
- objects = the ids of meta.json (need not be contiguous, e.g. (1, 3)); a PNG label
  that meta.json does not list is an error; a PNG without its JPEG is an error;
- dense splits (``train``; every split whose name does not start with ``valid``/``test``)
  need a PNG for every JPEG; an object may be absent (all-False mask) and come back;
  ``first_appearance()`` is the first PNG that labels it (one never labelled is an error);
- sparse splits (``valid*``, ``test*``): only the frame where objects first appear has a
  PNG, and it labels only those objects. An object's first appearance is the earliest of
  its meta.json ``frames``; that frame must have a PNG (checked when the split is read),
  the PNG must label the object (checked by ``first_appearance()``), and no PNG may label
  an object before it (checked by ``load_masks``). ``load_masks(t)`` returns every object,
  False where the PNG does not label it; a PNG where no object first appears is an error;
- ``submission_frames()`` = record frames of the union of the objects' meta.json
  ``frames`` (the frames a YouTube-VOS submission must contain);
- ``tags`` are empty (meta.json categories are per object, kept in ``categories``); there
  is no void label.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mosam_train.data.formats import DatasetFormat, SubmissionLayout
from mosam_train.data.formats.files import (
    FolderVideo,
    check_masks_have_frames,
    keep_subset,
    read_each,
    require_root,
)
from mosam_train.dataset_files import frame_sort_key, image_size, list_frames
from mosam_train.errors import DataError

YTVOS_URL = "https://youtube-vos.org/dataset/vos/"
# every 5th frame of the 30 fps videos is in the split folders (and annotated in train)
YTVOS_FRAME_STEP = 5
SPARSE_SPLITS = ("valid", "test")


def stem_step(stems: Iterable[str], default: int = YTVOS_FRAME_STEP) -> int:
    """Video frames between consecutive record frames, from the numeric file stems."""
    numbers = [int(s) for s in stems if s.isdigit()]
    gaps = np.diff(numbers)
    gaps = gaps[gaps > 0]
    return max(1, round(float(np.median(gaps)))) if len(gaps) else default


def _objects_of(entry: Any, name: str, meta_path: Path) -> dict[int, tuple[str | None, list]]:
    """{object id: (category or None, meta frames)} of one meta.json video entry."""

    def bad(problem: str) -> DataError:
        return DataError(
            f"{meta_path}: video '{name}': {problem}. Fix: use the meta.json that came with "
            f"this split ({YTVOS_URL}).",
            meta_path,
        )

    objects = entry.get("objects") if isinstance(entry, dict) else None
    if not isinstance(objects, dict):
        raise bad('no "objects" mapping')
    if not objects:
        raise bad("no object listed")
    out: dict[int, tuple[str | None, list]] = {}
    for key, obj in objects.items():
        if not str(key).isdigit() or not 1 <= int(key) <= 255:
            raise bad(f"object id {key!r} is not a palette index 1..255")
        frames = obj.get("frames") if isinstance(obj, dict) else None
        if (
            not isinstance(frames, list)
            or not frames
            or not all(isinstance(f, str) for f in frames)
        ):
            raise bad(f'object {key}: "frames" must be a non-empty list of frame names')
        category = obj.get("category")
        out[int(key)] = (None if category is None else str(category), frames)
    return out


class YouTubeVOSVideo(FolderVideo):
    """One YouTube-VOS video; frames and masks are read from disk on each call (no cache).

    Construction lists the folders and checks them against meta.json, so layout errors
    surface when the split is read; PNG contents are checked when they are loaded.
    """

    def __init__(
        self,
        name: str,
        image_dir: str | Path,
        mask_dir: str | Path,
        meta_entry: Mapping[str, Any] | None,
        meta_path: str | Path,
        dense: bool = True,
        all_frames_dir: str | Path | None = None,
    ) -> None:
        self.name = name
        self.tags = ()
        self.image_dir = Path(image_dir)
        self.mask_dir = Path(mask_dir)
        self.meta_path = Path(meta_path)
        self.dense = dense
        if meta_entry is None:
            folder = self.image_dir if self.image_dir.is_dir() else self.mask_dir
            raise DataError(
                f"{folder}: video '{name}' is not listed in {self.meta_path}. Fix: use the "
                f"meta.json that came with this split, or remove the folder.",
                folder,
            )
        for folder, what in ((self.image_dir, "frame"), (self.mask_dir, "annotation")):
            if not folder.is_dir():
                raise DataError(
                    f"{folder}: {what} folder of video '{name}' is missing, but "
                    f"{self.meta_path.name} lists the video. Fix: re-extract the split, or "
                    f"drop '{name}' (e.g. with a subset).",
                    folder,
                )
        objects = _objects_of(meta_entry, name, self.meta_path)
        images = list_frames(self.image_dir)
        if not images:
            raise DataError(
                f"{self.image_dir}: no .jpg frames. Fix: re-extract the video's frames.",
                self.image_dir,
            )
        pngs = list_frames(self.mask_dir, (".png",))
        check_masks_have_frames(pngs, images, self.image_dir)
        listed = {f for _, frames in objects.values() for f in frames}
        unknown = sorted(listed - set(images), key=frame_sort_key)
        if unknown:
            raise DataError(
                f"{self.meta_path}: video '{name}' lists frame(s) {unknown[:5]} that are not "
                f"in {self.image_dir}. Fix: re-extract the video or use its original "
                f"meta.json.",
                self.meta_path,
            )
        first_stem = {oid: min(frames, key=frame_sort_key) for oid, (_, frames) in objects.items()}
        if dense:
            missing = [s for s in images if s not in pngs]
            if missing:
                raise DataError(
                    f"{self.mask_dir / (missing[0] + '.png')}: missing; this split requires "
                    f"a PNG for every frame but {len(missing)} of {len(images)} frames have "
                    f"none. Fix: add them, or read the split with dense=False (valid/test "
                    f"style, first-appearance PNGs only).",
                    self.mask_dir / (missing[0] + ".png"),
                )
        else:
            for oid, stem in sorted(first_stem.items()):
                if stem not in pngs:
                    path = self.mask_dir / (stem + ".png")
                    raise DataError(
                        f"{path}: missing; {self.meta_path.name} says object {oid} of "
                        f"'{name}' first appears in frame {stem}, which needs its mask. Fix: "
                        f"add the PNG or correct meta.json.",
                        path,
                    )
            starts = set(first_stem.values())
            extra = [s for s in pngs if s not in starts]
            if extra:
                raise DataError(
                    f"{pngs[extra[0]]}: no object first appears in this frame according to "
                    f"{self.meta_path.name}, and in this split only first-appearance frames "
                    f"are annotated. Fix: remove the PNG, correct meta.json, or read the "
                    f"split with dense=True if every frame is annotated.",
                    pngs[extra[0]],
                )
        if all_frames_dir is None:
            frames = images
            self.frame_step = stem_step(images)
        else:
            frames = self._all_frames(Path(all_frames_dir), set(pngs) | listed)
            self.frame_step = 1
        self._index_files(frames, pngs)
        self.object_ids = tuple(sorted(objects))
        self.categories: dict[int, str | None] = {oid: objects[oid][0] for oid in self.object_ids}
        self._first = {oid: self._stem_to_index[first_stem[oid]] for oid in self.object_ids}
        self._submission = tuple(sorted(self._stem_to_index[s] for s in listed))
        self.height, self.width = image_size(self._image_paths[0])

    def _all_frames(self, folder: Path, needed: set[str]) -> dict[str, Path]:
        if not folder.is_dir():
            raise DataError(
                f"{folder}: all-frames folder of video '{self.name}' is missing. Fix: "
                f"re-extract the <split>_all_frames archive, or read without all_frames.",
                folder,
            )
        frames = list_frames(folder)
        missing = sorted(needed - set(frames), key=frame_sort_key)
        if missing:
            raise DataError(
                f"{folder}: frame(s) {missing[:5]} of the annotations / meta.json are not in "
                f"the all-frames folder. Fix: re-extract the <split>_all_frames archive.",
                folder,
            )
        return frames

    def __repr__(self) -> str:
        return (
            f"YouTubeVOSVideo({self.name!r}, frames={self.num_frames}, "
            f"step={self.frame_step}, annotated={len(self.annotated_frames)}, "
            f"objects={self.object_ids}, size={self.height}x{self.width}, dense={self.dense})"
        )

    def submission_frames(self) -> tuple[int, ...]:
        """Frames a submission must contain: the union of the objects' meta.json frames."""
        return self._submission

    def load_label(self, t: int) -> np.ndarray:
        """Raw label map of annotated frame `t` (uint8 [H, W]: 0 background, else ids)."""
        path = self.mask_path(t)
        label = self.checked_label(
            t,
            f"objects of '{self.name}' in {self.meta_path} (objects "
            f"{list(self.object_ids)}). Fix: relabel the PNG or use the original meta.json.",
            void=False,
        )
        labels = set(np.unique(label).tolist()) - {0}
        early = sorted(oid for oid in labels if self._first[oid] > t)
        if early and not self.dense:
            firsts = [self.frame_stems[self._first[oid]] for oid in early]
            raise DataError(
                f"{path}: labels object(s) {early} before their first frame(s) {firsts} in "
                f"{self.meta_path.name}. Fix: correct meta.json or the PNG.",
                path,
            )
        return label

    def load_void(self, t: int) -> None:
        return None  # YouTube-VOS has no void label (255 is an unknown object there)

    def first_appearance(self) -> dict[int, int]:
        if self.dense:
            first = super().first_appearance()
            never = [oid for oid in self.object_ids if oid not in first]
            if never:
                raise DataError(
                    f"{self.meta_path}: object(s) {never} of '{self.name}' are never labelled "
                    f"in {self.mask_dir}. Fix: remove them from meta.json or add their masks.",
                    self.meta_path,
                )
            return first
        for t in sorted(set(self._first.values())):
            present = self.load_masks(t).reshape(len(self.object_ids), -1).any(axis=1)
            for oid, p in zip(self.object_ids, present, strict=True):
                if self._first[oid] == t and not p:
                    raise DataError(
                        f"{self.mask_path(t)}: object {oid} first appears in this frame "
                        f"according to {self.meta_path.name}, but the PNG does not label it. "
                        f"Fix: correct meta.json or the PNG.",
                        self.mask_path(t),
                    )
        return dict(self._first)


def read_meta(path: Path) -> dict[str, Any]:
    """The ``videos`` mapping of a YouTube-VOS meta.json (entries checked per video)."""
    if not path.is_file():
        raise DataError(
            f"{path}: meta.json not found; it lists each video's objects and is part of the "
            f"split's archive. Fix: re-extract the split from {YTVOS_URL}.",
            path,
        )
    try:
        videos = json.loads(path.read_text()).get("videos")
        if not isinstance(videos, dict):
            raise ValueError('no "videos" mapping at the top level')
    except (OSError, ValueError, AttributeError) as e:
        raise DataError(
            f"{path}: cannot parse meta.json ({e}). Fix: restore the file from the split's "
            f"archive ({YTVOS_URL}).",
            path,
        ) from e
    return videos


def _subfolders(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()


def read_ytvos(
    root: str | Path,
    split: str,
    *,
    all_frames: bool = False,
    dense: bool | None = None,
    subset: Iterable[str] | str | Path | None = None,
    errors: list[DataError] | None = None,
) -> list[YouTubeVOSVideo]:
    """Read every video of `<root>/<split>` (see the module docstring for the rules).

    `all_frames`: frames from `<root>/<split>_all_frames/JPEGImages` (every 30 fps frame).
    `dense=None` means every frame annotated unless the split name starts with ``valid`` or
    ``test`` (first-appearance PNGs only). `subset` keeps only those names (a list or a
    file); `errors`: see `read_each`.
    """
    root = Path(root)
    require_root(
        root,
        f"download YouTube-VOS 2019 (or 2018) from {YTVOS_URL} and unpack train.zip / "
        f"valid.zip there so that {root / 'train' / 'JPEGImages'} and "
        f"{root / 'train' / 'meta.json'} exist",
    )
    split_dir = root / split
    image_root, mask_root = split_dir / "JPEGImages", split_dir / "Annotations"
    for folder in (image_root, mask_root):
        if not folder.is_dir():
            have = sorted(p.name for p in root.iterdir() if (p / "JPEGImages").is_dir())
            raise DataError(
                f"{folder}: not found (splits here: {have or 'none'}). Fix: use one of those "
                f"splits or unpack the {split} archive from {YTVOS_URL} into {root}.",
                folder,
            )
    meta_path = split_dir / "meta.json"
    meta = read_meta(meta_path)
    frames_root = None
    if all_frames:
        frames_root = root / f"{split}_all_frames" / "JPEGImages"
        if not frames_root.is_dir():
            raise DataError(
                f"{frames_root}: not found. Fix: unpack {split}_all_frames.zip ({YTVOS_URL}) "
                f"into {root} so that this folder exists, or read with all_frames=False.",
                frames_root,
            )
    if dense is None:
        dense = not split.startswith(SPARSE_SPLITS)
    names = sorted(set(meta) | _subfolders(image_root) | _subfolders(mask_root))
    names = keep_subset(names, subset)
    if not names:
        raise DataError(f"{split_dir}: the split has no video. Fix: re-extract it.", split_dir)

    def make(name: str) -> YouTubeVOSVideo:
        return YouTubeVOSVideo(
            name,
            image_root / name,
            mask_root / name,
            meta.get(name),
            meta_path,
            dense=dense,
            all_frames_dir=None if frames_root is None else frames_root / name,
        )

    return read_each(names, make, errors)


FORMAT = DatasetFormat(
    name="ytvos",
    reader=read_ytvos,
    # <root>/Annotations/<video>/<frame>.png for exactly the frames of the video's meta.json
    # (`YouTubeVOSVideo.submission_frames()`; objects not there yet are background), and
    # the zip the server takes, whose top folder is Annotations/.
    submission=SubmissionLayout(
        frames="submission", masks="palette", subdir="Annotations", zip="always"
    ),
    protocol="appearance",  # objects appear mid-video: scored after their first appearance
)
