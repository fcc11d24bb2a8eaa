"""What the entry points run: train(cfg), evaluate(cfg).

Importing this module imports `sam2` (through the model builder), which resets Hydra's
global state before `@hydra.main` starts; so entry points import it at the top.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from rich.progress import Progress

from mosam_train.data.datamodule import VOSDataModule
from mosam_train.data.formats.davis import voc_palette
from mosam_train.data.video import VideoRecord
from mosam_train.inference.baselines import CopyFirstMask
from mosam_train.inference.vos import Propagator, run_record
from mosam_train.lit.module import MoSAMModule
from mosam_train.metrics.jf import ObjectScore, aggregate
from mosam_train.models.sam2_builder import load_sam2_weights

log = logging.getLogger(__name__)


def _instantiate_dict(cfg: DictConfig | None) -> list[Any]:
    if not cfg:
        return []
    return [instantiate(c, _convert_="all") for c in cfg.values() if c is not None]


def train(cfg: DictConfig) -> float | None:
    """Fit, export the best SAM 2 weights if asked, return `cfg.optimized_metric`."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule: VOSDataModule = instantiate(cfg.data, _convert_="all")
    module: MoSAMModule = instantiate(cfg.model, _convert_="all")
    callbacks = _instantiate_dict(cfg.get("callbacks"))
    loggers = _instantiate_dict(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.get("export_sam2_weights") and trainer.is_global_zero:
        source = MoSAMModule.load_from_checkpoint(best, map_location="cpu") if best else module
        path = source.export_sam2_weights(cfg.export_sam2_weights)
        log.info("SAM 2 weights of %s exported to %s", best or "the last step", path)
    metric = trainer.callback_metrics.get(cfg.get("optimized_metric") or "")
    return None if metric is None else float(metric)


def load_module(cfg: DictConfig) -> MoSAMModule:
    """The model named by `cfg.ckpt`: a checkpoint of this project or official SAM 2 weights."""
    ckpt = Path(cfg.ckpt)
    if not ckpt.is_file():
        raise FileNotFoundError(
            f"ckpt={ckpt}: no such file. Pass a .ckpt of this project or a .pt."
        )
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    if isinstance(raw, dict) and "state_dict" in raw and "hyper_parameters" in raw:
        return MoSAMModule.load_from_checkpoint(ckpt, map_location="cpu")
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
    module = load_module(cfg).eval()
    module.inference_cfg = dict(cfg.model.inference)
    return module.propagator(), module.model.image_size


def _records(datamodule: VOSDataModule, split: str) -> list[VideoRecord]:
    datamodule.prepare_data()
    datamodule.setup("validate")
    if split != "val":
        raise ValueError(f"split={split}: only the datamodule's val split is evaluated so far")
    return list(datamodule.val_records)


ROW_FIELDS = [f.name for f in dataclasses.fields(ObjectScore)]


def _read_rows(path: Path) -> list[ObjectScore]:
    if not path.is_file():
        return []
    rows = []
    with path.open() as f:
        for r in csv.DictReader(f):
            rows.append(
                ObjectScore(
                    video=r["video"],
                    object_id=int(r["object_id"]),
                    j_mean=float(r["j_mean"]),
                    j_recall=float(r["j_recall"]),
                    j_decay=float(r["j_decay"]),
                    f_mean=float(r["f_mean"]),
                    f_recall=float(r["f_recall"]),
                    f_decay=float(r["f_decay"]),
                    num_frames=int(r["num_frames"]),
                    tags=tuple(t for t in r["tags"].split("|") if t),
                )
            )
    return rows


def _append_rows(path: Path, rows: list[ObjectScore]) -> None:
    new = not path.is_file()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_FIELDS)
        if new:
            writer.writeheader()
        for r in rows:
            d = dataclasses.asdict(r)
            d["tags"] = "|".join(r.tags)
            writer.writerow(d)


def _check_resume(out_dir: Path, cfg: DictConfig) -> None:
    """Refuse to resume rows that another model, dataset or setting produced."""
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


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Segment every video of the split, write PNGs, per-object rows and metrics.json.

    Rows are appended per video as they are produced; a rerun in the same output directory
    (`hydra.run.dir=...`) skips the videos already scored.
    """
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    predictor, image_size = _predictor(cfg)
    datamodule: VOSDataModule = instantiate(cfg.data, _convert_="all")
    records = _records(datamodule, cfg.split)
    _check_resume(out_dir, cfg)
    rows_path = out_dir / "per_object.csv"
    rows = _read_rows(rows_path)
    done = {r.video for r in rows}
    pred_dir = out_dir / "predictions"

    with Progress() as progress:
        task = progress.add_task("evaluating", total=len(records), completed=len(done))
        for record in records:
            if record.name in done:
                continue
            video_dir = pred_dir / record.name
            video_dir.mkdir(parents=True, exist_ok=True)

            def write(
                t: int, labels: Any, record: VideoRecord = record, d: Path = video_dir
            ) -> None:
                img = Image.fromarray(labels, mode="P")
                img.putpalette(voc_palette())
                img.save(d / f"{record.frame_name(t)}.png")

            video_rows = run_record(predictor, record, image_size, on_frame=write)
            _append_rows(rows_path, video_rows)
            rows.extend(video_rows)
            progress.advance(task)

    result = aggregate(rows)
    meta = {
        "ckpt": cfg.get("ckpt"),
        "baseline": cfg.get("baseline"),
        "memory": None if cfg.get("baseline") else cfg.model.inference.memory,
        "data": cfg.data.get("root"),
        "split": cfg.split,
    }
    (out_dir / "metrics.json").write_text(json.dumps({**result, **meta}, indent=2))
    log.info(
        "J&F %.2f (J %.2f, F %.2f) on %d objects",
        result["JF"],
        result["J"],
        result["F"],
        result["num_objects"],
    )
    return result
