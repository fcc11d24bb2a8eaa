"""The CSV logger's continued and atomically rewritten file, image logging to TensorBoard and
wandb, and wandb run naming (the wandb offline run of a real multirun is read in
tests/test_sweeps.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from omegaconf import open_dict, read_write
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

from mosam_train.lit.loggers import ContinuedCSVLogger, JobWandbLogger, log_image

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_images_reach_tensorboard_and_are_skipped_by_csv(tmp_path):
    png = tmp_path / "picture.png"
    pixels = np.zeros((12, 20, 3), np.uint8)
    pixels[:, :10, 0] = 255
    Image.fromarray(pixels).save(png)
    tb = TensorBoardLogger(tmp_path, name="tb", version=0)
    csv = CSVLogger(tmp_path, name="csv", version=0)
    assert log_image([csv, tb], "val/overlay/video", png, step=7) == 1
    tb.experiment.flush()
    events = EventAccumulator(str(tmp_path / "tb" / "version_0"), size_guidance={IMAGES: 0})
    events.Reload()
    (image,) = events.Images("val/overlay/video")
    assert image.step == 7 and (image.width, image.height) == (20, 12)


def _hydra(tmp_path, mode: RunMode, overrides: str, num: int | None) -> None:
    """Hydra's runtime config as a job of that kind would see it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True)
    with read_write(cfg), open_dict(cfg):
        cfg.hydra.mode = mode
        if num is not None:  # a single run has none
            cfg.hydra.job.num = num
        cfg.hydra.job.name = "train"
        cfg.hydra.job.override_dirname = overrides
        cfg.hydra.sweep.dir = str(tmp_path / "2026-01-02_03-04-05")
    HydraConfig.instance().set_config(cfg)


def test_wandb_run_named_after_the_job_unless_resumed(tmp_path):
    previous = HydraConfig.instance().cfg
    try:
        _hydra(tmp_path, RunMode.MULTIRUN, "model.mgp.dense=false", 3)
        logger = JobWandbLogger(save_dir=str(tmp_path), offline=True)
        assert logger._wandb_init["name"] == "3:model.mgp.dense=false"
        assert logger._wandb_init["group"] == "train/2026-01-02_03-04-05"
        # a resumed run (wandb id given) keeps the name and group it started with
        resumed = JobWandbLogger(save_dir=str(tmp_path), offline=True, id="abc", resume="allow")
        assert resumed._wandb_init["name"] is None and "group" not in resumed._wandb_init
        assert resumed._wandb_init["id"] == "abc"
        _hydra(tmp_path, RunMode.RUN, "", None)
        single = JobWandbLogger(save_dir=str(tmp_path), offline=True)
        assert single._wandb_init["name"] is None and "group" not in single._wandb_init
    finally:
        HydraConfig.instance().cfg = previous


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_csv_logger_continues_its_file_and_drops_rows_from_the_resume_step(tmp_path):
    first = ContinuedCSVLogger(str(tmp_path), name="csv", version=0)
    for step in range(4):
        first.log_metrics({"train/loss": float(step)}, step=step)
    first.save()
    resumed = ContinuedCSVLogger(str(tmp_path), name="csv", version=0, resume_step=2)
    resumed.log_metrics({"train/loss": 20.0, "val/jf": 1.0}, step=2)
    resumed.save()
    rows = _rows(tmp_path / "csv" / "version_0" / "metrics.csv")
    assert [(r["step"], r["train/loss"], r["val/jf"]) for r in rows] == [
        ("0", "0.0", ""), ("1", "1.0", ""), ("2", "20.0", "1.0")
    ]  # fmt: skip


def test_csv_logger_keeps_its_rows_when_killed_while_adding_a_column(tmp_path, monkeypatch):
    # a new column makes the writer rewrite the whole file: a kill during that rewrite must
    # leave the rows written so far (Lightning's own writer truncates the file first)
    logger = ContinuedCSVLogger(str(tmp_path), name="csv", version=0)
    for step in range(3):
        logger.log_metrics({"train/loss": float(step)}, step=step)
    logger.save()
    path = tmp_path / "csv" / "version_0" / "metrics.csv"
    assert len(_rows(path)) == 3

    def killed(self, rows):
        raise KeyboardInterrupt("killed mid-rewrite")

    logger.log_metrics({"train/loss": 3.0, "val/jf": 0.5}, step=3)
    with monkeypatch.context() as m:
        m.setattr(csv.DictWriter, "writerows", killed)
        with pytest.raises(KeyboardInterrupt):
            logger.save()
    assert [r["train/loss"] for r in _rows(path)] == ["0.0", "1.0", "2.0"]
