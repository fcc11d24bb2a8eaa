"""The command DDP's extra processes run: this Hydra job, in its directory, in RUN mode."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from mosam_train.lit.ddp import job_command

CONFIGS = str(Path(__file__).resolve().parents[2] / "configs")


def test_multirun_job_children_join_the_job_dir_with_its_own_overrides(tmp_path):
    # job 1 of `train.py -m model.optim.lr=1e-3,1e-4 trainer=ddp_cpu` (the second value)
    overrides = ["model.optim.lr=0.0001", "trainer=ddp_cpu"]
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    job_dir = tmp_path / "multiruns" / "1"
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(job_dir)
        cfg.hydra.runtime.cwd = str(tmp_path)
        cfg.hydra.job.name = "train"
        cfg.hydra.mode = "MULTIRUN"
        cfg.hydra.overrides.task = overrides
    HydraConfig.instance().set_config(cfg)
    try:
        command, cwd = job_command(local_rank=1)
    finally:
        HydraConfig.instance().cfg = None
    assert command[0] == sys.executable
    args = command[command.index(overrides[0]) :]  # after the interpreter and the script
    assert args[: len(overrides)] == overrides  # the job's chosen values, no sweep lists
    assert "-m" not in args and "--multirun" not in args
    assert "hydra.mode=RUN" in args
    assert f'hydra.run.dir="{job_dir}"' in args  # the job's directory, not a new run folder
    assert "hydra.output_subdir=null" in args  # the job's .hydra/ is written once
    assert f'hydra.job_logging.handlers.file.filename="{job_dir}/train_rank1.log"' in args
    assert cwd == str(tmp_path)
