"""resume=<run_dir>: the saved config, what may be overridden, and the loggers' continuation."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mosam_train import runs


def run_dir(tmp_path: Path) -> Path:
    root = tmp_path / "run"
    (root / ".hydra").mkdir(parents=True)
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "last.ckpt").write_bytes(b"")
    OmegaConf.save(
        {"seed": 0, "resume": None, "trainer": {"max_steps": 10}, "data": {"root": "/d"}},
        root / ".hydra" / "config.yaml",
    )
    return root


def test_resumed_config_is_the_saved_one_with_value_overrides(tmp_path):
    root = run_dir(tmp_path)
    cfg = OmegaConf.create({"resume": str(root), "seed": 5, "trainer": {"max_steps": 3}})
    merged = runs.resumed_config(cfg, [f"resume={root}", "trainer.max_steps=20"])
    assert merged.seed == 0  # saved, not the new composition's
    assert merged.trainer.max_steps == 20  # the command line's value on top
    assert merged.ckpt_path == str((root / "checkpoints" / "last.ckpt").resolve())
    assert merged.resume == str(root.resolve())


@pytest.mark.parametrize("override", ["trainer=ddp", "nothing.here=1"])
def test_resumed_config_refuses_group_choices_and_unknown_keys(tmp_path, override):
    root = run_dir(tmp_path)
    cfg = OmegaConf.create({"resume": str(root)})
    with pytest.raises(ValueError, match="only key=value overrides of its existing values"):
        runs.resumed_config(cfg, [f"resume={root}", override])


def test_resume_needs_a_checkpoint(tmp_path):
    root = run_dir(tmp_path)
    (root / "checkpoints" / "last.ckpt").unlink()
    with pytest.raises(FileNotFoundError, match=r"last\.ckpt is missing"):
        runs.resumed_config(OmegaConf.create({"resume": str(root)}), [])


def test_loggers_continue_their_own_run(tmp_path):
    out = tmp_path
    (out / "wandb" / "offline-run-20261126_101500-abc123").mkdir(parents=True)
    (out / "wandb" / "latest-run").mkdir()
    wandb = {"_target_": "mosam_train.lit.loggers.JobWandbLogger", "save_dir": str(out)}
    assert runs.logger_resume_kwargs(wandb, out, 7) == {"id": "abc123", "resume": "allow"}
    for v in (0, 1, 10):
        (out / "csv" / f"version_{v}").mkdir(parents=True)
    csv = {"_target_": "mosam_train.lit.loggers.ContinuedCSVLogger", "save_dir": str(out),
           "name": "csv"}  # fmt: skip
    assert runs.logger_resume_kwargs(csv, out, 7) == {"version": 10, "resume_step": 7}
    tb = {"_target_": "lightning.pytorch.loggers.TensorBoardLogger", "save_dir": str(out),
          "name": "tb"}  # fmt: skip
    assert runs.logger_resume_kwargs(tb, out, 7) == {}  # nothing written yet: a new version
