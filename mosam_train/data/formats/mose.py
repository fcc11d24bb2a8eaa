"""MOSE (coMplex video Object SEgmentation) reader.

Layout (the official ``train.tar.gz`` / ``valid.tar.gz`` unpacked into the root)::

    <root>/<split>/JPEGImages/<vid>/00000.jpg, 00001.jpg, ...   split: train, valid
    <root>/<split>/Annotations/<vid>/00000.png, ...             8-bit palette PNGs (DAVIS)

Videos are named by 8 hex digits; train has a PNG for every frame, valid only the first
frame's. Objects often disappear and come back (an all-False mask in between).

Rules: those of DAVIS (`davis.PaletteVideo`), on these folders:

- videos = every subfolder of ``JPEGImages`` or ``Annotations``, sorted (a video with only
  one of the two folders raises `DataError` naming the missing one; with an `errors` list
  it is recorded and skipped); there is no split list;
- frame index = position in the sorted JPEG list, ``frame_name(t)`` = the stem,
  ``frame_step`` = 1; annotated frames = the frames with a PNG, a PNG without a JPEG is an
  error;
- the objects are the labels of the first frame's PNG (which must exist); a later label
  not in it is an error; 255 is void, as in DAVIS (MOSE itself does not use it);
- ``dense=None``: every frame needs a PNG unless the split name starts with ``valid`` or
  ``test``;
- any ``meta_*.json`` (its schema differs between releases) is ignored: everything comes
  from the folders. ``tags`` are empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mosam_train.data.formats import DatasetFormat, SubmissionLayout
from mosam_train.data.formats.davis import PaletteVideo
from mosam_train.data.formats.files import keep_subset, read_each, require_root
from mosam_train.errors import DataError

MOSE_URL = "https://henghuiding.github.io/MOSE/"
SPARSE_SPLITS = ("valid", "test")


class MoseVideo(PaletteVideo):
    """One MOSE video: `PaletteVideo` on ``<split>/JPEGImages/<vid>`` and
    ``<split>/Annotations/<vid>``."""

    def __init__(self, root: str | Path, split: str, name: str, dense: bool = True) -> None:
        self.root = Path(root)
        self.split = split
        super().__init__(
            name,
            self.root / split / "JPEGImages" / name,
            self.root / split / "Annotations" / name,
            dense=dense,
        )


def _subfolders(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()


def read_mose(
    root: str | Path,
    split: str,
    *,
    dense: bool | None = None,
    subset: Iterable[str] | str | Path | None = None,
    errors: list[DataError] | None = None,
) -> list[MoseVideo]:
    """Read every video of `<root>/<split>` (see the module docstring for the rules).

    `dense=None` requires every frame annotated unless the split name starts with
    ``valid`` or ``test`` (first-frame PNG only). `subset` keeps only those names (a list
    or a file); `errors`: see `read_each`.
    """
    root = Path(root)
    require_root(
        root,
        f"download MOSE ({MOSE_URL}) and unpack train.tar.gz / valid.tar.gz into it so "
        f"that {root / 'train' / 'JPEGImages'} and {root / 'train' / 'Annotations'} exist",
    )
    image_root = root / split / "JPEGImages"
    mask_root = root / split / "Annotations"
    for folder in (image_root, mask_root):
        if not folder.is_dir():
            have = sorted(p.name for p in root.iterdir() if (p / "JPEGImages").is_dir())
            hint = ""
            if (root / folder.name / split).is_dir():
                hint = (
                    f" This root has the {folder.name}/{split} arrangement; move "
                    f"{root / folder.name / split} to {folder}."
                )
            raise DataError(
                f"{folder}: not found (splits here: {have or 'none'}). Fix: use one of those "
                f"splits or unpack {split}.tar.gz ({MOSE_URL}) into {root}.{hint}",
                folder,
            )
    names = keep_subset(sorted(_subfolders(image_root) | _subfolders(mask_root)), subset)
    if not names:
        raise DataError(
            f"{image_root}: no video folder. Fix: re-extract {split}.tar.gz.", image_root
        )
    if dense is None:
        dense = not split.startswith(SPARSE_SPLITS)
    return read_each(names, lambda n: MoseVideo(root, split, n, dense=dense), errors)


FORMAT = DatasetFormat(
    name="mose",
    reader=read_mose,
    # the DAVIS layout, every frame, plus the zip MOSE's server takes (video folders at
    # its root)
    submission=SubmissionLayout(frames="all", masks="palette", zip="always"),
    protocol="appearance",
)
