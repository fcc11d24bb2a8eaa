"""GOT-10k reader (box tracking).

Layout::

    <root>/<split>/list.txt                       sequence names, one per line
    <root>/<split>/<seq>/00000001.jpg ...
    <root>/<split>/<seq>/groundtruth.txt          x,y,w,h per frame (test: first frame only)
    <root>/<split>/<seq>/cover.label              visible ratio level 0-8 per frame (0: absent)
    <root>/<split>/<seq>/absence.label            0/1 per frame (read by nothing here: the
                                                  toolkit scores by cover > 0)

``<split>``: train, val, test. Without list.txt the sequences are the sub-folders that hold
a groundtruth.txt, in name order.

Rules (``got10k.datasets.GOT10k`` and ``ExperimentGOT10k``, github.com/got-10k/toolkit):

- frames = the JPEGs in name order; groundtruth.txt has one line per frame (train, val),
  or only the first frame's (test: ground truth withheld, scored by the server);
- with full ground truth, cover.label is required (the toolkit scores frames with
  cover > 0); frames with cover 0 are `absent`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mosam_train.data.formats.files import keep_subset, read_each
from mosam_train.data.formats.tracking import TrackingSequence, read_boxes, read_flags
from mosam_train.dataset_files import list_frames, read_list
from mosam_train.errors import DataError

GOT10K_URL = "http://got-10k.aitestunion.com/downloads"


def read_got10k_sequence(split_dir: Path, name: str) -> TrackingSequence:
    """One GOT-10k sequence, its text files checked (frames are read later, lazily)."""
    folder = split_dir / name
    if not folder.is_dir():
        raise DataError(
            f"{folder}: sequence folder missing. Fix: extract '{name}' there, or remove it "
            f"from {split_dir / 'list.txt'}.",
            folder,
        )
    frames = list(list_frames(folder).values())
    if not frames:
        raise DataError(f"{folder}: no .jpg frames. Fix: extract the sequence.", folder)
    gt_path = folder / "groundtruth.txt"
    boxes = read_boxes(gt_path)
    n = len(frames)
    if len(boxes) == n:
        cover = read_flags(folder / "cover.label", n, integer=True)
        return TrackingSequence(
            name, frames, boxes[0], boxes, absent=cover == 0, cover=cover, gt_path=gt_path
        )
    if len(boxes) == 1:  # test split: first frame only
        return TrackingSequence(name, frames, boxes[0], None, gt_path=gt_path)
    raise DataError(
        f"{gt_path}: {len(boxes)} boxes for {n} frames in {folder}. Fix: one box per frame "
        f"(or only the first frame's, as in the test split).",
        gt_path,
    )


def read_got10k(
    root: str | Path,
    split: str = "val",
    *,
    subset: Iterable[str] | str | Path | None = None,
    errors: list[DataError] | None = None,
) -> list[TrackingSequence]:
    """Sequences of `split` (train | val | test) of the GOT-10k-layout set at `root`."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise DataError(
            f"GOT-10k split folder not found: {split_dir}. Fix: put GOT-10k at {root} "
            f"(<split>/<seq>/00000001.jpg, groundtruth.txt, cover.label; {GOT10K_URL}).",
            split_dir,
        )
    listing = split_dir / "list.txt"
    if listing.is_file():
        names = read_list(listing)
    else:
        names = sorted(p.parent.name for p in split_dir.glob("*/groundtruth.txt"))
    if not names:
        raise DataError(
            f"{split_dir}: no sequences (no list.txt, no <seq>/groundtruth.txt). Fix: point "
            f"data.root at the folder holding train/ val/ test/.",
            split_dir,
        )
    names = keep_subset(names, subset)
    return read_each(names, lambda n: read_got10k_sequence(split_dir, n), errors)
