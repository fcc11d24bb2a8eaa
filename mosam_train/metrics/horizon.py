"""How long tracking holds by itself: J k frames after the first frame, over the objects
that have been visible on every frame up to k (nothing has hidden them yet).

    python -m mosam_train.metrics.horizon GT_ROOT PRED_ROOT [--frames 1,5,10,20,30]
        [--split-file FILE]

Why: J&F mixes a base's own drift with what absences and look-alikes do to it. A base whose
J falls over frames on which its objects stay in view loses them by itself, and a memory
rule cannot be judged on it: a rule only changes which past frames the model reads, and
the always-kept first frame is already the best of them. Layouts as ``metrics.score
--layout davis`` (a DAVIS 2017 root or a folder of video folders); the videos are those of
the split for which PRED_ROOT has a folder (``eval.py`` may predict only the first few).
The last line on stdout is one JSON object: per k the mean J and the number of objects.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from mosam_train.errors import DataError
from mosam_train.metrics.jf import jaccard
from mosam_train.metrics.score import PngVideo, prediction_loader, resolve

DEFAULT_FRAMES = (1, 5, 10, 20, 30)


def visible_run_j(gt: np.ndarray, pred: np.ndarray, frames: Sequence[int]) -> dict[int, float]:
    """One object's J at each of `frames` (indices after the first) that it reaches having
    been visible on every frame before; gt, pred: bool [T, H, W] from the first frame."""
    visible = gt.reshape(len(gt), -1).any(1)
    run = len(visible) if visible.all() else int(np.argmin(visible))  # frames 0..run-1 seen
    return {k: jaccard(pred[k], gt[k]) for k in frames if k < run}


def horizon(
    gt_root: Path, pred_root: Path, frames: Sequence[int], split_file: Path | None = None
) -> tuple[dict[int, list[float]], int]:
    """({k: J of every object reaching k}, videos read)."""
    gt_dir, names, _ = resolve(gt_root, "davis", split_file)
    names = [n for n in names if (pred_root / n).is_dir()]
    if not names:
        raise DataError(
            f"{pred_root}: no prediction folder for any video of {gt_root}. Fix: pass the "
            f"predictions folder of an eval.py run (<run dir>/predictions).",
            pred_root,
        )
    found: dict[int, list[float]] = {k: [] for k in frames}
    last = max(frames)
    for name in names:
        video = PngVideo(name, gt_dir / name)
        load = prediction_loader(video, pred_root / name)
        count = min(video.num_frames, last + 1)
        gt = np.stack([video.load_masks(t) for t in range(count)], 1)  # [O, T, H, W]
        pred = np.stack([load(t) for t in range(count)], 1)
        for k_obj in range(len(video.object_ids)):
            for k, value in visible_run_j(gt[k_obj], pred[k_obj], frames).items():
                found[k].append(value)
    return found, len(names)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m mosam_train.metrics.horizon", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("gt_root", type=Path)
    p.add_argument("pred_root", type=Path)
    p.add_argument("--frames", default=",".join(map(str, DEFAULT_FRAMES)),
                   help="comma list of frames after the first (default: %(default)s)")  # fmt: skip
    p.add_argument("--split-file", type=Path, default=None)
    a = p.parse_args(argv)
    try:
        frames = sorted({int(k) for k in a.frames.split(",") if k})
        if not frames or frames[0] < 1:
            raise ValueError
    except ValueError:
        raise SystemExit(f"error: --frames {a.frames!r}: give frame offsets >= 1") from None
    try:
        found, videos = horizon(a.gt_root, a.pred_root, frames, a.split_file)
    except DataError as e:
        raise SystemExit(f"error: {e}") from None
    table = Table(title=f"J after the first frame, objects visible throughout ({videos} videos)")
    for col in ("frame", "objects", "mean J"):
        table.add_column(col, justify="right")
    result = {}
    for k, values in found.items():
        mean = float(np.mean(values)) if values else None
        result[str(k)] = {"J": mean, "objects": len(values)}
        table.add_row(str(k), str(len(values)), "-" if mean is None else f"{mean:.3f}")
    Console(stderr=True).print(table)
    print(json.dumps({"videos": videos, "J_at": result}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
