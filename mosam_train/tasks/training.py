"""`python train.py [experiment=...]`: fit, export the trained SAM 2 weights, return the
metric a sweep optimises."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from mosam_train import runs
from mosam_train.checkpoint_files import load_checkpoint_file, require_keys
from mosam_train.data.datamodule import VOSDataModule
from mosam_train.lit.checkpoint_io import LIGHTNING_CHECKPOINT
from mosam_train.lit.module import MoSAMModule
from mosam_train.preflight import check_train_setup
from mosam_train.tasks.export import export

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> float | None:
    """Fit, export the best SAM 2 weights if `export.name` is set, return
    `cfg.optimized_metric`.

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
    # validation runs with the tracker= rule
    module: MoSAMModule = instantiate(cfg.model, _convert_="all", tracker=cfg.get("tracker"))
    callbacks = [instantiate(c, _convert_="all") for c in (cfg.get("callbacks") or {}).values()
                 if c is not None]  # fmt: skip
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
        export(cfg, trainer, module)
    metric = trainer.callback_metrics.get(cfg.get("optimized_metric") or "")
    return None if metric is None else float(metric)


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
