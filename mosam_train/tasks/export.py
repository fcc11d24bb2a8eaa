"""SAM 2 weights out of a training run, in the official format: every run keeps its own
copy, and only a run that trained the job's whole schedule publishes it where other
experiments load their base from."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import lightning as L
from omegaconf import DictConfig

from mosam_train.checkpoint_files import displaced_path, sha256_of
from mosam_train.lit.module import MoSAMModule

log = logging.getLogger(__name__)


def export(cfg: DictConfig, trainer: L.Trainer, module: MoSAMModule) -> Path:
    """The best checkpoint's SAM 2 weights to `<run dir>/export/<export.name>`, published
    to `export.publish_dir` when the run trained at least `export.publish_min_steps` steps:
    a short trial never replaces the base that other experiments load. A different file
    already there is kept as `<stem>.<sha8>.pt`."""
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
        return path
    target = Path(cfg.export.publish_dir) / name
    need = int(cfg.export.get("publish_min_steps") or 0)
    if trainer.global_step < need or trainer.fast_dev_run:
        log.warning(
            "%s left as it is: this run trained %d steps, the job's schedule is %d "
            "(export.publish_min_steps); its weights are in %s",
            target, trainer.global_step, need, path,
        )  # fmt: skip
        return path
    publish(path, target)
    return path


def publish(path: Path, target: Path) -> None:
    """Copy `path` to `target` atomically; other weights already at `target` are kept
    beside it (`displaced_path`), since MoSAM checkpoints trained on them look there."""
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
