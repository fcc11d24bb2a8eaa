"""What training clips hold: how many let an object vanish and come back, and after how long.

    python -m mosam_train.bench.clips experiment=mosam_long [--clips 400] [TRAIN OVERRIDES ...]

Why: a memory rule and a visibility signal learn what to keep while an object is hidden,
and where to find it again, only from clips in which an object is hidden and re-emerges.
This draws clips exactly as a training run's DataLoader does (`ClipDataset.__getitem__`
of the experiment's datamodule: its clip length, skips, object choice, augmentation and
`data.event_prob`; optical flow off, which changes no draw) and reports, per delivered clip,
whether a chosen object re-emerges in it and the longest absence before a return, in video
frames. The last line on stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from rich.console import Console
from rich.progress import track
from rich.table import Table

from mosam_train.startup import compose_config

#: absence lengths (video frames before the return) the report counts clips at or above
LENGTHS = (1, 8, 20)


def longest_return(presence: np.ndarray, frames: Sequence[int]) -> int:
    """The longest absence, in video frames, after which an object of the clip is seen
    again: presence bool [T, O] on clip frames `frames` (video indices); 0 if none."""
    best = 0
    for column in np.asarray(presence, dtype=bool).T:
        last_seen, missed = None, False
        for t, seen in zip(frames, column, strict=True):
            if not seen:
                missed = True
                continue
            if last_seen is not None and missed:
                best = max(best, t - last_seen - 1)
            last_seen, missed = t, False
    return best


def clip_events(overrides: Sequence[str], clips: int) -> dict[str, float]:
    """The share of `clips` training clips with a return after an absence of at least
    each of `LENGTHS` frames (1: any re-emergence)."""
    cfg = compose_config(
        "train",
        [f"paths.root_dir={Path.cwd()}", *overrides, "data.flow=null", "data.num_workers=0"],
    )
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")
    dataset = datamodule.train_dataset
    returns = []
    for i in track(range(clips), description="drawing clips", transient=True):
        dataset.set_epoch(i // len(dataset))
        sample = dataset[i % len(dataset)]
        presence = sample.masks.flatten(2).any(2).numpy()  # [T, N]; all present on frame 0
        returns.append(longest_return(presence, sample.frame_indices))
    r = np.array(returns)
    return {"clips": clips, **{f"return_after_{n}": float((r >= n).mean()) for n in LENGTHS}}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mosam_train.bench.clips", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--clips", type=int, default=400, help="clips to draw")
    parser.add_argument("overrides", nargs="*", help="train.py overrides, e.g. experiment=...")
    args = parser.parse_intermixed_args(argv)
    result = clip_events(args.overrides, args.clips)
    table = Table(title=f"{args.clips} training clips: {' '.join(args.overrides)}")
    table.add_column("an object returns after an absence of")
    table.add_column("share of clips", justify="right")
    for n in LENGTHS:
        label = "any length" if n == 1 else f">= {n} frames"
        table.add_row(label, f"{result[f'return_after_{n}']:.1%}")
    Console().print(table)
    print(json.dumps({"overrides": list(args.overrides), **result}))


if __name__ == "__main__":
    main()
