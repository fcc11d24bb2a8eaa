"""Score a folder of predicted masks against ground truth, with the official toolkits' rules.

    python -m mosam_train.metrics.score GT_ROOT PRED_ROOT [--layout davis|sav]
        [--split-file FILE] [--csv PATH [--resume]] [--bound-th 0.008]

The last line on stdout is one JSON object: what ``jf.aggregate`` gives (``J``, ``F``,
``JF`` (0-100, pooled per object across videos), recall, decay, the diagnostics
``J_visible``, ``FP_absent``, ``latency_mean``, ``latency_median``, ``never_redetected``,
``num_events``, their 95% bootstrap intervals ``<key>_ci_low`` / ``<key>_ci_high``, and
per tag ``tag/<tag>/...`` where ``GT_ROOT/tags.json`` tags the videos, as the DAVIS
reader reads it), with the counts as ``objects`` and ``videos``, and what was scored. A
progress bar and notes go to stderr. ``--csv`` writes one row per (video, object) (the
columns of ``eval.py``'s ``per_object.csv``, raw 0-1 values, plus ``J``, ``F``, ``JF``
x100) as each video finishes; ``--resume`` keeps the rows of videos already in that file
(when it has today's columns) and scores only the others.

Layouts (predictions mirror the ground truth's file names):

- ``davis`` (default): ``GT_ROOT/<video>/<frame>.png`` palette PNGs of object ids, or a
  DAVIS 2017 root (``GT_ROOT/Annotations/480p/<video>/...``; the videos are then those of
  ``ImageSets/2017/val.txt`` unless ``--split-file`` is given, as the official tool's default
  ``--set val``). ``PRED_ROOT/<video>/<frame>.png``: palette (or grey) PNGs of object ids.
  Scored as ``davis2017-evaluation`` does: objects = labels of the first GT frame, every
  GT frame but the first and last, void 255 counted as background, boundary tolerance
  ``ceil(0.008 * diagonal)``, per-object pooling (``jf.DAVIS``).
- ``sav``: ``GT_ROOT/<video>/<object>/<frame>.png`` (SA-V val/test ``Annotations_6fps``, or
  its parent), one binary PNG per object and annotated frame, and the same under
  ``PRED_ROOT``. Scored as SA-V's ``sav_evaluator.py`` does (``jf.SAV``): each object on its
  own GT frames minus the first and last, from the first frame where its GT or prediction
  is non-empty; overlapping objects are fine.

Bad input is an error naming the file and the fix (exit status 1), where the official tools
print a message and exit with status 0: a missing prediction PNG, a predicted label that is
not an object of the first GT frame (255 included), an RGB or wrongly sized PNG. Unlike
``davis2017-evaluation``, an object absent from every scored prediction is scored (J = 0
where its GT is non-empty) rather than aborting the run, objects are the labels actually in
the first GT frame (ids need not be 1..K), and decay is correct past 256 frames. Only the
frames that are scored need a prediction. An SA-V object whose GT is empty on every scored
frame is left out with a note (SA-V's evaluator stops with an assertion there).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mosam_train.dataset_files import (
    VOID_LABEL,
    VideoTags,
    image_size,
    list_frames,
    read_label,
    read_list,
    read_tags,
)
from mosam_train.errors import DataError
from mosam_train.metrics import reports
from mosam_train.metrics.jf import (
    DAVIS,
    DEFAULT_BOUND_TH,
    ROW_FIELDS,
    SAV,
    ObjectScore,
    Protocol,
    aggregate,
    score_record,
)

__all__ = ["LAYOUTS", "PngVideo", "main", "prediction_loader", "resolve", "score_folders"]

LAYOUTS = ("davis", "sav")
CSV_FIELDS = (*ROW_FIELDS, "J", "F", "JF")


class PngVideo:
    """Ground truth read from one folder of PNGs (a DAVIS video, or one SA-V object): a
    ``jf.ScoredVideo``, so the folders are scored by the same ``score_record`` as validation
    and ``eval.py``."""

    def __init__(
        self,
        name: str,
        folder: Path,
        object_ids: Sequence[int] | None = None,
        binary: bool = False,
        tags: VideoTags = (),
    ) -> None:
        self.name = name
        self.folder = folder
        self.binary = binary
        # as `VideoRecord`: tags of every object, or per object id
        self.tags = () if isinstance(tags, dict) else tuple(tags)
        self.object_tags = tags if isinstance(tags, dict) else None
        pngs = list_frames(folder, (".png",))
        if not pngs:
            raise DataError(
                f"{folder}: no .png ground truth. Fix: point GT_ROOT at the annotation folders.",
                folder,
            )
        self.stems = tuple(pngs)
        self.paths = tuple(pngs.values())
        self.num_frames = len(self.stems)
        self.annotated_frames = tuple(range(self.num_frames))
        self.height, self.width = image_size(self.paths[0])
        if object_ids is None:
            first = self.load_label(0)
            object_ids = [int(v) for v in np.unique(first) if v not in (0, VOID_LABEL)]
            if not object_ids:
                raise DataError(
                    f"{self.paths[0]}: no object labelled in the first ground-truth frame "
                    f"(objects are its labels other than 0 and {VOID_LABEL}). Fix: label the "
                    f"objects there, or leave '{name}' out with --split-file.",
                    self.paths[0],
                )
        self.object_ids = tuple(object_ids)

    def load_label(self, t: int) -> np.ndarray:
        label = read_label(self.paths[t], (self.height, self.width))
        if self.binary:
            _check_binary(label, self.paths[t])
        return label

    def load_masks(self, t: int) -> np.ndarray:
        label = self.load_label(t)
        if self.binary:
            return (label > 0)[None]
        ids = np.asarray(self.object_ids, dtype=np.uint8)
        return label[None] == ids[:, None, None]


def _check_binary(label: np.ndarray, path: Path) -> None:
    values = np.unique(label)
    if values.size > 2 or (values.size == 2 and values[0] != 0):
        raise DataError(
            f"{path}: holds values {values.tolist()[:8]}; the SA-V layout has one binary mask "
            f"per object and frame (0 = background, any one other value = the object). Fix: "
            f"write <video>/<object>/<frame>.png with one object each, or use --layout davis "
            f"for label maps.",
            path,
        )


def prediction_loader(gt: PngVideo, pred_dir: Path) -> Callable[[int], np.ndarray]:
    """Frame index -> bool [O, H, W] read from `pred_dir`, checked against the GT."""
    allowed = {0, *gt.object_ids}

    def load(t: int) -> np.ndarray:
        path = pred_dir / f"{gt.stems[t]}.png"
        if not path.is_file():
            raise DataError(
                f"{path}: missing prediction for frame {gt.stems[t]} of '{gt.name}' (the ground "
                f"truth {gt.paths[t]} is scored). Fix: write one PNG per annotated frame, named "
                f"like the ground truth, under {pred_dir}.",
                path,
            )
        label = read_label(path, (gt.height, gt.width))
        if gt.binary:
            _check_binary(label, path)
            return (label > 0)[None]
        extra = sorted(set(np.unique(label).tolist()) - allowed)
        if extra:
            raise DataError(
                f"{path}: label(s) {extra} are not objects of '{gt.name}' (its first ground-"
                f"truth frame {gt.paths[0]} has objects {list(gt.object_ids)}). Fix: write only "
                f"those ids, and 0 for background (255 is not a prediction label).",
                path,
            )
        ids = np.asarray(gt.object_ids, dtype=np.uint8)
        return label[None] == ids[:, None, None]

    return load


def resolve(gt_root: Path, layout: str, split_file: Path | None) -> tuple[Path, list[str], str]:
    """(folder holding the GT videos, video names, where the names came from)."""
    if not gt_root.is_dir():
        raise DataError(f"{gt_root}: no such folder. Fix: pass the ground-truth root.", gt_root)
    gt_dir, default_split = gt_root, None
    if layout == "davis" and (gt_root / "Annotations" / "480p").is_dir():
        gt_dir = gt_root / "Annotations" / "480p"
        default_split = gt_root / "ImageSets" / "2017" / "val.txt"
    elif layout == "sav" and (gt_root / "Annotations_6fps").is_dir():
        gt_dir = gt_root / "Annotations_6fps"
    if split_file is not None:
        names, source = read_list(split_file), str(split_file)
    elif default_split is not None and default_split.is_file():
        names, source = read_list(default_split), str(default_split)
    else:
        names = sorted(p.name for p in gt_dir.iterdir() if p.is_dir())
        source = f"every folder in {gt_dir}"
    if not names:
        raise DataError(
            f"{gt_dir}: no video to score ({source}). Fix: check GT_ROOT and --split-file.",
            gt_dir,
        )
    missing = [n for n in names if not (gt_dir / n).is_dir()]
    if missing:
        raise DataError(
            f"{gt_dir / missing[0]}: ground truth of video '{missing[0]}' is missing "
            f"({len(missing)} of {len(names)} videos of {source}). Fix: correct the split or "
            f"GT_ROOT.",
            gt_dir / missing[0],
        )
    return gt_dir, names, source


def _pred_video_dir(pred_root: Path, video: str) -> Path:
    folder = pred_root / video
    if not folder.is_dir():
        raise DataError(
            f"{folder}: no predictions for video '{video}'. Fix: write PRED_ROOT/<video>/... "
            f"for every video scored, or list only the predicted videos with --split-file.",
            folder,
        )
    return folder


def _object_id(folder: Path) -> int:
    if not folder.name.isdigit():
        raise DataError(
            f"{folder}: SA-V object folders are numbers (000, 001, ...). Fix: rename it, or use "
            f"--layout davis for <video>/<frame>.png label maps.",
            folder,
        )
    return int(folder.name)


def score_video(
    gt_dir: Path,
    pred_root: Path,
    video: str,
    layout: str,
    bound_th: float,
    notes: list[str],
    tags: VideoTags = (),
) -> list[ObjectScore]:
    """The rows of one video; `notes` collects what was left out and why."""
    pred_dir = _pred_video_dir(pred_root, video)
    if layout == "davis":
        gt = PngVideo(video, gt_dir / video, tags=tags)
        return _score(gt, prediction_loader(gt, pred_dir), DAVIS, bound_th)
    rows = []
    folders = sorted(p for p in (gt_dir / video).iterdir() if p.is_dir())
    if not folders:
        raise DataError(
            f"{gt_dir / video}: no object folder (<object>/<frame>.png). Fix: point GT_ROOT at "
            f"SA-V's Annotations_6fps, or use --layout davis.",
            gt_dir / video,
        )
    for folder in folders:
        gt = PngVideo(video, folder, object_ids=[_object_id(folder)], binary=True, tags=tags)
        obj_rows = _score(gt, prediction_loader(gt, pred_dir / folder.name), SAV, bound_th)
        if not obj_rows:
            notes.append(f"{folder}: left out, its ground truth is empty on every scored frame")
        rows += obj_rows
    return rows


def _score(
    gt: PngVideo, pred: Callable[[int], np.ndarray], protocol: Protocol, bound_th: float
) -> list[ObjectScore]:
    try:
        return score_record(gt, pred, bound_th=bound_th, protocol=protocol)
    except ValueError as e:  # too few frames for the protocol
        raise DataError(
            f"{gt.folder}: {e}. Fix: leave this video out with --split-file.", gt.folder
        ) from None


def _read_csv(path: Path) -> tuple[list[ObjectScore], list[str]]:
    """Rows of a previous run and the columns it lacks (then no row: a file from before
    those columns existed is scored again); a line cut short by a crash drops its video."""
    rows, broken = [], set()
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_FIELDS if c not in (reader.fieldnames or ())]
        if missing:
            return [], missing
        for r in reader:
            try:
                rows.append(ObjectScore.from_row(r))
            except (KeyError, TypeError, ValueError):
                if r.get("video"):
                    broken.add(r["video"])
    return [r for r in rows if r.video not in broken], []


def _csv_line(rows: Sequence[ObjectScore]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    for r in rows:
        j, f = 100 * r.j_mean, 100 * r.f_mean
        writer.writerow({**r.to_row(), "J": j, "F": f, "JF": (j + f) / 2})
    return buf.getvalue()


class _CsvSink:
    """Appends each video's rows in one write, flushed to disk, so a crash loses at most
    the video being scored."""

    def __init__(self, path: Path, keep: Sequence[ObjectScore]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = path.open("w", newline="")
        self.f.write(",".join(CSV_FIELDS) + "\n")
        self.write(keep)

    def write(self, rows: Sequence[ObjectScore]) -> None:
        if rows:
            self.f.write(_csv_line(rows))
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


def score_folders(
    gt_root: str | Path,
    pred_root: str | Path,
    layout: str = "davis",
    split_file: str | Path | None = None,
    csv_path: str | Path | None = None,
    resume: bool = False,
    bound_th: float = DEFAULT_BOUND_TH,
    console: Console | None = None,
) -> dict[str, float | int | str]:
    """Score PRED_ROOT against GT_ROOT; the dict the CLI prints (see the module docstring)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}: use one of {LAYOUTS}")
    console = console or Console(stderr=True, soft_wrap=True)
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    if not pred_root.is_dir():
        raise DataError(f"{pred_root}: no such folder. Fix: pass the predictions root.", pred_root)
    gt_dir, videos, source = resolve(
        gt_root, layout, None if split_file is None else Path(split_file)
    )
    console.print(f"{len(videos)} videos from {source}; ground truth in {gt_dir}", highlight=False)
    tags = read_tags(gt_root)
    done: list[ObjectScore] = []
    if resume and csv_path is not None and Path(csv_path).is_file():
        wanted = set(videos)
        kept, missing = _read_csv(Path(csv_path))
        done = [r for r in kept if r.video in wanted]
        if missing:
            console.print(f"{csv_path} lacks the columns {missing} (an older version wrote it): "
                          f"scoring every video again", highlight=False)  # fmt: skip
        else:
            console.print(f"resuming: {len({r.video for r in done})} videos read from {csv_path}")
    sink = None if csv_path is None else _CsvSink(Path(csv_path), done)
    rows, notes = list(done), []
    todo = [v for v in videos if v not in {r.video for r in done}]
    try:
        for video in _progress(todo, console):
            video_rows = score_video(
                gt_dir, pred_root, video, layout, bound_th, notes, tags.get(video, ())
            )
            rows += video_rows
            if sink is not None:
                sink.write(video_rows)
    finally:
        if sink is not None:
            sink.close()
    for note in notes:
        console.print(note, highlight=False, soft_wrap=True)
    result = aggregate(rows)
    out: dict[str, float | int | str] = {
        k: v for k, v in result.items() if k not in ("num_objects", "num_videos")
    }
    out.update(
        objects=result["num_objects"],
        videos=result["num_videos"],
        layout=layout,
        protocol=(DAVIS if layout == "davis" else SAV).name,
        gt=str(gt_dir),
        pred=str(pred_root),
    )
    return out


def _progress(videos: Sequence[str], console: Console) -> Iterator[str]:
    columns = (
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("", total=len(videos))
        for video in videos:
            progress.update(task, description=video)
            yield video
            progress.advance(task)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mosam_train.metrics.score",
        description="J&F of a prediction folder against ground truth (DAVIS 2017 / SA-V rules).",
    )
    parser.add_argument("gt_root", type=Path, help="ground-truth root (see --layout)")
    parser.add_argument("pred_root", type=Path, help="predictions, mirroring the ground truth")
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="davis",
        help="davis: <video>/<frame>.png label maps (or a DAVIS root); "
        "sav: <video>/<object>/<frame>.png binary masks",
    )
    parser.add_argument("--split-file", type=Path, help="videos to score, one per line")
    parser.add_argument("--csv", type=Path, help="write per-object rows here as videos finish")
    parser.add_argument(
        "--resume", action="store_true", help="keep the rows of videos already in --csv"
    )
    parser.add_argument(
        "--bound-th",
        type=float,
        default=DEFAULT_BOUND_TH,
        help="boundary tolerance: fraction of the diagonal (< 1) or pixels (>= 1)",
    )
    args = parser.parse_args(argv)
    if args.resume and args.csv is None:
        parser.error("--resume needs --csv")
    console = Console(stderr=True, soft_wrap=True)  # long paths stay on one line
    try:
        out = score_folders(
            args.gt_root,
            args.pred_root,
            layout=args.layout,
            split_file=args.split_file,
            csv_path=args.csv,
            resume=args.resume,
            bound_th=args.bound_th,
            console=console,
        )
    except DataError as e:
        console.print(f"[red]error[/red]: {e}", highlight=False, soft_wrap=True)
        return 1
    console.print(
        f"J&F {out['JF']:.1f} [{out['JF_ci_low']:.1f}, {out['JF_ci_high']:.1f}]  "
        f"J {out['J']:.1f}  F {out['F']:.1f}  ({out['objects']} objects, {out['videos']} "
        f"videos); J visible {out['J_visible']:.1f}, FP absent {out['FP_absent']:.1f}%, "
        f"re-detection latency {out['latency_mean']:.1f} frames, never re-detected "
        f"{out['never_redetected']:.1f}% ({out['num_events']} re-emergences)",
        highlight=False,
    )
    print(reports.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
