"""SA-V reader (Segment Anything Video, https://ai.meta.com/datasets/segment-anything-video/).

Train layout (24 fps mp4 videos, masks at 6 fps = every 4th video frame)::

    <root>/sav_train/sav_NNN/sav_XXXXXX.mp4
    <root>/sav_train/sav_NNN/sav_XXXXXX_manual.json    manual masklets (every video)
    <root>/sav_train/sav_NNN/sav_XXXXXX_auto.json      automatic masklets (most videos)

(the ``sav_NNN`` shard folders are optional: mp4s directly under the split folder work
too). A JSON holds ``video_frame_count``, ``video_height``, ``video_width`` and
``masklet``: a list over annotated frames (entry i is video frame 4*i) of lists over
objects of COCO RLEs ``{"size": [h, w], "counts": str}``, plus ``masklet_id``.

Val/test layout (frames as JPEG, one binary PNG per object and annotated frame)::

    <root>/sav_val/sav_val.txt                                  video names, one a line
    <root>/sav_val/JPEGImages_24fps/<vid>/00000.jpg ...         every frame
    <root>/sav_val/Annotations_6fps/<vid>/<obj>/00000.png ...   <obj> = 000, 001, ...

Which layout a split has is read from disk: ``<split>/JPEGImages_24fps`` means frames,
otherwise mp4s.

Rules, train:

- a record holds every video frame (``frame_step = 1``, ``num_frames`` = the JSON's
  ``video_frame_count``), frame t = the t-th decoded frame (`mp4.Mp4Video`, exact random
  access), named ``f"{t:05d}"`` like the val/test JPEGs;
- masklet entry i annotates frame 4*i. An object absent there has an empty RLE (mask all
  False). JSON ``null``, for the whole entry or for any object in it, means "not
  annotated": that frame is not in ``annotated_frames`` at all, exactly as sam2's own SA-V
  loader (``training/dataset/vos_raw_dataset.py``, ``JSONRawDataset`` with
  ``rm_unannotated=True``) keeps only entries that are not None and hold no None;
- object ids are the JSON's ``masklet_id`` (position when absent). With ``auto=True``
  the automatic masklets follow the manual ones with ids ``AUTO_ID_OFFSET +
  masklet_id`` (1000, 1001, ...), so the two never collide and an id says its source;
  a video without ``_auto.json`` keeps its manual masklets only (2k train videos have
  none). A frame is annotated only where both files annotate it;
- masks of different objects may overlap (whole person and their hand):
  ``load_masks`` returns independent masks, never a label map;
- every RLE must be ``video_height x video_width``, the auto JSON must describe the same
  video, the masklet may not have more entries than the video has frames for, and the
  decoded frames must have that size and the JSON's frame count; any mismatch is a
  `DataError` naming the files (never a silently wrong mask);
- ``first_appearance()`` comes from RLE areas (no mask decoding);
- a video with no masklet is an error (nothing to train on).

Construction is cheap, for 50k videos: listing the split only lists folders; the JSON is
parsed when a record's metadata is first used (``num_frames``, ``object_ids``, ...) and
the record keeps that metadata, not the masks. ``load_masks`` decodes from the parsed
JSON, which each process keeps for the last `JSON_CACHE` files, so the several mask reads
of one training clip parse it once. A broken JSON therefore surfaces on first use (the
training loader skips that video). When an ``errors`` list is passed (the check command),
or with ``eager=True``, every JSON is parsed while the split is read, so ``errors``
collects them all up front. The mp4 is opened only when a frame is read.

Rules, val/test: frame index = position in the sorted JPEG list, named by its stem;
annotated frames = the PNG stems; object ids = int of the object folder names
(``000`` -> 0); every object folder must hold the same PNG frames, each with a JPEG;
a PNG is an 8-bit palette or grey image read as ``value > 0`` (0/1 palette and 0/255
grey both occur).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from mosam_train.data.formats import DatasetFormat, SubmissionLayout
from mosam_train.data.formats.files import (
    check_masks_have_frames,
    keep_subset,
    read_each,
    require_root,
)
from mosam_train.data.formats.mp4 import Mp4Video, resolve_backend
from mosam_train.data.video import VideoRecord
from mosam_train.dataset_files import image_size, list_frames, read_label, read_list, read_rgb
from mosam_train.errors import DataError

SAV_URL = "https://ai.meta.com/datasets/segment-anything-video/"
ANN_EVERY = 4  # SA-V: 24 fps videos annotated at 6 fps
AUTO_ID_OFFSET = 1000
JSON_CACHE = 8  # parsed JSON files kept per process
FRAMES_DIR, MASKS_DIR = "JPEGImages_24fps", "Annotations_6fps"


# ---------------------------------------------------------------------------------------
# train: mp4 + JSON masklets


@lru_cache(maxsize=JSON_CACHE)
def _load_json(path: str, stamp: tuple[int, int]) -> dict:
    """Parsed JSON of `path`; `stamp` (mtime, size) makes a rewritten file a cache miss."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(
            f"{path}: cannot parse the masklet JSON ({e}). Fix: re-extract it from the SA-V "
            f"download ({SAV_URL}), or leave the video out with `subset`.",
            path,
        ) from e
    if not isinstance(data, dict) or not isinstance(data.get("masklet"), list):
        raise DataError(
            f"{path}: not an SA-V masklet JSON (expected an object with a 'masklet' list). "
            f"Fix: re-extract it from the SA-V download ({SAV_URL}).",
            path,
        )
    return data


def read_json(path: Path) -> dict:
    """An SA-V masklet JSON, parsed once per process for the last `JSON_CACHE` files."""
    try:
        st = path.stat()
    except OSError as e:
        raise DataError(
            f"{path}: masklet JSON not found ({e}). Fix: extract it next to the video, or "
            f"leave the video out with `subset`.",
            path,
        ) from e
    return _load_json(str(path), (st.st_mtime_ns, st.st_size))


@dataclass(frozen=True)
class _Masklets:
    """What one JSON says about its video, checked; masks stay in the JSON."""

    num_frames: int
    height: int
    width: int
    ids: tuple[int, ...]
    annotated: frozenset[int]  # entry indices with a mask for every object


def _number(data: dict, key: str, path: Path) -> int:
    v = data.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or v != int(v) or v <= 0:
        raise DataError(
            f"{path}: '{key}' is {v!r}; expected a positive whole number. Fix: re-extract "
            f"the JSON from the SA-V download ({SAV_URL}).",
            path,
        )
    return int(v)


def _parse(path: Path, data: dict, offset: int) -> _Masklets:
    num_frames = _number(data, "video_frame_count", path)
    h, w = _number(data, "video_height", path), _number(data, "video_width", path)
    masklet = data["masklet"]
    lists = [e for e in masklet if isinstance(e, list)]
    raw_ids = data.get("masklet_id", list(range(len(lists[0]) if lists else 0)))
    if not isinstance(raw_ids, list) or any(
        isinstance(i, bool) or not isinstance(i, int | float) or i != int(i) or i < 0
        for i in raw_ids
    ):
        raise DataError(
            f"{path}: 'masklet_id' must be a list of non-negative whole numbers. Fix: "
            f"re-extract the JSON ({SAV_URL}).",
            path,
        )
    ids = tuple(offset + int(i) for i in raw_ids)
    n = len(lists[0]) if lists else len(ids)
    if len(set(ids)) != len(ids) or len(ids) != n:
        raise DataError(
            f"{path}: 'masklet_id' {list(raw_ids)[:10]} is repeated or does not match the "
            f"{n} objects per masklet entry. Fix: re-extract the JSON ({SAV_URL}).",
            path,
        )
    if offset == 0 and ids and max(ids) >= AUTO_ID_OFFSET:
        raise DataError(
            f"{path}: manual masklet id {max(ids)} >= {AUTO_ID_OFFSET}, which this reader "
            f"keeps for automatic masklets. Fix: renumber the manual masklets below "
            f"{AUTO_ID_OFFSET}.",
            path,
        )
    expected = math.ceil(num_frames / ANN_EVERY)
    if len(masklet) > expected:
        raise DataError(
            f"{path}: 'masklet' has {len(masklet)} entries but a {num_frames}-frame video "
            f"annotated every {ANN_EVERY}th frame has at most {expected}. Fix: the JSON does "
            f"not belong to this video; re-extract it ({SAV_URL}).",
            path,
        )
    annotated = set()
    for i, entry in enumerate(masklet):
        if entry is None:
            continue
        if not isinstance(entry, list) or len(entry) != n:
            raise DataError(
                f"{path}: masklet entry {i} (frame {ANN_EVERY * i}) has "
                f"{len(entry) if isinstance(entry, list) else type(entry).__name__} objects, "
                f"expected {n}. Fix: re-extract the JSON ({SAV_URL}).",
                path,
            )
        for k, rle in enumerate(entry):
            if rle is not None:
                _check_rle(rle, (h, w), path, i, ids[k])
        if None not in entry:
            annotated.add(i)
    return _Masklets(num_frames, h, w, ids, frozenset(annotated))


def _check_rle(rle: Any, size: tuple[int, int], path: Path, i: int, oid: int) -> None:
    if (
        not isinstance(rle, dict)
        or not isinstance(rle.get("counts"), str | bytes)
        or not isinstance(rle.get("size"), list | tuple)
    ):
        raise DataError(
            f"{path}: masklet entry {i} (frame {ANN_EVERY * i}), object {oid}: not a "
            f"compressed COCO RLE {{'size': [h, w], 'counts': str}}. Fix: re-extract the JSON "
            f"({SAV_URL}).",
            path,
        )
    if list(rle["size"]) != list(size):
        raise DataError(
            f"{path}: masklet entry {i} (frame {ANN_EVERY * i}), object {oid}: RLE size "
            f"{list(rle['size'])} differs from the video size [{size[0]}, {size[1]}] "
            f"(video_height, video_width). Fix: the masks must be at the video's resolution; "
            f"re-extract the JSON ({SAV_URL}) or re-encode the masks at that size.",
            path,
        )


@dataclass(frozen=True)
class _Info:
    """A train record's metadata (small: kept on the record, pickled with it)."""

    num_frames: int
    height: int
    width: int
    object_ids: tuple[int, ...]
    num_manual: int
    annotated_frames: tuple[int, ...]


class SavTrainVideo(VideoRecord):
    """One SA-V train video: frames from the mp4, masks from the JSON RLEs.

    Metadata is parsed from the JSON on first use (see the module doc); frames and masks
    are read on each call.
    """

    overlapping = True

    def __init__(
        self,
        name: str,
        video: Path,
        manual: Path,
        auto: Path | None = None,
        backend: str = "auto",
        eager: bool = False,
    ) -> None:
        self.name = name
        self.video_path = Path(video)
        self.manual_path = Path(manual)
        self.auto_path = None if auto is None else Path(auto)
        self.video = Mp4Video(self.video_path, backend)
        self._info: _Info | None = None
        self._first: dict[int, int] | None = None
        self._video_checked = False
        if eager:
            self._parsed()

    @property
    def source(self) -> str:
        return str(self.video_path)

    def __repr__(self) -> str:
        auto = "" if self.auto_path is None else ", auto"
        return f"SavTrainVideo({self.name!r}, {str(self.video_path)!r}{auto})"

    def _jsons(self) -> tuple[dict, dict | None]:
        manual = read_json(self.manual_path)
        return manual, None if self.auto_path is None else read_json(self.auto_path)

    def _parsed(self) -> _Info:
        if self._info is None:
            manual, auto = self._jsons()
            m = _parse(self.manual_path, manual, 0)
            a = None if auto is None else _parse(self.auto_path, auto, AUTO_ID_OFFSET)
            if a is not None and (a.num_frames, a.height, a.width) != (
                m.num_frames,
                m.height,
                m.width,
            ):
                raise DataError(
                    f"{self.auto_path}: describes a {a.num_frames}-frame {a.height}x{a.width} "
                    f"video but {self.manual_path.name} a {m.num_frames}-frame "
                    f"{m.height}x{m.width} one. Fix: re-extract both JSONs ({SAV_URL}).",
                    self.auto_path,
                )
            ids = m.ids + (a.ids if a else ())
            if not ids:
                raise DataError(
                    f"{self.manual_path}: the video has no masklet. Fix: leave it out with "
                    f"`subset`.",
                    self.manual_path,
                )
            entries = m.annotated if a is None else m.annotated & a.annotated
            if not entries:
                raise DataError(
                    f"{self.manual_path}: no annotated frame (every masklet entry is null or "
                    f"holds a null{'' if a is None else ' here or in the auto JSON'}). Fix: "
                    f"leave the video out with `subset`.",
                    self.manual_path,
                )
            annotated = tuple(ANN_EVERY * i for i in sorted(entries))
            self._info = _Info(m.num_frames, m.height, m.width, ids, len(m.ids), annotated)
        return self._info

    # metadata, parsed on first use
    @property
    def num_frames(self) -> int:
        return self._parsed().num_frames

    @property
    def height(self) -> int:
        return self._parsed().height

    @property
    def width(self) -> int:
        return self._parsed().width

    @property
    def object_ids(self) -> tuple[int, ...]:
        return self._parsed().object_ids

    @property
    def annotated_frames(self) -> tuple[int, ...]:
        return self._parsed().annotated_frames

    def _entry(self, t: int) -> list[dict]:
        """The RLEs of annotated frame `t`, in `object_ids` order, checked."""
        info = self._parsed()
        if t not in info.annotated_frames:
            raise KeyError(f"{self.name}: frame {t} is not annotated")
        manual, auto = self._jsons()
        i = t // ANN_EVERY
        rles = list(manual["masklet"][i]) + (list(auto["masklet"][i]) if auto else [])
        if len(rles) != len(info.object_ids):  # the file changed since it was first read
            raise DataError(
                f"{self.manual_path}: frame {t} has {len(rles)} masks for "
                f"{len(info.object_ids)} objects. Fix: re-extract the JSON ({SAV_URL}).",
                self.manual_path,
            )
        size = (info.height, info.width)
        for k, (rle, oid) in enumerate(zip(rles, info.object_ids, strict=True)):
            path = self.manual_path if k < info.num_manual else self.auto_path
            if rle is None:
                raise DataError(
                    f"{path}: object {oid} on frame {t} became null since the file was "
                    f"first read. Fix: do not rewrite the JSON during a run.",
                    path,
                )
            _check_rle(rle, size, path, i, oid)
        return rles

    def load_masks(self, t: int) -> np.ndarray:
        rles = self._entry(t)
        try:
            masks = mask_utils.decode(rles)  # [H, W, O], Fortran order
        except (ValueError, TypeError) as e:
            where = self.manual_path.name + (f" or {self.auto_path.name}" if self.auto_path else "")
            raise DataError(
                f"{self.manual_path.parent}: cannot decode the RLEs of frame {t} in {where} "
                f"({e}). Fix: re-extract the JSON ({SAV_URL}).",
                self.manual_path,
            ) from e
        return np.ascontiguousarray(masks.transpose(2, 0, 1)).astype(bool)

    def first_appearance(self) -> dict[int, int]:
        """From RLE areas, without decoding masks."""
        if self._first is None:
            ids = self.object_ids
            first: dict[int, int] = {}
            for t in self.annotated_frames:
                areas = mask_utils.area(self._entry(t))
                for oid, area in zip(ids, areas, strict=True):
                    if area > 0 and oid not in first:
                        first[oid] = t
                if len(first) == len(ids):
                    break
            self._first = first
        return dict(self._first)

    def _checked_video(self) -> Mp4Video:
        """The mp4, checked once against the JSON (frame count and size)."""
        if not self._video_checked:
            v = self.video
            if (v.num_frames, v.height, v.width) != (self.num_frames, self.height, self.width):
                raise DataError(
                    f"{self.video_path}: the video has {v.num_frames} frames of "
                    f"{v.height}x{v.width} (as displayed, rotation applied) but "
                    f"{self.manual_path.name} says {self.num_frames} frames of "
                    f"{self.height}x{self.width}; masks would not line up. Fix: re-extract "
                    f"the video and its JSONs from the SA-V download ({SAV_URL}).",
                    self.video_path,
                )
            self._video_checked = True
        return self.video

    def load_frame(self, t: int) -> np.ndarray:
        return self._checked_video().read_frame(t)

    def load_frames(self, ts: Sequence[int]) -> np.ndarray:
        """Frames `ts` as uint8 [N, H, W, 3] in one pass (decoding each GOP once)."""
        return self._checked_video().read(ts)


def _list_train(split_dir: Path) -> dict[str, dict[str, Path]]:
    """{video: {"mp4"|"manual"|"auto": path}} from the split folder and its shard folders."""
    found: dict[str, dict[str, Path]] = {}
    kinds = (("_manual.json", "manual"), ("_auto.json", "auto"), (".mp4", "mp4"))
    folders = [split_dir, *sorted(p for p in split_dir.iterdir() if p.is_dir())]
    for folder in folders:
        for p in folder.iterdir():
            if p.name.startswith("."):  # e.g. macOS "._sav_000001.mp4" copies in archives
                continue
            for suffix, kind in kinds:
                if p.name.endswith(suffix) and len(p.name) > len(suffix):
                    name = p.name[: -len(suffix)]
                    have = found.setdefault(name, {})
                    if kind in have:
                        raise DataError(
                            f"{p}: video '{name}' appears twice (also {have[kind]}). Fix: "
                            f"keep one copy.",
                            p,
                        )
                    have[kind] = p
                    break
    return found


def _train_record(
    name: str, files: dict[str, Path], auto: bool, backend: str, eager: bool
) -> SavTrainVideo:
    if "mp4" not in files:
        where = files.get("manual") or files.get("auto")
        raise DataError(
            f"{where}: no video {name}.mp4 next to it. Fix: extract the video from the SA-V "
            f"download ({SAV_URL}), or leave '{name}' out with `subset`.",
            where,
        )
    if "manual" not in files:
        path = files["mp4"].with_name(f"{name}_manual.json")
        raise DataError(
            f"{path}: missing; every SA-V train video has manual masklets. Fix: extract it "
            f"from the SA-V download ({SAV_URL}), or leave '{name}' out with `subset`.",
            path,
        )
    return SavTrainVideo(
        name,
        files["mp4"],
        files["manual"],
        files.get("auto") if auto else None,
        backend=backend,
        eager=eager,
    )


# ---------------------------------------------------------------------------------------
# val / test: JPEG frames + one binary PNG per object


class SavFramesVideo(VideoRecord):
    """One SA-V val/test video; frames and masks are read from disk on each call.

    Folders are listed at construction, so layout errors surface when the split is read.
    """

    overlapping = True

    def __init__(self, split_dir: str | Path, name: str) -> None:
        split_dir = Path(split_dir)
        self.name = name
        self.image_dir = split_dir / FRAMES_DIR / name
        self.mask_dir = split_dir / MASKS_DIR / name
        for folder, what in ((self.image_dir, "frame"), (self.mask_dir, "annotation")):
            if not folder.is_dir():
                raise DataError(
                    f"{folder}: {what} folder of video '{name}' is missing. Fix: extract it "
                    f"from the SA-V download ({SAV_URL}), or remove '{name}' from "
                    f"{split_dir.name}.txt.",
                    folder,
                )
        images = list_frames(self.image_dir)
        if not images:
            raise DataError(
                f"{self.image_dir}: no .jpg frames. Fix: extract them as 00000.jpg, ...",
                self.image_dir,
            )
        self.frame_stems: tuple[str, ...] = tuple(images)
        self._image_paths = tuple(images.values())
        index = {s: i for i, s in enumerate(self.frame_stems)}
        folders = sorted(p for p in self.mask_dir.iterdir() if p.is_dir())
        if not folders:
            raise DataError(
                f"{self.mask_dir}: no object folder (000, 001, ...). Fix: extract the "
                f"annotations from the SA-V download ({SAV_URL}).",
                self.mask_dir,
            )
        ids: list[int] = []
        pngs: list[dict[str, Path]] = []
        for folder in folders:
            if not folder.name.isdigit():
                raise DataError(
                    f"{folder}: object folders must be named by number (000, 001, ...). Fix: "
                    f"rename or remove it.",
                    folder,
                )
            ids.append(int(folder.name))
            pngs.append(list_frames(folder, (".png",)))
        if len(set(ids)) != len(ids):
            raise DataError(
                f"{self.mask_dir}: two object folders have the same number ({ids}). Fix: keep one.",
                self.mask_dir,
            )
        stems = set(pngs[0])
        for folder, p in zip(folders, pngs, strict=True):
            if not p:
                raise DataError(f"{folder}: no PNG mask. Fix: add them or remove it.", folder)
            if set(p) != stems:
                diff = sorted(set(p) ^ stems)
                raise DataError(
                    f"{folder}: its PNG frames differ from {folders[0].name}'s (e.g. "
                    f"{diff[:3]}); every object is annotated on the same frames. Fix: "
                    f"re-extract the annotations of '{name}'.",
                    folder,
                )
            check_masks_have_frames(p, images, self.image_dir)
        self.object_ids = tuple(ids)
        self._pngs = pngs
        self.annotated_frames = tuple(sorted(index[s] for s in stems))
        self.num_frames = len(self.frame_stems)
        self.height, self.width = image_size(self._image_paths[0])

    def __repr__(self) -> str:
        return (
            f"SavFramesVideo({self.name!r}, frames={self.num_frames}, "
            f"annotated={len(self.annotated_frames)}, objects={self.object_ids}, "
            f"size={self.height}x{self.width})"
        )

    @property
    def source(self) -> str:
        return str(self.image_dir)

    def frame_name(self, t: int) -> str:
        return self.frame_stems[t]

    def load_frame(self, t: int) -> np.ndarray:
        return read_rgb(self._image_paths[t], (self.height, self.width))

    def mask_paths(self, t: int) -> list[Path]:
        """The PNG of each object (in `object_ids` order) on annotated frame `t`."""
        stem = self.frame_stems[t]
        if stem not in self._pngs[0]:
            raise KeyError(f"{self.name}: frame {t} is not annotated")
        return [p[stem] for p in self._pngs]

    def load_masks(self, t: int) -> np.ndarray:
        size = (self.height, self.width)
        return np.stack([read_label(p, size) > 0 for p in self.mask_paths(t)])


# ---------------------------------------------------------------------------------------


def read_sav(
    root: str | Path,
    split: str,
    *,
    auto: bool = False,
    subset: Iterable[str] | str | Path | None = None,
    errors: list[DataError] | None = None,
    backend: str = "auto",
    eager: bool | None = None,
) -> list[VideoRecord]:
    """Records of SA-V `split` ("sav_train", "sav_val", "sav_test") under `root`.

    `auto`: add the automatic masklets (train). `backend`: mp4 decoder ("auto", "decord",
    "pyav"). `eager`: parse every train JSON now, so that a broken one is reported here;
    None (default) = only when an `errors` list is passed (the check command), so training
    on 50k videos starts without parsing them all. `subset` keeps only those names (a list
    or a file); `errors`: see `read_each`.
    """
    root = Path(root)
    require_root(
        root,
        f"download SA-V from {SAV_URL} and extract it there (sav_train/sav_NNN/*.mp4 + "
        f"*_manual.json; sav_val/ and sav_test/ with {FRAMES_DIR}/ and {MASKS_DIR}/)",
    )
    split_dir = root / split
    if not split_dir.is_dir():
        have = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise DataError(
            f"{split_dir}: split folder not found (folders here: {have or 'none'}). Fix: use "
            f"one of sav_train, sav_val, sav_test, extracted from {SAV_URL}.",
            split_dir,
        )
    if (split_dir / FRAMES_DIR).is_dir():
        split_file = split_dir / f"{split}.txt"
        if not split_file.is_file():
            raise DataError(
                f"{split_file}: the list of the split's videos is missing. Fix: extract it "
                f"from the SA-V download ({SAV_URL}), or write one video name per line.",
                split_file,
            )
        names = keep_subset(read_list(split_file), subset)
        if not names:
            raise DataError(f"{split_file}: lists no video. Fix: add names.", split_file)
        return read_each(names, lambda n: SavFramesVideo(split_dir, n), errors)
    backend = resolve_backend(backend)
    found = _list_train(split_dir)
    if not any("mp4" in f for f in found.values()):
        raise DataError(
            f"{split_dir}: no .mp4 video (looked in the folder and its sav_NNN subfolders) "
            f"and no {FRAMES_DIR}/ frame folder. Fix: extract SA-V there ({SAV_URL}).",
            split_dir,
        )
    names = keep_subset(sorted(found), subset)
    eager = errors is not None if eager is None else eager
    return read_each(names, lambda n: _train_record(n, found[n], auto, backend, eager), errors)


FORMAT = DatasetFormat(
    name="sav",
    reader=read_sav,
    # one binary PNG per object and annotated frame, <root>/<video>/<object 3 digits>/
    # <frame>.png (values 0/1), overlaps kept, as SA-V's sav_evaluator.py reads them; object
    # ids may be 0 or >= 1000, so nothing goes through a uint8 label map
    submission=SubmissionLayout(frames="annotated", masks="per_object", zip="never"),
    protocol="sav",  # SA-V's evaluator: each object from where its GT or prediction appears
)
