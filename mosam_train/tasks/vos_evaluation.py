"""`python eval.py ckpt=... [data=...]`: segment every video of the evaluated split, write
the benchmark's submission layout and, where ground truth exists, J&F.

Files are written per frame; a video counts as done (its rows in per_object.csv, its name
in done_videos.txt) once all its files exist, so a rerun in the same directory
(`hydra.run.dir=...`) skips those videos and ends with the same files and numbers as an
uninterrupted run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.progress import Progress

from mosam_train.data.datamodule import VOSDataModule
from mosam_train.data.video import VideoRecord
from mosam_train.inference.vos import (
    FramePrediction,
    Propagator,
    has_ground_truth,
    run_record,
    unscorable_videos,
)
from mosam_train.inference.writers import SubmissionWriter, make_writer
from mosam_train.metrics import reports
from mosam_train.metrics.jf import ROW_FIELDS, ObjectScore, aggregate
from mosam_train.metrics.plots import plot_video, plot_video_scores
from mosam_train.tasks.inference_model import autocast, mask_propagator
from mosam_train.tasks.results import PLOTS_DIR, PREDICTIONS_DIR, ZIP_FILE, ResultsDir

log = logging.getLogger(__name__)

ROWS_FILE = "per_object.csv"


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """J&F of `cfg.ckpt` (or `baseline=copy_first`) on the datamodule's test source
    (`VOSDataModule.test_source`); returns the aggregate (`JF` NaN where the benchmark
    withholds ground truth)."""
    predictor, image_size = mask_propagator(cfg, "eval.py")
    datamodule: VOSDataModule = instantiate(cfg.data, _convert_="all")
    source = datamodule.test_source
    fmt, root, split = source["format"], source["root"], source["split"]
    records = evaluated_records(datamodule, cfg.data.get("val_max_videos"))
    results = ResultsDir(cfg.paths.output_dir, ROWS_FILE, ROW_FIELDS, key="video")
    results.guard(cfg)
    done = results.done()
    firsts = {r.name: r.first_appearance() for r in records}
    unscorable = unscorable_videos(records, firsts)  # too short to score: warned, named
    with_gt = {
        r.name for r in records if r.name not in unscorable and has_ground_truth(r, firsts[r.name])
    }
    out_dir = results.root
    writer = make_writer(fmt, out_dir / PREDICTIONS_DIR, out_dir / ZIP_FILE, bool(with_gt))
    plotted = _plotted_videos(cfg, records)
    overlay = (cfg.get("plots") or {}).get("overlay")

    with Progress() as progress:
        todo = [r for r in records if r.name not in done]
        task = progress.add_task(
            f"{fmt} {split}", total=len(records), completed=len(records) - len(todo)
        )
        for record in todo:
            progress.update(task, description=f"{fmt} {split}: {record.name}")
            with autocast(cfg):
                rows = _segment(predictor, image_size, record, firsts[record.name], writer,
                                scored=record.name in with_gt,
                                plots=out_dir / PLOTS_DIR if record.name in plotted else None,
                                overlay=overlay)  # fmt: skip
            results.finish(record.name, (r.to_row() for r in rows))
            progress.advance(task)

    submission = writer.finish(records)
    meta = {
        "ckpt": cfg.get("ckpt"),
        "baseline": cfg.get("baseline"),
        "tracker": None
        if cfg.get("baseline")
        else OmegaConf.to_container(cfg.tracker, resolve=True),
        "format": fmt,
        "data": root,
        "split": split,
        "layout": writer.layout,
        # relative to the output directory: the file does not change when the folder moves
        "predictions": writer.root.relative_to(out_dir).as_posix(),
        "submission": None if submission is None else submission.relative_to(out_dir).as_posix(),
        "num_videos_without_gt": len(records) - len(with_gt) - len(unscorable),
        "unscorable_videos": unscorable,
    }
    if with_gt:
        rows = [ObjectScore.from_row(r) for r in results.rows()]
        return _report_scores(rows, meta, out_dir)
    return _report_without_scores(len(records), meta, out_dir)


def evaluated_records(datamodule: VOSDataModule, max_videos: int | None) -> list[VideoRecord]:
    """The videos `trainer.test` would see (`data.val_max_videos` keeps the first N)."""
    datamodule.prepare_data()
    datamodule.setup("test")
    return list(datamodule.test_records)[:max_videos]


def _plotted_videos(cfg: DictConfig, records: list[VideoRecord]) -> set[str]:
    """`plots.videos`: the first N videos, or a list of names."""
    chosen = (cfg.get("plots") or {}).get("videos") or 0
    if isinstance(chosen, int):
        return {r.name for r in records[:chosen]}
    return set(chosen)


def _segment(
    predictor: Propagator,
    image_size: int,
    record: VideoRecord,
    first: dict[int, int],
    writer: SubmissionWriter,
    scored: bool,
    plots: Path | None,
    overlay: str | None,
) -> list[ObjectScore]:
    """One video: its submission files frame by frame, its plots, its rows (if `scored`)."""
    video = writer.video(record)
    preds: dict[int, np.ndarray] = {}

    def on_frame(frame: FramePrediction) -> None:
        video.write(frame)
        if plots is not None:
            preds[frame.frame_idx] = frame.scored

    rows = run_record(predictor, record, image_size, on_frame=on_frame, score=scored, first=first)
    video.close()
    if plots is not None and preds:
        plot_video(record, preds, plots, overlay)
    return rows


def _report_scores(rows: list[ObjectScore], meta: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    result: dict[str, Any] = aggregate(rows)
    title = f"{meta['format']} {meta['split']}"
    plot_video_scores(rows, out_dir / PLOTS_DIR / "jf_per_video.png", title=title)
    (out_dir / "metrics.json").write_text(
        reports.dumps({**result, "gt_available": True, **meta}, indent=2)
    )
    log.info(
        "J&F %.2f [95%% CI %.2f, %.2f] (J %.2f, F %.2f) on %d objects; J visible %.2f, FP "
        "absent %.1f%%, re-detection latency %.1f frames, never re-detected %.1f%% of %d "
        "re-emergences",
        result["JF"], result["JF_ci_low"], result["JF_ci_high"], result["J"], result["F"],
        result["num_objects"], result["J_visible"], result["FP_absent"],
        result["latency_mean"], result["never_redetected"], result["num_events"],
    )  # fmt: skip
    return result


def _report_without_scores(num_videos: int, meta: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    fmt, split = meta["format"], meta["split"]
    note = (
        f"{fmt} {split} has no ground truth beyond each object's first appearance: scores "
        f"come from the benchmark's server"
        + (f"; upload {meta['submission']}" if meta["submission"] else "")
        if meta["num_videos_without_gt"] or not meta["unscorable_videos"]
        else f"no video of {fmt} {split} can be scored (see unscorable_videos)"
    )
    (out_dir / "metrics.json").write_text(
        reports.dumps(
            {"gt_available": False, "num_videos": num_videos, "note": note, **meta}, indent=2
        )
    )
    log.info("%s (in %s)", note, out_dir)
    return {"JF": float("nan"), "gt_available": False, "num_videos": num_videos}
