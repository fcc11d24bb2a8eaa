"""LaSOT reader (box tracking; also reads the synthetic tracking set, written in this layout).

Layout::

    <root>/<class>/<class>-<n>/img/00000001.jpg ...
    <root>/<class>/<class>-<n>/groundtruth.txt      one x,y,w,h per frame (comma separated)
    <root>/<class>/<class>-<n>/full_occlusion.txt   one line of comma-separated 0/1 per frame
    <root>/<class>/<class>-<n>/out_of_view.txt      likewise
    <root>/testing_set.txt                          the 280 test sequences (Protocol II),
    <root>/training_set.txt                         one name per line (as in the LaSOT
                                                    toolkit's sequence_evaluation_config/)

Splits: ``test`` and ``train`` are the names in ``testing_set.txt`` / ``training_set.txt``;
``all`` is every ``<class>/<class>-<n>`` folder that has a groundtruth.txt (e.g. the test
subset download, which holds exactly the 280 test sequences). A sequence folder may also
sit directly under ``<root>``.

Rules (those of pytracking's ``LaSOTDataset``, which the toolkit numbers are computed with):

- the sequence has as many frames as groundtruth.txt has lines: the first that many
  JPEGs in name order (fewer JPEGs is an error);
- a frame is absent (not scored as visible) where full_occlusion or out_of_view is 1
  (pytracking's ``target_visible = (full_occlusion == 0) & (out_of_view == 0)``);
- the first line is the box the tracker starts from; it must have w, h > 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mosam_train.data.formats.files import keep_subset, read_each
from mosam_train.data.formats.tracking import TrackingSequence, read_boxes, read_flags
from mosam_train.dataset_files import list_frames, read_list
from mosam_train.errors import DataError

LASOT_URL = "https://github.com/HengLan/LaSOT_Evaluation_Toolkit"
SPLIT_FILES = {"test": "testing_set.txt", "train": "training_set.txt"}


def lasot_class(name: str) -> str:
    """The class of a sequence name (``airplane-1`` -> ``airplane``)."""
    return name.rsplit("-", 1)[0] if "-" in name else name


def sequence_dir(root: Path, name: str) -> Path:
    """``<root>/<class>/<name>``, or ``<root>/<name>`` where the classes are not folders."""
    nested = root / lasot_class(name) / name
    return nested if nested.is_dir() or not (root / name).is_dir() else root / name


def _all_names(root: Path) -> list[str]:
    names = []
    for gt in sorted(root.glob("*/*/groundtruth.txt")) + sorted(root.glob("*/groundtruth.txt")):
        names.append(gt.parent.name)
    return list(dict.fromkeys(names))


def read_lasot_sequence(root: Path, name: str) -> TrackingSequence:
    """One LaSOT sequence, its text files checked (frames are read later, lazily)."""
    folder = sequence_dir(root, name)
    if not folder.is_dir():
        raise DataError(
            f"{root / lasot_class(name) / name}: sequence folder missing. Fix: extract "
            f"'{name}' there, or remove it from the split list.",
            folder,
        )
    gt_path = folder / "groundtruth.txt"
    gt = read_boxes(gt_path)
    n = len(gt)
    img_dir = folder / "img"
    if not img_dir.is_dir():
        raise DataError(f"{img_dir}: frame folder missing. Fix: extract the sequence.", img_dir)
    frames = list(list_frames(img_dir).values())
    if len(frames) < n:
        raise DataError(
            f"{img_dir}: {len(frames)} frames but {gt_path} has {n} boxes. Fix: re-extract "
            f"the sequence (one frame per ground-truth line).",
            img_dir,
        )
    occluded = read_flags(folder / "full_occlusion.txt", n)
    out_of_view = read_flags(folder / "out_of_view.txt", n)
    absent = (occluded == 1) | (out_of_view == 1)
    return TrackingSequence(
        name, frames[:n], gt[0], gt, absent=absent, category=lasot_class(name), gt_path=gt_path
    )


def read_lasot(
    root: str | Path,
    split: str = "test",
    *,
    subset: Iterable[str] | str | Path | None = None,
    errors: list[DataError] | None = None,
) -> list[TrackingSequence]:
    """Sequences of `split` (test | train | all) of the LaSOT-layout set at `root`."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"LaSOT root not found: {root}. Fix: put LaSOT there (<class>/<class>-<n>/img, "
            f"groundtruth.txt, full_occlusion.txt, out_of_view.txt; see {LASOT_URL}), or "
            f"generate the synthetic set with `python -m mosam_train.data.synthetic_tracking "
            f"--root {root}`.",
            root,
        )
    if split == "all":
        names = _all_names(root)
        if not names:
            raise DataError(
                f"{root}: no <class>/<class>-<n>/groundtruth.txt found. Fix: point data.root "
                f"at the folder holding the class folders.",
                root,
            )
    elif split in SPLIT_FILES:
        path = root / SPLIT_FILES[split]
        if not path.is_file():
            raise DataError(
                f"{path}: missing; it lists the {split} sequences. Fix: copy it from the "
                f"LaSOT toolkit (sequence_evaluation_config/{SPLIT_FILES[split]}, {LASOT_URL}), "
                f"or pass data.split=all to evaluate every sequence under {root}.",
                path,
            )
        names = read_list(path)
    else:
        raise ValueError(f"LaSOT split {split!r}: use test, train or all")
    names = keep_subset(names, subset)
    return read_each(names, lambda n: read_lasot_sequence(root, n), errors)
