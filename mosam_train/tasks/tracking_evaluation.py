"""`python eval.py task=tracking data=tracking/<lasot | got10k | synthetic_lasot>`: track
every sequence from its first-frame box, write the result files the benchmark's toolkit
or server reads, and score them as the toolkits do (`metrics.tracking`).

Each sequence's result file and its row of per_sequence.csv are written when it finishes;
a rerun in the same directory (`hydra.run.dir=...`) skips the finished sequences, and the
final figures are recomputed from all result files.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.progress import Progress

from mosam_train.data.formats.tracking import TrackingSequence, read_boxes, read_tracking
from mosam_train.data.synthetic_tracking import ensure_synthetic_tracking
from mosam_train.inference import tracking as trk
from mosam_train.metrics import reports
from mosam_train.metrics.tracking import benchmark_report
from mosam_train.tasks.inference_model import autocast, inference_propagator
from mosam_train.tasks.results import PLOTS_DIR, PREDICTIONS_DIR, ZIP_FILE, ResultsDir

log = logging.getLogger(__name__)

ROWS_FILE = "per_sequence.csv"


def evaluate_tracking(cfg: DictConfig) -> dict[str, Any]:
    """Returns the headline `score` (LaSOT: success AUC, GOT-10k: AO; percent; NaN where
    the ground truth is withheld) with the other figures."""
    data = cfg.data
    if not data.get("benchmark"):
        raise ValueError(
            "task=tracking needs a tracking data config, e.g. data=tracking/synthetic_lasot, "
            "data=tracking/lasot or data=tracking/got10k (configs/data/tracking/); the "
            "selected data config is a VOS one."
        )
    bench, split = str(data.benchmark), str(data.split)
    if data.get("synthetic"):
        ensure_synthetic_tracking(data.root, seed=int(data.get("synthetic_seed") or 0))
    sequences = read_tracking(bench, data.root, split, subset=data.get("subset"))
    sequences = sequences[: data.get("max_sequences")]
    fields = trk.LASOT_FIELDS if bench == "lasot" else trk.GOT10K_FIELDS
    results = ResultsDir(cfg.paths.output_dir, ROWS_FILE, fields, key="sequence")
    pred_root = results.root / PREDICTIONS_DIR
    done = results.done()
    todo = [s for s in sequences if s.name not in done]
    tracker = _box_tracker(cfg) if todo else None  # before any file: a bad ckpt stops here
    results.guard(cfg)

    with Progress() as progress:
        seq_task = progress.add_task(
            f"{bench} {split}", total=len(sequences), completed=len(sequences) - len(todo)
        )
        frame_task = progress.add_task("frames", total=None)
        for seq in todo:
            progress.update(seq_task, description=f"{bench} {split}: {seq.name}")
            progress.reset(frame_task, total=seq.num_frames)
            with autocast(cfg):
                path, fps = trk.run_sequence(
                    tracker, seq, bench, pred_root,
                    on_frame=lambda _t: progress.advance(frame_task),
                )  # fmt: skip
            row = {**trk.score_sequence(bench, seq, path), "fps": fps}
            results.finish(seq.name, [{k: _cell(v) for k, v in row.items()}])
            progress.advance(seq_task)

    meta: dict[str, Any] = {
        "benchmark": bench,
        "data": str(data.root),
        "split": split,
        "ckpt": cfg.get("ckpt"),
        "baseline": cfg.get("baseline"),
        "num_sequences": len(sequences),
        "predictions": PREDICTIONS_DIR,
        "per_sequence": ROWS_FILE,
    }
    scored = [s for s in sequences if s.has_gt]
    if not scored:
        return _submission_only(sequences, meta, results.root)
    preds = {s.name: read_boxes(trk.result_file(bench, pred_root, s.name)) for s in scored}
    name = cfg.get("baseline") or Path(str(cfg.get("ckpt") or "model")).stem
    title = f"{Path(str(data.root)).name} {split}"
    report = benchmark_report(bench, scored, preds, results.root / PLOTS_DIR, name, title)
    result, counts = report["figures"], report["counts"]
    plots = [p.relative_to(results.root).as_posix() for p in report["plots"]]
    (results.root / "metrics.json").write_text(
        reports.dumps(
            {
                **result, "gt_available": True, "units": "percent (curves: fractions)",
                **counts, **meta, "plots": plots, "thresholds": report["thresholds"],
                "curves": report["curves"],
            },
            indent=2,
        )
    )  # fmt: skip
    figures = ", ".join(f"{k} {v:.2f}" for k, v in result.items() if k != "score")
    log.info("%s %s: %s on %d sequences", bench, split, figures, counts["num_sequences"])
    return {**result, **counts, "gt_available": True}


def _box_tracker(cfg: DictConfig) -> trk.BoxTracker:
    """The model prompted with the first-frame box, or `baseline=first_box` (the first box
    on every frame)."""
    if cfg.get("baseline") == "first_box":
        return trk.FirstBoxTracker()
    if cfg.get("baseline"):
        raise ValueError(
            f"baseline={cfg.baseline}: unknown for task=tracking; use first_box or leave it null"
        )
    if not cfg.get("ckpt"):
        raise ValueError("eval.py task=tracking needs ckpt=PATH (or baseline=first_box)")
    return trk.MaskTracker(*inference_propagator(cfg))


def _cell(value: Any) -> Any:
    return f"{value:.4f}" if isinstance(value, float) else value


def _submission_only(
    sequences: list[TrackingSequence], meta: dict[str, Any], out_dir: Path
) -> dict[str, Any]:
    """A split whose ground truth is withheld: the zip the benchmark's server takes."""
    pred_root = out_dir / PREDICTIONS_DIR
    with zipfile.ZipFile(out_dir / ZIP_FILE, "w", zipfile.ZIP_DEFLATED) as zf:
        for seq in sequences:
            for f in sorted((pred_root / seq.name).glob("*.txt")):
                zf.write(f, f.relative_to(pred_root).as_posix())
    note = (
        f"{meta['benchmark']} {meta['split']} has no ground truth beyond the first frame: "
        f"scores come from the benchmark's server; upload {ZIP_FILE}"
    )
    result = {"score": float("nan"), "gt_available": False, "note": note}
    (out_dir / "metrics.json").write_text(
        reports.dumps({**result, "submission": ZIP_FILE, **meta}, indent=2)
    )
    log.info("%s (in %s)", note, out_dir)
    return result
