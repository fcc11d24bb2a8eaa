"""Loggers: a CSV logger that continues a resumed run's file, a wandb logger that names its
run after the Hydra job, and image logging for whichever loggers take images (wandb,
TensorBoard)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from PIL import Image

from mosam_train.atomic_files import atomic_open


def write_csv_atomically(path: Path, fieldnames: list[str], rows: Iterable[dict]) -> None:
    """Write a whole CSV file to a temporary file beside it and rename it into place, so a
    kill at any moment leaves either the old file or the new one, never a truncated one."""
    with atomic_open(path, newline="") as f:
        out = csv.DictWriter(f, fieldnames=fieldnames)
        out.writeheader()
        out.writerows(rows)


class _ContinuingWriter(ExperimentWriter):
    """Lightning's CSV writer with two changes. It keeps an existing `metrics.csv` (the
    logger below has already cut it to the rows that stay), where Lightning's deletes it.
    And when a new column appears it rewrites the file atomically, where Lightning's
    truncates and rewrites it in place: a job killed during that rewrite (SIGKILL, a
    preempted node) lost every row logged before it."""

    def _check_log_dir_exists(self) -> None:
        pass

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        path = Path(self.metrics_file_path)
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        write_csv_atomically(path, fieldnames, rows)


class ContinuedCSVLogger(CSVLogger):
    """`CSVLogger` that appends to an existing `metrics.csv` (a resumed run's `version`).

    Lightning's writer deletes an existing file, and on its first save with new columns
    rewrites the header with only the new rows' columns, which fails on the old rows.
    Here the writer starts from the file's columns, and rows from `resume_step` on (logged
    after the checkpoint the run resumes from was written, at global step `resume_step`,
    and logged again by the resumed run) are dropped, so the file reads as one
    uninterrupted run. `LastCheckpoint` flushes the loggers before each save, so no row
    before the checkpoint is missing. Every rewrite of the file is atomic.
    """

    def __init__(self, *args: Any, resume_step: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is not None:
            return self._experiment
        path = Path(self.log_dir) / "metrics.csv"
        keys: list[str] = []
        if path.is_file():
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                keys = sorted(reader.fieldnames or [])  # as Lightning writes them
                rows = [
                    r
                    for r in reader
                    if self.resume_step is None or int(float(r["step"])) < self.resume_step
                ]
            if keys:
                write_csv_atomically(path, keys, rows)
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = _ContinuingWriter(log_dir=self.log_dir)
        self._experiment.metrics_keys = keys
        return self._experiment


def job_name() -> str | None:
    """The Hydra job's command-line overrides (e.g. `model.mgp.dense=false,seed=1`),
    prefixed by the job number in a multirun; None outside Hydra or with no overrides."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    overrides = hc.job.get("override_dirname") or ""
    if hc.mode == RunMode.MULTIRUN:
        return f"{hc.job.num}:{overrides}" if overrides else str(hc.job.num)
    return overrides or None


def job_group() -> str | None:
    """`<app>/<sweep directory name>` in a multirun (one group per sweep), else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    return f"{hc.job.name}/{Path(str(hc.sweep.dir)).name}"


class JobWandbLogger(WandbLogger):
    """`WandbLogger` whose run is named after the Hydra job (`job_name`) and grouped by
    sweep (`job_group`) unless `name` / `group` are given. A resumed run (`id` given, see
    `mosam_train.runs.logger_resume_kwargs`) keeps the name and group it started with:
    a resumed job's overrides differ from its first start's.

    `offline=True` (or `WANDB_MODE=offline`) writes the run under `<save_dir>/wandb/`
    with no network; `wandb sync <that run dir>` uploads it later.
    """

    def __init__(
        self,
        *args: Any,
        name: str | None = None,
        group: str | None = None,
        id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if id is None:
            name = name or job_name()
            group = group or job_group()
        if group is not None:
            kwargs["group"] = group
        super().__init__(*args, name=name, id=id, **kwargs)


def log_image(
    loggers: Iterable[Logger], key: str, path: str | Path, step: int, caption: str = ""
) -> int:
    """Logs the image file at `path` under `key` to every logger that takes images (wandb
    as media, TensorBoard as an image summary); returns how many did."""
    done = 0
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            extra = {"caption": [caption]} if caption else {}
            logger.log_image(key=key, images=[str(path)], step=step, **extra)
        elif isinstance(logger, TensorBoardLogger):
            with Image.open(path) as img:
                rgb = np.asarray(img.convert("RGB"))
            logger.experiment.add_image(key, rgb, global_step=step, dataformats="HWC")
        else:
            continue
        done += 1
    return done
