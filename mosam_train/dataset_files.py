"""Reading the files datasets are made of: JPEG frames, indexed (palette) PNGs, frame
folders, split lists, tag files.

Each function raises `DataError` naming the file and the fix, so every reader reports bad
files the same way and the training loader can skip them. The dataset readers
(`data.formats`), the video input of the demo (`inference.video_input`) and the scoring CLI
(`metrics.score`) all read through these, so they live below all of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from mosam_train.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg")
VOID_LABEL = 255


def frame_sort_key(stem: str) -> tuple:
    """Numeric stems in numeric order (YouTube-VOS names are 30 fps indices), others after."""
    return (0, int(stem), stem) if stem.isdigit() else (1, 0, stem)


def list_frames(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> dict[str, Path]:
    """{stem: path} of the files in `folder` with one of `suffixes`, in frame order."""
    try:
        files = [p for p in folder.iterdir() if p.suffix.lower() in suffixes]
    except OSError as e:
        raise DataError(
            f"{folder}: cannot list the folder ({e}). Fix: check the path.", folder
        ) from e
    return {p.stem: p for p in sorted(files, key=lambda p: frame_sort_key(p.stem))}


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the header only."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(
            f"{path}: cannot read image ({e}). Fix: re-extract or replace this frame.", path
        ) from e
    return h, w


def read_rgb(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 [H, W, 3]; `size` = the (H, W) the video's other frames have."""
    try:
        with Image.open(path) as im:
            rgb = np.array(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(
            f"{path}: cannot read image ({e}). Fix: re-extract or replace this frame.", path
        ) from e
    if size is not None and rgb.shape[:2] != tuple(size):
        raise DataError(
            f"{path}: frame is {rgb.shape[0]}x{rgb.shape[1]} but the video's first frame is "
            f"{size[0]}x{size[1]}. Fix: resize the frames consistently.",
            path,
        )
    return rgb


def read_label(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Raw object ids of an indexed PNG as uint8 [H, W] (0 background, 255 void).

    Palette ('P') and grey ('L') PNGs hold ids as pixel values; an RGB PNG holds colours,
    and guessing ids from colours silently merges objects, so it is an error.
    """
    try:
        with Image.open(path) as im:
            mode = im.mode
            label = np.array(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(
            f"{path}: cannot read annotation ({e}). Fix: re-export it as an 8-bit palette PNG.",
            path,
        ) from e
    if mode not in ("P", "L") or label.ndim != 2:
        raise DataError(
            f"{path}: annotation has PIL mode {mode!r}; expected an 8-bit palette ('P') or "
            f"grey ('L') PNG of object ids. Fix: re-export with ids as pixel values (never "
            f"as RGB colours).",
            path,
        )
    if size is not None and label.shape != tuple(size):
        raise DataError(
            f"{path}: mask is {label.shape[0]}x{label.shape[1]} but the frames are "
            f"{size[0]}x{size[1]}. Fix: export masks at the frame resolution.",
            path,
        )
    return label.astype(np.uint8, copy=False)


def read_lines(path: Path, what: str) -> list[str]:
    """The lines of text file `path` (`what` it is, for the error)."""
    try:
        return path.read_text().splitlines()
    except OSError as e:
        raise DataError(f"{path}: cannot read the {what} ({e}). Fix: check the path.", path) from e


def read_list(path: Path) -> list[str]:
    """Names in a split file: one per line, blank lines and '#' comments skipped, deduplicated."""
    lines = read_lines(path, "split list")
    names = [ln.strip() for ln in lines]
    return list(dict.fromkeys(n for n in names if n and not n.startswith("#")))


# A video's tags: one list for all its objects, or a list per object id.
VideoTags = tuple[str, ...] | dict[int, tuple[str, ...]]
TAGS_FILE = "tags.json"


def read_tags(root: Path) -> dict[str, VideoTags]:
    """Optional `<root>/tags.json`; {} when absent. Each video maps to a list of tags that
    every object of it carries (``{"<video>": ["occlusion"]}``) or to a list per object id
    (``{"<video>": {"1": ["occlusion"], "2": []}}``; an object not listed has none)."""
    path = root / TAGS_FILE
    if not path.exists():
        return {}
    fix = (
        'Fix: write {"<video>": ["tag", ...]} (tags of every object of the video) or '
        '{"<video>": {"<object id>": ["tag", ...]}} (tags per object), or delete the file.'
    )
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot parse tags ({e}). {fix}", path) from e
    if not isinstance(raw, dict):
        raise DataError(
            f"{path}: cannot parse tags (expected an object, got {raw!r:.40}). {fix}", path
        )
    out: dict[str, VideoTags] = {}
    for video, entry in raw.items():
        if isinstance(entry, list) and all(isinstance(t, str) for t in entry):
            out[str(video)] = tuple(entry)
            continue
        if isinstance(entry, dict):
            per_object = {}
            for oid, tags in entry.items():
                if not (str(oid).isdigit() and isinstance(tags, list)) or not all(
                    isinstance(t, str) for t in tags
                ):
                    break
                per_object[int(oid)] = tuple(tags)
            else:
                out[str(video)] = per_object
                continue
        raise DataError(
            f"{path}: cannot parse the tags of video {video!r} ({json.dumps(entry)[:80]}): "
            f"expected a list of strings, or an object mapping object ids (digits) to lists of "
            f"strings. {fix}",
            path,
        )
    return out
