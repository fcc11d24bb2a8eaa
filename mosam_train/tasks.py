"""What the entry points run: train(cfg), evaluate(cfg), predict(cfg).

Importing this module imports `sam2` (through the model builder), which resets Hydra's
global state before `@hydra.main` starts; so entry points import it at the top.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf
from rich.progress import Progress

from mosam_train import runs
from mosam_train.checkpoint_files import (
    CheckpointFileError,
    displaced_path,
    fingerprint,
    load_checkpoint_file,
    require_keys,
    sha256_of,
)
from mosam_train.data.datamodule import VOSDataModule
from mosam_train.data.video import VideoRecord
from mosam_train.inference.baselines import CopyFirstMask
from mosam_train.inference.vos import (
    FramePrediction,
    Propagator,
    has_ground_truth,
    run_record,
    unscorable_videos,
)
from mosam_train.inference.writers import make_writer
from mosam_train.lit.checkpoint_io import LIGHTNING_CHECKPOINT
from mosam_train.lit.module import MoSAMModule
from mosam_train.metrics.jf import ROW_FIELDS, ObjectScore, aggregate
from mosam_train.metrics.plots import (
    per_frame_j,
    plot_j_over_time,
    plot_video_scores,
    write_overlay,
)
from mosam_train.models.sam2_builder import load_sam2_weights
from mosam_train.preflight import check_train_setup

log = logging.getLogger(__name__)


def _instantiate_dict(cfg: DictConfig | None) -> list[Any]:
    if not cfg:
        return []
    return [instantiate(c, _convert_="all") for c in cfg.values() if c is not None]


def _loggers(cfg: DictConfig) -> list[Any]:
    """The configured loggers; in a resumed run, continuing the run's own logs."""
    if not cfg.get("logger"):
        return []
    extra: dict[str, dict[str, Any]] = {}
    if cfg.get("resume"):
        ckpt = load_checkpoint_file(cfg.ckpt_path, mmap=True, expected=LIGHTNING_CHECKPOINT)
        require_keys(ckpt, cfg.ckpt_path, ("global_step",), LIGHTNING_CHECKPOINT)
        step = int(ckpt["global_step"])
        out_dir = Path(cfg.paths.output_dir)
        extra = {
            k: runs.logger_resume_kwargs(c, out_dir, step)
            for k, c in cfg.logger.items()
            if c is not None
        }
    return [
        instantiate(c, _convert_="all", **extra.get(k, {}))
        for k, c in cfg.logger.items()
        if c is not None
    ]


def _finish_wandb(loggers: list[Any], exit_code: int) -> None:
    """End the job's wandb run: one run per multirun job."""
    for lg in loggers:
        if isinstance(lg, WandbLogger) and lg._experiment is not None:
            lg.experiment.finish(exit_code=exit_code)


def train(cfg: DictConfig) -> float | None:
    """Fit, export the best SAM 2 weights if asked, return `cfg.optimized_metric`.

    `resume=<run_dir>` continues that run (see `mosam_train.runs`); `ckpt_path=` starts
    this run from a checkpoint's full training state.
    """
    if cfg.get("resume"):
        from hydra.core.hydra_config import HydraConfig

        cfg = runs.resumed_config(cfg, list(HydraConfig.get().overrides.task))
        log.info("resuming %s from %s", cfg.resume, cfg.ckpt_path)
    check_train_setup(cfg)  # e.g. a GPU trainer without a GPU: stop before building anything
    L.seed_everything(cfg.seed, workers=True)
    datamodule: VOSDataModule = instantiate(cfg.data, _convert_="all")
    module: MoSAMModule = instantiate(cfg.model, _convert_="all")
    callbacks = _instantiate_dict(cfg.get("callbacks"))
    loggers = _loggers(cfg)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    try:
        trainer.fit(
            module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True
        )
    except BaseException:
        _finish_wandb(loggers, exit_code=1)  # marked failed; the next multirun job starts clean
        raise
    _finish_wandb(loggers, exit_code=0)
    if (cfg.get("export") or {}).get("name") and trainer.is_global_zero:
        _export(cfg, trainer, module)
    metric = trainer.callback_metrics.get(cfg.get("optimized_metric") or "")
    return None if metric is None else float(metric)


def _export(cfg: DictConfig, trainer: L.Trainer, module: MoSAMModule) -> None:
    """The best checkpoint's SAM 2 weights (official format) to `<run dir>/export/<name>`,
    and published to `export.publish_dir` only by a run that trained the job's whole
    schedule (`export.publish_min_steps`): a short trial never replaces the base that other
    experiments load. A different file already there is kept as `<stem>.<sha8>.pt`."""
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    source = (
        MoSAMModule.load_from_checkpoint(best, map_location="cpu", weights_only=True)
        if best
        else module
    )
    name = str(cfg.export.name)
    path = source.export_sam2_weights(Path(cfg.paths.output_dir) / "export" / name)
    log.info("SAM 2 weights of %s exported to %s", best or "the last step", path)
    if not cfg.export.get("publish_dir"):
        return
    target = Path(cfg.export.publish_dir) / name
    need = int(cfg.export.get("publish_min_steps") or 0)
    if trainer.global_step < need or trainer.fast_dev_run:
        log.warning(
            "%s left as it is: this run trained %d steps, the job's schedule is %d "
            "(export.publish_min_steps); its weights are in %s",
            target, trainer.global_step, need, path,
        )  # fmt: skip
        return
    new_sha = sha256_of(path)
    if target.is_file():
        old_sha = sha256_of(target)
        if old_sha == new_sha:
            return
        kept = displaced_path(target, old_sha)
        target.replace(kept)
        log.warning("%s held other weights: kept as %s", target, kept)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(path, tmp)
    tmp.replace(target)
    log.info("published %s (sha256 %s)", target, new_sha)


def load_module(cfg: DictConfig) -> MoSAMModule:
    """The model named by `cfg.ckpt`: a checkpoint of this project or official SAM 2 weights."""
    ckpt = Path(cfg.ckpt)
    if not ckpt.is_file():
        raise FileNotFoundError(
            f"ckpt={ckpt}: no such file. Pass a .ckpt of this project or a .pt."
        )
    # tensors and plain containers only: anything else is refused, naming the file
    raw = load_checkpoint_file(ckpt, mmap=True)
    if "state_dict" in raw and "hyper_parameters" in raw:
        try:  # the module refuses non-finite weights (on_load_checkpoint); name the file
            return MoSAMModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)
        except CheckpointFileError as e:
            raise CheckpointFileError(f"{ckpt}: {e}") from None
    module: MoSAMModule = instantiate(cfg.model, _convert_="all")
    load_sam2_weights(module.model.sam2, ckpt, variant=cfg.model.sam2.variant)
    return module


def _predictor(cfg: DictConfig) -> tuple[Propagator, int]:
    """The propagator to evaluate and the image size its frames are prepared at."""
    if cfg.get("baseline") == "copy_first":
        return CopyFirstMask(), int(cfg.model.sam2.image_size)
    if cfg.get("baseline"):
        raise ValueError(f"baseline={cfg.baseline}: unknown; use copy_first or leave it null")
    if not cfg.get("ckpt"):
        raise ValueError("eval.py needs ckpt=PATH (or baseline=copy_first)")
    module = load_module(cfg).eval().to(eval_device(cfg))
    module.inference_cfg = dict(cfg.model.inference)
    return module.propagator(), module.model.image_size


def eval_device(cfg: DictConfig) -> torch.device:
    """`device` from the config, else CUDA when there is one."""
    name = cfg.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _autocast(cfg: DictConfig) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, as SAM 2's `tools/vos_inference.py` runs; float32 elsewhere
    (`precision=32` forces float32 on CUDA too)."""
    device = eval_device(cfg)
    if device.type == "cuda" and str(cfg.get("precision") or "bf16") == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _plot_videos(cfg: DictConfig, records: list[VideoRecord]) -> set[str]:
    """`plots.videos`: the first N videos, or a list of names."""
    chosen = (cfg.get("plots") or {}).get("videos") or 0
    if isinstance(chosen, int):
        return {r.name for r in records[:chosen]}
    return set(chosen)


def _plot_video(
    record: VideoRecord, preds: dict[int, np.ndarray], out: Path, overlay: str | None
) -> None:
    """J over time per object and, with `overlay` (gif | mp4), the predictions blended
    into the frames."""
    ids = list(record.object_ids)
    gt = {t: record.load_masks(t) for t in record.annotated_frames if t in preds}
    if gt:
        frames = sorted(gt)
        voids = {t: record.load_void(t) for t in frames}
        present = {oid: [bool(gt[t][k].any()) for t in frames] for k, oid in enumerate(ids)}
        plot_j_over_time(
            frames, per_frame_j(gt, preds, ids, voids), out / f"{record.name}_j.png",
            title=record.name, present=present,
        )  # fmt: skip
    if overlay:
        ts = sorted(preds)
        labels = []
        for t in ts:  # colour k + 1 for the k-th object (later objects on top)
            lbl = np.zeros(preds[t].shape[1:], np.uint8)
            for k in range(len(ids)):
                lbl[preds[t][k]] = k + 1
            labels.append(lbl)
        write_overlay(record.load_frames(ts), labels, out / f"{record.name}.{overlay}")


def _records(datamodule: VOSDataModule, max_videos: int | None) -> list[VideoRecord]:
    """The videos `trainer.test` would see (`data.val_max_videos` keeps the first N)."""
    datamodule.prepare_data()
    datamodule.setup("test")
    return list(datamodule.test_records)[:max_videos]


def _read_rows(path: Path) -> list[ObjectScore]:
    if not path.is_file():
        return []
    with path.open() as f:
        return [ObjectScore.from_row(r) for r in csv.DictReader(f)]


def _append_rows(path: Path, rows: list[ObjectScore]) -> None:
    new = not path.is_file()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(r.to_row() for r in rows)


def _describe(weights: dict[str, Any] | None) -> str:
    if weights is None:
        return "no checkpoint (a baseline)"
    base = weights.get("sam2_base")
    return f"{weights['path']} (sha256 {weights['sha256']}" + (
        f"; frozen base {base['path']}, sha256 {base['sha256']})" if base else ")"
    )


def _check_resume(out_dir: Path, cfg: DictConfig) -> None:
    """Refuse to resume rows that another model file, dataset or setting produced.

    The checkpoint is compared by content (sha256, and its frozen base's for MoSAM), so a
    file replaced at the same path is caught; the settings by the resolved config."""
    weights = fingerprint(cfg.ckpt) if cfg.get("ckpt") and not cfg.get("baseline") else None
    path = out_dir / "eval_weights.json"
    if path.is_file():
        before = json.loads(path.read_text())
        if before != weights:
            raise ValueError(
                f"{out_dir} holds results of another model: {_describe(before)} then, "
                f"{_describe(weights)} now. Fix: evaluate into a new directory "
                f"(hydra.run.dir=...), or restore the file these results came from."
            )
    else:
        path.write_text(json.dumps(weights, indent=2))
    job = OmegaConf.to_container(cfg, resolve=True)
    job.pop("paths", None)
    job.pop("hydra", None)
    path = out_dir / "eval_config.json"
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != json.loads(json.dumps(job)):
            raise ValueError(
                f"{out_dir} holds results of another evaluation ({path} differs from this "
                f"run's settings). Fix: evaluate into a new directory (hydra.run.dir=...)."
            )
    else:
        path.write_text(json.dumps(job, indent=2))


DONE_FILE = "done_videos.txt"
ZIP_FILE = "submission.zip"
PREDICTIONS_DIR = "predictions"
PLOTS_DIR = "plots"


def _read_done(path: Path) -> set[str]:
    return set(path.read_text().splitlines()) if path.is_file() else set()


def _mark_done(path: Path, video: str) -> None:
    with path.open("a") as f:
        f.write(video + "\n")
        f.flush()
        os.fsync(f.fileno())


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Segment every video of the evaluated split, write the benchmark's submission layout
    and, where ground truth exists, per-object rows and metrics.json.

    The split is the datamodule's test split (`data.test_split`, default `data.val_split`;
    see `VOSDataModule.test_source`). Files are written per frame; a video is recorded as
    done (its rows in per_object.csv, its name in done_videos.txt) once all its files exist,
    so a rerun in the same directory (`hydra.run.dir=...`) skips those videos and ends with
    the same files and numbers as an uninterrupted run.
    """
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    predictor, image_size = _predictor(cfg)
    datamodule: VOSDataModule = instantiate(cfg.data, _convert_="all")
    source = datamodule.test_source
    fmt, root, split = source["format"], source["root"], source["split"]
    records = _records(datamodule, cfg.data.get("val_max_videos"))
    _check_resume(out_dir, cfg)
    rows_path, done_path = out_dir / "per_object.csv", out_dir / DONE_FILE
    rows = _read_rows(rows_path)
    done = _read_done(done_path) | {r.video for r in rows}
    firsts = {r.name: r.first_appearance() for r in records}
    unscorable = unscorable_videos(records, firsts)  # too short to score: warned, named
    with_gt = {
        r.name for r in records if r.name not in unscorable and has_ground_truth(r, firsts[r.name])
    }
    writer = make_writer(fmt, out_dir / PREDICTIONS_DIR, out_dir / ZIP_FILE, bool(with_gt))

    plots_cfg = cfg.get("plots") or {}
    plot_videos = _plot_videos(cfg, records)
    with Progress() as progress:
        todo = [r for r in records if r.name not in done]
        task = progress.add_task(
            f"{fmt} {split}", total=len(records), completed=len(records) - len(todo)
        )
        for record in todo:
            progress.update(task, description=f"{fmt} {split}: {record.name}")
            video = writer.video(record)
            scored = record.name in with_gt
            preds: dict[int, np.ndarray] | None = {} if record.name in plot_videos else None

            def on_frame(frame: FramePrediction, video: Any = video, preds: Any = preds) -> None:
                video.write(frame)
                if preds is not None:
                    preds[frame.frame_idx] = frame.scored

            with _autocast(cfg):
                video_rows = run_record(
                    predictor,
                    record,
                    image_size,
                    on_frame=on_frame,
                    score=scored,
                    first=firsts[record.name],
                )
            video.close()
            if preds:
                _plot_video(record, preds, out_dir / PLOTS_DIR, plots_cfg.get("overlay"))
            if video_rows:
                _append_rows(rows_path, video_rows)
                rows.extend(video_rows)
            _mark_done(done_path, record.name)
            progress.advance(task)

    submission = writer.finish(records)
    meta = {
        "ckpt": cfg.get("ckpt"),
        "baseline": cfg.get("baseline"),
        "memory": None if cfg.get("baseline") else cfg.model.inference.memory,
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
        result: dict[str, Any] = aggregate(rows)
        plot_video_scores(rows, out_dir / PLOTS_DIR / "jf_per_video.png", title=f"{fmt} {split}")
        (out_dir / "metrics.json").write_text(
            json.dumps({**result, "gt_available": True, **meta}, indent=2)
        )
        log.info(
            "J&F %.2f (J %.2f, F %.2f) on %d objects",
            result["JF"],
            result["J"],
            result["F"],
            result["num_objects"],
        )
        return result
    note = (
        f"{fmt} {split} has no ground truth beyond each object's first appearance: scores "
        f"come from the benchmark's server"
        + (f"; upload {meta['submission']}" if submission else "")
        if meta["num_videos_without_gt"] or not unscorable
        else f"no video of {fmt} {split} can be scored (see unscorable_videos)"
    )
    (out_dir / "metrics.json").write_text(
        json.dumps(
            {"gt_available": False, "num_videos": len(records), "note": note, **meta}, indent=2
        )
    )
    log.info("%s (in %s)", note, out_dir)
    return {"JF": float("nan"), "gt_available": False, "num_videos": len(records)}


# ------------------------------------------------------------------ box tracking (LaSOT, GOT-10k)

TRACKING_ROWS = "per_sequence.csv"


def _box_tracker(cfg: DictConfig) -> Any:
    """The tracker `task=tracking` runs: the model prompted with the first-frame box, or
    `baseline=first_box` (the first box on every frame)."""
    from mosam_train.inference.tracking import FirstBoxTracker, MaskTracker

    if cfg.get("baseline") == "first_box":
        return FirstBoxTracker()
    if cfg.get("baseline"):
        raise ValueError(
            f"baseline={cfg.baseline}: unknown for task=tracking; use first_box or leave it null"
        )
    propagator, image_size = _predictor(cfg)
    return MaskTracker(propagator, image_size)


def _read_tracking_rows(path: Path) -> dict[str, dict[str, str]]:
    """Rows already written, by sequence (a sequence rerun after a crash: its last row)."""
    if not path.is_file():
        return {}
    with path.open() as f:
        return {r["sequence"]: r for r in csv.DictReader(f)}


def _append_tracking_row(path: Path, fields: list[str], row: dict[str, Any]) -> None:
    new = not path.is_file()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if new:
            writer.writeheader()
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
        f.flush()
        os.fsync(f.fileno())


def evaluate_tracking(cfg: DictConfig) -> dict[str, Any]:
    """Box-tracking benchmark (`python eval.py task=tracking data=tracking/<lasot | got10k |
    synthetic_lasot>`): track every sequence from its first-frame box, write the result
    files the benchmark's toolkit or server reads, and score them as the toolkits do
    (`metrics.tracking`).

    Each sequence's result files and its row of per_sequence.csv are written when it
    finishes; a rerun in the same directory (`hydra.run.dir=...`) skips the sequences
    that have both, and the final figures are recomputed from all result files.
    Returns the headline `score` (LaSOT: success AUC, GOT-10k: AO; percent; NaN where the
    ground truth is withheld) with the other figures.
    """
    import zipfile

    from mosam_train.data.formats.tracking import read_boxes, read_tracking
    from mosam_train.data.synthetic_tracking import ensure_synthetic_tracking
    from mosam_train.inference import tracking as trk
    from mosam_train.metrics import tracking as tm

    data = cfg.data
    if not data.get("benchmark"):
        raise ValueError(
            "task=tracking needs a tracking data config, e.g. data=tracking/synthetic_lasot, "
            "data=tracking/lasot or data=tracking/got10k (configs/data/tracking/); the "
            "selected data config is a VOS one."
        )
    bench, split = str(data.benchmark), str(data.split)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if data.get("synthetic"):
        ensure_synthetic_tracking(data.root, seed=int(data.get("synthetic_seed") or 0))
    sequences = read_tracking(bench, data.root, split, subset=data.get("subset"))
    sequences = sequences[: data.get("max_sequences")]
    pred_root = out_dir / PREDICTIONS_DIR
    rows_path = out_dir / TRACKING_ROWS
    fields = trk.LASOT_FIELDS if bench == "lasot" else trk.GOT10K_FIELDS
    rows = _read_tracking_rows(rows_path)
    done = {n for n in rows if trk.result_file(bench, pred_root, n).is_file()}
    todo = [s for s in sequences if s.name not in done]
    tracker = _box_tracker(cfg) if todo else None  # before any file: a bad ckpt stops here
    _check_resume(out_dir, cfg)

    with Progress() as progress:
        seq_task = progress.add_task(
            f"{bench} {split}", total=len(sequences), completed=len(sequences) - len(todo)
        )
        frame_task = progress.add_task("frames", total=None)
        for seq in todo:
            progress.update(seq_task, description=f"{bench} {split}: {seq.name}")
            progress.reset(frame_task, total=seq.num_frames)
            with _autocast(cfg):
                path, fps = trk.run_sequence(
                    tracker, seq, bench, pred_root,
                    on_frame=lambda _t: progress.advance(frame_task),
                )  # fmt: skip
            row = {**trk.score_sequence(bench, seq, path), "fps": fps}
            _append_tracking_row(rows_path, fields, row)
            progress.advance(seq_task)

    meta: dict[str, Any] = {
        "benchmark": bench,
        "data": str(data.root),
        "split": split,
        "ckpt": cfg.get("ckpt"),
        "baseline": cfg.get("baseline"),
        "num_sequences": len(sequences),
        "predictions": PREDICTIONS_DIR,
        "per_sequence": TRACKING_ROWS,
    }
    scored = [s for s in sequences if s.has_gt]
    name = cfg.get("baseline") or Path(str(cfg.get("ckpt") or "model")).stem
    title = f"{Path(str(data.root)).name} {split}"
    result: dict[str, Any]
    if not scored:
        zip_path = out_dir / ZIP_FILE
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
            for seq in sequences:
                for f in sorted((pred_root / seq.name).glob("*.txt")):
                    zf.write(f, f.relative_to(pred_root).as_posix())
        note = (
            f"{bench} {split} has no ground truth beyond the first frame: scores come from "
            f"the benchmark's server; upload {ZIP_FILE}"
        )
        result = {"score": float("nan"), "gt_available": False, "note": note}
        (out_dir / "metrics.json").write_text(
            json.dumps({**result, "submission": ZIP_FILE, **meta}, indent=2)
        )
        log.info("%s (in %s)", note, out_dir)
        return result

    preds = {s.name: read_boxes(trk.result_file(bench, pred_root, s.name)) for s in scored}
    if bench == "lasot":
        agg = tm.aggregate_lasot(
            [tm.score_lasot_sequence(preds[s.name], s.gt, s.absent, s.name) for s in scored]
        )
        plots = tm.plot_lasot(agg, out_dir / PLOTS_DIR, name, title)
        keys = ("success_auc", "precision", "norm_precision", "norm_precision_auc",
                "success_rate_50", "mean_iou")  # fmt: skip
        headline = "success_auc"
        thresholds = {
            "success": tm.SUCCESS_THRESHOLDS.tolist(),
            "precision": tm.PRECISION_THRESHOLDS.tolist(),
            "norm_precision": tm.NORM_PRECISION_THRESHOLDS.tolist(),
        }
    else:
        agg = tm.aggregate_got10k(
            [
                tm.score_got10k_sequence(preds[s.name], s.gt, s.cover, (s.width, s.height), s.name)
                for s in scored
            ]
        )
        plots = tm.plot_got10k(agg, out_dir / PLOTS_DIR, name, title)
        keys = ("ao", "sr50", "sr75")
        headline = "ao"
        thresholds = {"success": tm.GOT10K_THRESHOLDS.tolist()}
    result = {k: 100 * agg[k] for k in keys}
    result["score"] = result[headline]
    counts = {k: agg[k] for k in ("num_sequences", "num_frames", "num_scored_frames")}
    curves = {k: v for k, v in agg.items() if k.endswith("_curve")}
    (out_dir / "metrics.json").write_text(
        json.dumps(
            {
                **result,
                "gt_available": True,
                "units": "percent (curves: fractions)",
                **counts,
                **meta,
                "plots": [p.relative_to(out_dir).as_posix() for p in plots],
                "thresholds": thresholds,
                "curves": curves,
            },
            indent=2,
        )
    )
    log.info(
        "%s %s: %s on %d sequences",
        bench,
        split,
        ", ".join(f"{k} {result[k]:.2f}" for k in keys),
        agg["num_sequences"],
    )
    return {**result, **counts, "gt_available": True}


def _demo_input(cfg: DictConfig) -> tuple[Path, Any]:
    """(video, box) of the default demo: sequence `demo.sequence` of the synthetic LaSOT-
    layout set at `demo.root` (generated on first use), with its first_box.txt unless the
    command gives a prompt."""
    from mosam_train.data.errors import DataError
    from mosam_train.data.synthetic_tracking import ensure_synthetic_tracking

    root = ensure_synthetic_tracking(cfg.demo.root)
    folder = root / str(cfg.demo.sequence)
    if not (folder / "img").is_dir():
        raise DataError(
            f"demo.sequence={cfg.demo.sequence}: no such sequence in {root}. Fix: pick one "
            f"listed in {root / 'testing_set.txt'} as <class>/<name>.",
            folder,
        )
    prompted = any(cfg.get(k) is not None for k in ("box", "points", "mask"))
    return folder / "img", cfg.get("box") if prompted else folder / "first_box.txt"


def predict(cfg: DictConfig) -> dict[str, Any]:
    """The demo: segment a video from first-frame prompts (box, clicks or mask) and write
    per-frame masks, boxes and an overlay video under the run directory.

    Every input (video, prompt, checkpoint path) is checked before the model is loaded."""
    from mosam_train.data.errors import DataError
    from mosam_train.inference.demo import read_prompts, run_demo
    from mosam_train.inference.video_input import open_video

    video_path, box = (Path(cfg.video), cfg.get("box")) if cfg.get("video") else _demo_input(cfg)
    video = open_video(video_path, backend=cfg.get("video_backend") or "auto")
    prompts = read_prompts(
        (video.height, video.width),
        box=box,
        points=cfg.get("points"),
        mask=cfg.get("mask"),
        box_per_line=cfg.get("box_per_line") or "object",
    )
    if not cfg.get("ckpt") or not Path(cfg.ckpt).is_file():
        raise DataError(
            f"ckpt={cfg.get('ckpt')}: no such file. Fix: pass ckpt=<.ckpt of this project or "
            f"official SAM 2 .pt> (with sam2=<size> for a .pt); `python train.py` writes the "
            f"default micro checkpoint, checkpoints/sam2_micro_synthetic.pt."
        )
    module = load_module(cfg).eval().to(eval_device(cfg))
    module.inference_cfg = dict(cfg.model.inference)
    log.info(
        "%s: %d frames %dx%d, %d object(s), %s", video.path, video.num_frames, video.width,
        video.height, len(prompts), cfg.ckpt,
    )  # fmt: skip
    result = run_demo(
        module.propagator(),
        video,
        prompts,
        Path(cfg.paths.output_dir),
        module.model.image_size,
        fps=cfg.get("fps"),
        read_ahead=int(cfg.get("read_ahead") or 16),
        autocast=_autocast(cfg),
    )
    found = ", ".join(f"{k}: {n}/{result.num_frames}" for k, n in result.frames_with_box.items())
    log.info("frames with a box per object (%s); outputs in %s", found, result.out_dir)
    return {
        "num_frames": result.num_frames,
        "objects": result.object_ids,
        "frames_with_box": result.frames_with_box,
        "out_dir": str(result.out_dir),
    }
