"""LVOS v1 and v2 reader (long-term VOS: videos of 1-2 minutes at 6 fps, objects that appear
late and vanish for long stretches).

Layout (``root`` = ``data/LVOS``; each version in its own folder, or ``root`` pointing at
one version folder directly)::

    <root>/<v1|v2>/<split>/JPEGImages/<video>/00000001.jpg, 00000006.jpg, ...
    <root>/<v1|v2>/<split>/Annotations/<video>/00000001.png, ...   8-bit palette PNGs
    <root>/<v1|v2>/<split>/<split>_meta.json
    <root>/<v1|v2>/<split>/<split>_meta_attribute.json             optional (v2), tags

    <split>: train, valid or val (v1 ships ``valid``, v2 documents ``val``; either name is
    accepted for either version), test.
    <split>_meta.json: {"videos": {<video>: {"objects": {"<id>": {"frame_range":
        {"start": <frame number>, "end": <frame number>, "frame_nums": <count>}}}}}}

Rules:

- The videos are the meta file's entries; a frame folder without an entry, or an entry
  without its folders, is an error naming the meta file or the folder.
- The objects are the meta file's object ids (the PNG pixel values; need not be
  contiguous); a PNG with any other label (0 = background, 255 = void aside) is an error
  naming that PNG.
- Frame numbers are the integers of the file stems (8 digits, from 00000001). The record
  starts at the first frame that has a PNG: JPEGs before it, which no object can be
  tracked in, are left out (as LVOS's own AOT loader does). ``frame_name(t)`` is the stem.
- Annotated frames = the record frames that have a PNG (train and valid: every frame from
  the first PNG on; test: first-appearance PNGs only). An object absent from a PNG gets an
  all-False mask. A PNG without its JPEG is an error.
- ``first_appearance()`` is the meta ``start`` frame of each object, checked against that
  frame's PNG when called (the object must be in it); ``trust_meta=False`` scans the PNGs
  instead. ``end`` and ``frame_nums`` are not used.
- ``frame_step`` (video frames between record frames) is the most common gap between
  consecutive frame numbers: LVOS names its 6 fps frames by their 30 fps index, so
  00000001, 00000006, ... gives 5; a copy renumbered 1, 2, 3, ... gives 1. Pass
  ``frame_step=`` to override.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np

from mosam_train.data.formats import DatasetFormat, SubmissionLayout
from mosam_train.data.formats.files import (
    FolderVideo,
    check_masks_have_frames,
    keep_subset,
    read_each,
    require_root,
)
from mosam_train.dataset_files import VOID_LABEL, frame_sort_key, image_size, list_frames
from mosam_train.errors import DataError

LVOS_URL = "https://github.com/LingyiHongfd/LVOS"
VERSIONS = ("v1", "v2")
# Folder names tried for each split name, in order.
SPLIT_FOLDERS = {
    "train": ("train",),
    "val": ("val", "valid"),
    "valid": ("valid", "val"),
    "test": ("test",),
}


def _number(stem: str) -> int | None:
    return int(stem) if stem.isdigit() else None


def _int(value: object) -> int:
    """A meta frame number or object id: int, or a string of digits ("00000046")."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected an integer, got {value!r}")
    return int(value)


class LvosVideo(FolderVideo):
    """One LVOS video; frames and masks are read from disk on each call (no cache).

    Construction lists the two folders and checks them against the meta entry, so layout
    errors surface when the split is read; a corrupt file surfaces when it is loaded.
    """

    def __init__(
        self,
        split_dir: Path,
        name: str,
        starts: dict[int, int],
        meta_path: Path,
        tags: Sequence[str] = (),
        frame_step: int | None = None,
        trust_meta: bool = True,
    ) -> None:
        self.name = name
        self.tags = tuple(tags)
        self.meta_path = Path(meta_path)
        self.trust_meta = trust_meta
        self.image_dir = Path(split_dir) / "JPEGImages" / name
        self.mask_dir = Path(split_dir) / "Annotations" / name
        for folder, what in ((self.image_dir, "JPEG frames"), (self.mask_dir, "palette PNGs")):
            if not folder.is_dir():
                raise DataError(
                    f"{folder}: folder of video '{name}' is missing, but {self.meta_path.name} "
                    f"lists the video. Fix: add its {what} (re-extract the LVOS archive) or "
                    f"remove '{name}' from {self.meta_path}.",
                    folder,
                )
        images = list_frames(self.image_dir)
        if not images:
            raise DataError(
                f"{self.image_dir}: no .jpg frames. Fix: re-extract the LVOS archive.",
                self.image_dir,
            )
        pngs = list_frames(self.mask_dir, (".png",))
        check_masks_have_frames(pngs, images, self.image_dir)
        if not pngs:
            raise DataError(
                f"{self.mask_dir}: no .png annotation. Fix: re-extract the LVOS annotations "
                f"(at least each object's first-appearance PNG).",
                self.mask_dir,
            )
        all_stems = list(images)
        first = min(pngs, key=frame_sort_key)
        stems = all_stems[all_stems.index(first) :]
        self._index_files({s: images[s] for s in stems}, pngs)
        self.height, self.width = image_size(self._image_paths[0])
        self.frame_step = frame_step if frame_step is not None else self._step(all_stems)
        if not starts:
            raise DataError(
                f"{self.meta_path}: video '{name}' lists no object. Fix: use the official "
                f"meta file, or drop the video from the split.",
                self.meta_path,
            )
        bad = [oid for oid in starts if not 0 < oid < VOID_LABEL]
        if bad:
            raise DataError(
                f"{self.meta_path}: video '{name}' has object id(s) {bad}; PNG object ids are "
                f"1..{VOID_LABEL - 1}. Fix: use the official LVOS meta file.",
                self.meta_path,
            )
        self.object_ids = tuple(sorted(starts))
        by_number = {_number(s): i for i, s in enumerate(stems) if s.isdigit()}
        self._starts: dict[int, int] = {}
        for oid in self.object_ids:
            t = by_number.get(starts[oid])
            if t is None or t not in self._mask_paths:
                where = "no frame" if t is None else "no PNG"
                raise DataError(
                    f"{self.meta_path}: object {oid} of video '{name}' starts at frame "
                    f"{starts[oid]}, but {self.mask_dir} has {where} there (annotated frames "
                    f"{self.frame_stems[self.annotated_frames[0]]} .. "
                    f"{self.frame_stems[self.annotated_frames[-1]]}). Fix: the meta file does "
                    f"not belong to these folders; use the one of the same LVOS version and "
                    f"split.",
                    self.meta_path,
                )
            self._starts[oid] = t

    @staticmethod
    def _step(stems: list[str]) -> int:
        """Most common gap between consecutive frame numbers (1 when names are not numbers)."""
        numbers = [_number(s) for s in stems]
        if len(numbers) < 2 or None in numbers:
            return 1
        gaps = Counter(b - a for a, b in pairwise(numbers))
        return max(1, gaps.most_common(1)[0][0])

    def __repr__(self) -> str:
        return (
            f"LvosVideo({self.name!r}, frames={self.num_frames}, "
            f"annotated={len(self.annotated_frames)}, objects={self.object_ids}, "
            f"size={self.height}x{self.width}, frame_step={self.frame_step})"
        )

    def load_label(self, t: int) -> np.ndarray:
        """Raw label map of annotated frame `t` (uint8 [H, W]: 0 bg, ids, 255 void)."""
        return self.checked_label(
            t,
            f"objects of video '{self.name}' in {self.meta_path} (objects "
            f"{list(self.object_ids)}). Fix: use the meta file of the same LVOS version and "
            f"split, or relabel the PNG.",
        )

    def first_appearance(self) -> dict[int, int]:
        """Meta `start` of each object, checked on that frame's PNG (one read per frame)."""
        if not self.trust_meta:
            return super().first_appearance()
        for t in sorted(set(self._starts.values())):
            present = self.load_masks(t).reshape(len(self.object_ids), -1).any(axis=1)
            for oid, p in zip(self.object_ids, present, strict=True):
                if self._starts[oid] == t and not p:
                    raise DataError(
                        f"{self.mask_path(t)}: object {oid} is absent, but {self.meta_path} "
                        f"says it first appears in this frame. Fix: correct the meta entry, "
                        f"or read with trust_meta=False to take first appearances from the "
                        f"PNGs.",
                        self.mask_path(t),
                    )
        return dict(self._starts)


def normalize_version(version: str | int) -> str:
    v = str(version).lower()
    v = v if v.startswith("v") else f"v{v}"
    if v not in VERSIONS:
        raise ValueError(f"unknown LVOS version {version!r}; known: {list(VERSIONS)}")
    return v


def version_root(root: Path, version: str) -> Path:
    """`root/<version>` if present, else `root` itself when it holds split folders."""
    require_root(
        root,
        f"download LVOS {version} (train / eval archives and the meta jsons) from "
        f"{LVOS_URL} and unpack it as {root}/{version}/{{train,valid|val}}/"
        f"{{JPEGImages,Annotations}}/<video>/ with <split>_meta.json in each split folder",
    )
    if (root / version).is_dir():
        return root / version
    known = {f for folders in SPLIT_FOLDERS.values() for f in folders}
    if any((root / f).is_dir() for f in known):
        return root
    have = sorted(p.name for p in root.iterdir() if p.is_dir())
    raise DataError(
        f"{root / version}: LVOS {version} folder not found (folders here: {have or 'none'}). "
        f"Fix: unpack LVOS {version} into {root / version} (download: {LVOS_URL}).",
        root / version,
    )


def split_dir(vroot: Path, split: str) -> Path:
    folders = SPLIT_FOLDERS.get(split, (split,))
    for folder in folders:
        if (vroot / folder / "JPEGImages").is_dir():
            return vroot / folder
    have = sorted(p.name for p in vroot.iterdir() if (p / "JPEGImages").is_dir())
    raise DataError(
        f"{vroot / folders[0] / 'JPEGImages'}: split '{split}' not found (tried "
        f"{', '.join(folders)}; splits here: {have or 'none'}). Fix: unpack the LVOS archive "
        f"of that split there, or use one of the available splits.",
        vroot / folders[0],
    )


def find_meta(sdir: Path, vroot: Path, split: str) -> Path:
    """`<folder>_meta.json` in the split folder (or next to it); other split names accepted."""
    names = dict.fromkeys([sdir.name, *SPLIT_FOLDERS.get(split, (split,))])
    candidates = [d / f"{n}_meta.json" for d in (sdir, vroot) for n in names]
    for path in candidates:
        if path.is_file():
            return path
    raise DataError(
        f"{candidates[0]}: meta file not found (also tried "
        f"{', '.join(p.name for p in candidates[1 : len(names)])} and the same names in "
        f'{vroot}). Fix: the meta jsons are a separate download on {LVOS_URL} ("meta '
        f'jsons"); put {candidates[0].name} into {sdir}.',
        candidates[0],
    )


def read_meta(path: Path) -> dict[str, dict[int, int]]:
    """{video: {object id: start frame number}} from an LVOS `*_meta.json`."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(
            f"{path}: cannot read the meta file ({e}). Fix: download it again.", path
        ) from e
    videos = raw.get("videos") if isinstance(raw, dict) else None
    if not isinstance(videos, dict):
        raise DataError(
            f'{path}: expected {{"videos": {{<video>: {{"objects": ...}}}}}}. Fix: use the '
            f"official LVOS meta file.",
            path,
        )
    out: dict[str, dict[int, int]] = {}
    for video, entry in videos.items():
        try:
            objects = entry["objects"]
            if not isinstance(objects, dict):
                raise ValueError("'objects' is not a mapping")
            out[str(video)] = {
                _int(oid): _int(obj["frame_range"]["start"]) for oid, obj in objects.items()
            }
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(
                f"{path}: video '{video}' has no readable objects/<id>/frame_range/start "
                f"({type(e).__name__}: {e}). Fix: use the official LVOS meta file.",
                path,
            ) from e
    return out


def read_attributes(sdir: Path) -> dict[str, tuple[str, ...]]:
    """Video attributes from the optional `<folder>_meta_attribute.json` (v2); {} if absent."""
    path = sdir / f"{sdir.name}_meta_attribute.json"
    if not path.is_file():
        return {}
    try:
        videos = json.loads(path.read_text())["videos"]
        return {str(v): tuple(str(a) for a in e.get("attributes", ())) for v, e in videos.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataError(
            f"{path}: cannot read video attributes ({type(e).__name__}: {e}). Fix: download "
            f"it again or delete it (it only provides tags).",
            path,
        ) from e


def read_lvos(
    root: str | Path,
    split: str,
    *,
    version: str | int = "v2",
    subset: Iterable[str] | str | Path | None = None,
    errors: list[DataError] | None = None,
    frame_step: int | None = None,
    trust_meta: bool = True,
) -> list[LvosVideo]:
    """Read the videos of LVOS `version` (v1 or v2) split `split` (train, val/valid, test).

    `subset` keeps only those names (a list or a file); `errors`: see `read_each`;
    `frame_step` overrides the step measured from the file names; `trust_meta=False` takes
    first appearances from the PNGs instead of the meta file.
    """
    version = normalize_version(version)
    vroot = version_root(Path(root), version)
    sdir = split_dir(vroot, split)
    meta_path = find_meta(sdir, vroot, split)
    meta = read_meta(meta_path)
    tags = read_attributes(sdir)
    folders = [p.name for p in (sdir / "JPEGImages").iterdir() if p.is_dir()]
    names = sorted(set(meta) | set(folders))
    if not names:
        raise DataError(
            f"{meta_path}: no video in the meta file nor in {sdir / 'JPEGImages'}. Fix: "
            f"unpack the LVOS archive of this split there.",
            meta_path,
        )
    names = keep_subset(names, subset)

    def make(name: str) -> LvosVideo:
        if name not in meta:
            raise DataError(
                f"{meta_path}: no entry for video '{name}', whose frames are in "
                f"{sdir / 'JPEGImages' / name}. Fix: use the meta file of the same LVOS "
                f"version and split, or remove the folder.",
                meta_path,
            )
        return LvosVideo(
            sdir, name, meta[name], meta_path, tags.get(name, ()), frame_step, trust_meta
        )

    return read_each(names, make, errors)


FORMAT = DatasetFormat(
    name="lvos",
    reader=read_lvos,
    # the DAVIS layout, every frame (named by LVOS's 8-digit stems): what lvos-evaluation
    # reads (<results>/<video>/<frame>.png, object = pixel value); no zip
    submission=SubmissionLayout(frames="all", masks="palette", zip="never"),
    # DAVIS's rule per object, after its first appearance (the "lvos" protocol follows
    # lvos-evaluation instead: see metrics.jf)
    protocol="appearance",
)
