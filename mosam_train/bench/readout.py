"""How well a model holds a mask when nothing moves: each video's first frame repeated,
prompted with its true masks, and J of every later frame against those same masks.

    python -m mosam_train.bench.readout ckpt=PATH data=synthetic_long [sam2=micro]
        [EVAL OVERRIDES ...] [--frames 1,2,5,10,30]

Why: a base that loses its objects on moving videos may fail to follow the motion, or may
fail to read its memory back into a mask at all. On a still video the right answer on every
frame is the prompt's mask (copying it scores J = 1), so what a model loses here it loses
without any motion, drift or absence. It runs what `eval.py` runs with the same
overrides (`mask_propagator`: the checkpoint or `baseline=`, the `tracker=` rule, the eval
device) on the videos `eval.py` would read (`data.test_split=null` for the val split,
where settings are chosen; `data.val_max_videos` keeps the first ones); the objects are
those present on the first frame. The last line on stdout is one JSON object: per k the
mean J and the number of objects.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console
from rich.progress import track
from rich.table import Table

from mosam_train.data.video import VideoRecord
from mosam_train.inference.sources import ChunkedFrames
from mosam_train.inference.vos import FramePrediction, Propagator
from mosam_train.metrics.jf import jaccard
from mosam_train.tasks.inference_model import autocast, compose_eval, mask_propagator
from mosam_train.tasks.vos_evaluation import evaluated_records

DEFAULT_FRAMES = (1, 2, 5, 10, 30)


def still_source(record: VideoRecord, num_frames: int, image_size: int) -> ChunkedFrames:
    """`record`'s first frame, `num_frames` times."""
    first = record.load_frame(0)
    return ChunkedFrames(
        lambda ts: np.stack([first] * len(ts)),
        num_frames,
        (record.height, record.width),
        image_size,
        name=f"video {record.source}, frame 0 repeated",
    )


def readout_j(
    propagator: Propagator, record: VideoRecord, image_size: int, frames: Sequence[int]
) -> dict[int, list[float]]:
    """{k: J at frame k of each object present on `record`'s first frame}, its first frame
    repeated past the last k and prompted with the ground truth there."""
    masks = record.load_masks(0)
    present = [(k, oid) for k, oid in enumerate(record.object_ids) if masks[k].any()]
    found: dict[int, list[float]] = {k: [] for k in frames}
    if not present:
        return found
    prompts = {0: {oid: masks[k] for k, oid in present}}
    wanted = set(frames)
    source = still_source(record, max(frames) + 1, image_size)
    for result in propagator.propagate(source, prompts):
        if result.frame_idx not in wanted:
            continue
        scored = FramePrediction(result, record.object_ids, record.overlapping).scored
        for k, _ in present:
            found[result.frame_idx].append(jaccard(scored[k], masks[k]))
    return found


def readout(cfg: DictConfig, frames: Sequence[int]) -> dict[int, list[float]]:
    """`readout_j` over the videos `eval.py` would read under `cfg`."""
    propagator, image_size = mask_propagator(cfg, "bench.readout")
    datamodule = instantiate(cfg.data, _convert_="all")
    records = evaluated_records(datamodule, cfg.data.get("val_max_videos"))
    found: dict[int, list[float]] = {k: [] for k in frames}
    for record in track(records, description="still videos"):
        with autocast(cfg):
            for k, js in readout_j(propagator, record, image_size, frames).items():
                found[k] += js
    return found


def _frames(text: str) -> list[int]:
    values = sorted({int(v) for v in text.split(",") if v})
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: frames after the first, e.g. 1,5,10")
    return values


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mosam_train.bench.readout",
        description="J of a model on still videos (each video's first frame repeated, "
        "prompted with its true masks); other arguments (ckpt=..., data=..., sam2=...) are "
        "eval.py's overrides.",
    )
    parser.add_argument("--frames", type=_frames, default=list(DEFAULT_FRAMES))
    args, overrides = parser.parse_known_args(argv)
    found = readout(compose_eval(overrides), args.frames)
    table = Table(title="J on a still video, k frames after the prompt")
    for column in ("frame", "objects", "mean J"):
        table.add_column(column, justify="right")
    summary = {}
    for k, js in found.items():
        mean = float(np.mean(js)) if js else float("nan")
        summary[str(k)] = {"J": mean, "objects": len(js)}
        table.add_row(str(k), str(len(js)), f"{mean:.3f}")
    Console().print(table)
    print(json.dumps({"J_at": summary}))


if __name__ == "__main__":
    main()
