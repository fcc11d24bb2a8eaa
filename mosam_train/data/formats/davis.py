"""DAVIS 2017 reader (also reads the synthetic set, which is written in this layout).

Layout::

    <root>/JPEGImages/<resolution>/<seq>/00000.jpg ...
    <root>/Annotations/<resolution>/<seq>/00000.png ...   8-bit palette PNGs
    <root>/ImageSets/2017/<split>.txt                       one sequence name per line
    <root>/tags.json                                        optional {seq: [tag, ...]}
                                                            or {seq: {object id: [tag, ...]}}

Rules (kept simple on purpose; `PaletteVideo` applies them, and the MOSE reader reuses it):

- frame index = position in the sorted JPEG list; `frame_stems[t]` is its file stem;
- annotated frames = the frames that have a PNG; a PNG without a JPEG is an error;
- the first frame must be annotated; its labels (minus 0 and void 255) are the objects;
- `dense=True` (every split except ``test*``) requires a PNG for every frame;
  ``test-dev`` style splits with only the first PNG are read with ``dense=False``;
- a later frame may not introduce a label absent from the first frame;
- tags (`dataset_files.read_tags`) are the video's, carried by every object, or per object
  (`object_tags`, ids of first-frame objects; `tags` is then their union).
"""

from __future__ import annotations

from collections.abc import Iterable
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
from mosam_train.dataset_files import (
    TAGS_FILE,
    VOID_LABEL,
    VideoTags,
    image_size,
    list_frames,
    read_label,
    read_list,
    read_tags,
)
from mosam_train.errors import DataError

DAVIS_URL = "https://davischallenge.org/davis2017/code.html"


class PaletteVideo(FolderVideo):
    """A folder of JPEG frames plus a folder of palette PNGs whose first frame defines the
    objects (DAVIS 2017, MOSE); frames and masks are read from disk on each call (no cache).

    Listing the folders and reading the first PNG happen at construction, so layout
    errors surface when the split is read, while a corrupt file surfaces when it is
    loaded (and a training loader can skip it).
    """

    def __init__(
        self,
        name: str,
        image_dir: str | Path,
        mask_dir: str | Path,
        tags: VideoTags = (),
        dense: bool = True,
    ) -> None:
        self.name = name
        if isinstance(tags, dict):
            self.object_tags = {int(k): tuple(v) for k, v in tags.items()}
            self.tags = tuple(dict.fromkeys(t for k in sorted(tags) for t in tags[k]))
        else:
            self.tags = tuple(tags)
        self.image_dir = Path(image_dir)
        self.mask_dir = Path(mask_dir)
        if not self.image_dir.is_dir():
            raise DataError(
                f"{self.image_dir}: frame folder of video '{name}' is missing. Fix: add "
                f"the JPEG frames or remove '{name}' from the split.",
                self.image_dir,
            )
        if not self.mask_dir.is_dir():
            raise DataError(
                f"{self.mask_dir}: annotation folder of video '{name}' is missing. Fix: "
                f"add at least the first frame's palette PNG.",
                self.mask_dir,
            )
        images = list_frames(self.image_dir)
        if not images:
            raise DataError(
                f"{self.image_dir}: no .jpg frames. Fix: extract the frames as 00000.jpg, "
                f"00001.jpg, ...",
                self.image_dir,
            )
        pngs = list_frames(self.mask_dir, (".png",))
        check_masks_have_frames(pngs, images, self.image_dir)
        self._index_files(images, pngs)
        first = self.frame_stems[0]
        if first not in pngs:
            raise DataError(
                f"{self.mask_dir / (first + '.png')}: the first frame has no annotation; "
                f"semi-supervised VOS needs the first frame's mask. Fix: add it.",
                self.mask_dir,
            )
        if dense and len(pngs) != len(images):
            missing = [s for s in self.frame_stems if s not in pngs]
            raise DataError(
                f"{self.mask_dir / (missing[0] + '.png')}: missing; this split requires "
                f"every frame annotated but {len(missing)} of {len(images)} frames have no "
                f"PNG. Fix: add them, or read the split with dense=False (test-dev style, "
                f"first-frame annotation only).",
                self.mask_dir,
            )
        self.height, self.width = image_size(self._image_paths[0])
        first_label = read_label(
            self.mask_path(self.annotated_frames[0]), (self.height, self.width)
        )
        ids = np.unique(first_label)
        self.object_ids = tuple(int(v) for v in ids if v not in (0, VOID_LABEL))
        if not self.object_ids:
            raise DataError(
                f"{self._mask_paths[self.annotated_frames[0]]}: no object labelled in the "
                f"first frame (only background/void). Fix: label the objects to track, or "
                f"drop '{name}' from the split.",
                self._mask_paths[self.annotated_frames[0]],
            )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, frames={self.num_frames}, "
            f"annotated={len(self.annotated_frames)}, objects={self.object_ids}, "
            f"size={self.height}x{self.width}, tags={self.tags})"
        )

    def load_label(self, t: int) -> np.ndarray:
        """Raw label map of annotated frame `t` (uint8 [H, W]: 0 bg, ids, 255 void)."""
        return self.checked_label(
            t,
            f"in the first annotated frame {self._mask_paths[self.annotated_frames[0]].name} "
            f"(objects {list(self.object_ids)}). Fix: every object must be labelled in the "
            f"first frame; relabel or remove it.",
        )

    def first_appearance(self) -> dict[int, int]:
        # the objects are by definition the labels of frame 0: no PNG needs reading
        return dict.fromkeys(self.object_ids, self.annotated_frames[0])


class DavisVideo(PaletteVideo):
    """One DAVIS sequence: `PaletteVideo` on ``JPEGImages/<resolution>/<seq>`` and
    ``Annotations/<resolution>/<seq>``."""

    def __init__(
        self,
        root: str | Path,
        name: str,
        resolution: str = "480p",
        tags: VideoTags = (),
        dense: bool = True,
    ) -> None:
        self.root = Path(root)
        self.resolution = resolution
        super().__init__(
            name,
            self.root / "JPEGImages" / resolution / name,
            self.root / "Annotations" / resolution / name,
            tags,
            dense,
        )
        unknown = sorted(set(self.object_tags or ()) - set(self.object_ids))
        if unknown:
            path = self.root / TAGS_FILE
            raise DataError(
                f"{path}: video '{name}' tags object(s) {unknown}, which its first frame does "
                f"not label (objects {list(self.object_ids)}). Fix: key its tags by those ids.",
                path,
            )


def read_davis(
    root: str | Path,
    split: str,
    resolution: str = "480p",
    dense: bool | None = None,
    subset: Iterable[str] | str | Path | None = None,
    errors: list[DataError] | None = None,
) -> list[DavisVideo]:
    """Read the sequences listed in `ImageSets/2017/<split>.txt`.

    `dense=None` requires every frame annotated unless the split name starts with
    ``test`` (test-dev / test-challenge ship only the first frame's PNG). `subset` keeps
    only those names (a list or a file); `errors`: see `read_each`.
    """
    root = Path(root)
    require_root(
        root,
        f"put DAVIS 2017 there (JPEGImages/480p/<seq>/00000.jpg, "
        f"Annotations/480p/<seq>/00000.png, ImageSets/2017/{{train,val}}.txt; download from "
        f"{DAVIS_URL}), or generate the built-in synthetic set with `python -m "
        f"mosam_train.data.synthetic --root {root}`",
    )
    split_file = root / "ImageSets" / "2017" / f"{split}.txt"
    if not split_file.is_file():
        sets = root / "ImageSets" / "2017"
        have = sorted(p.stem for p in sets.glob("*.txt")) if sets.is_dir() else []
        raise DataError(
            f"{split_file}: split file not found (available: {have or 'none'}). Fix: use "
            f"one of the available splits, or complete the DAVIS 2017 layout "
            f"({DAVIS_URL}); for the synthetic set run `python -m mosam_train.data.synthetic "
            f"--root {root} --force`.",
            split_file,
        )
    res_dir = root / "JPEGImages" / resolution
    if not res_dir.is_dir():
        have = sorted(p.name for p in (root / "JPEGImages").glob("*") if p.is_dir())
        raise DataError(
            f"{res_dir}: resolution folder not found (available: {have or 'none'}). Fix: "
            f"set resolution to one of those (480p or Full-Resolution), or put the frames "
            f"there.",
            res_dir,
        )
    names = keep_subset(read_list(split_file), subset)
    if not names:
        raise DataError(f"{split_file}: the split lists no sequence. Fix: add names.", split_file)
    if dense is None:
        dense = not split.startswith("test")
    tags = read_tags(root)
    return read_each(
        names, lambda n: DavisVideo(root, n, resolution, tags.get(n, ()), dense=dense), errors
    )


FORMAT = DatasetFormat(
    name="davis",
    reader=read_davis,
    # <root>/<video>/<frame>.png for every frame, as the DAVIS 2017 toolkit reads them; a
    # split without ground truth (test-dev) also gets the zip the DAVIS server requires,
    # the video folders at its root.
    submission=SubmissionLayout(frames="all", masks="palette", zip="without_ground_truth"),
    protocol="appearance",  # = DAVIS 2017's rule: every object is in the first frame
)
