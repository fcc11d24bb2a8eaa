"""Run directories: where a run writes, and how `resume=<run_dir>` continues one.

A training run's directory holds everything needed to continue it: `.hydra/config.yaml`
(the composed config, written by Hydra), `checkpoints/last.ckpt` (written every
`callbacks.last_checkpoint.every_n_train_steps` steps and at each validation, atomically)
and the loggers' files. `python train.py resume=<run_dir>` runs Hydra in that directory
(`configs/hydra/default.yaml` asks `run_dir` below), takes the saved config instead of
composing a new one, and fits from `last.ckpt`; loggers continue their own files (CSV,
TensorBoard version) or run (wandb id).

`register_resolvers()` makes the `mosam.*` OmegaConf resolvers the Hydra config uses known;
the entry points call it (through `mosam_train.startup.start`) before Hydra starts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

SAVED_CONFIG = Path(".hydra") / "config.yaml"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


def run_dir(resume: str | None, new: str) -> str:
    """Hydra's run directory: the resumed run's own, else a new one."""
    return str(Path(resume).resolve()) if resume else new


def output_subdir(resume: str | None, now: str) -> str:
    """Where Hydra saves this invocation's config: `.hydra` for a new run; a resumed run
    keeps its `.hydra/config.yaml` and records the resume beside it."""
    return f".hydra/resume_{now}" if resume else ".hydra"


def register_resolvers() -> None:
    """`${mosam.run_dir:...}` and `${mosam.output_subdir:...}` of `configs/hydra/default.yaml`."""
    OmegaConf.register_new_resolver("mosam.run_dir", run_dir, replace=True)
    OmegaConf.register_new_resolver("mosam.output_subdir", output_subdir, replace=True)


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def resumed_config(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The saved config of run `cfg.resume`, with the command line's `key=value`
    overrides (e.g. a larger `trainer.max_steps`) applied on top.

    Config-group choices (`trainer=ddp`) cannot be re-composed onto a saved config and are
    refused; so are values that are not keys of the saved config.
    """
    root = Path(cfg.resume)
    saved_path = root / SAVED_CONFIG
    ckpt = root / LAST_CHECKPOINT
    for path, what in ((saved_path, "its saved config"), (ckpt, "a last.ckpt")):
        if not path.is_file():
            raise FileNotFoundError(
                f"resume={root}: {path} is missing, so this is not a run directory with "
                f"{what}. Fix: pass the directory train.py wrote (it holds .hydra/ and "
                f"checkpoints/), or ckpt_path=<file.ckpt> to start a new run from a checkpoint."
            )
    saved = OmegaConf.load(saved_path)
    rest = [o for o in overrides if _override_key(o) != "resume"]
    for o in rest:
        key = _override_key(o)
        current = OmegaConf.select(saved, key, default="__missing__")
        if "=" not in o or current == "__missing__" or isinstance(current, DictConfig):
            raise ValueError(
                f"resume={root}: cannot apply '{o}' to the saved config {saved_path}: only "
                f"key=value overrides of its existing values are (a config group choice "
                f"changes the whole composition). Fix: drop it, or start a new run."
            )
    merged = OmegaConf.merge(saved, OmegaConf.from_dotlist([o.lstrip("+") for o in rest]))
    merged.resume = str(root.resolve())
    merged.ckpt_path = str(ckpt.resolve())
    return merged


def logger_resume_kwargs(logger_cfg: Any, out_dir: Path, step: int) -> dict[str, Any]:
    """Arguments that make a logger continue the resumed run's logs instead of starting
    new ones: wandb's run id (found in `<save_dir>/wandb/run-*-<id>`), the TensorBoard /
    CSV version already on disk (and, for CSV, the checkpoint's `step`, after which the
    killed run's rows are dropped)."""
    target = str(logger_cfg.get("_target_", ""))
    if target.endswith("WandbLogger"):
        save_dir = Path(logger_cfg.get("save_dir") or out_dir)
        runs = sorted((save_dir / "wandb").glob("*run-*-*"), key=lambda p: p.stat().st_mtime)
        if runs:
            return {"id": re.sub(r".*run-\d{8}_\d{6}-", "", runs[-1].name), "resume": "allow"}
        return {}
    if target.endswith(("TensorBoardLogger", "ContinuedCSVLogger")):
        save_dir = Path(logger_cfg.get("save_dir") or out_dir)
        name = logger_cfg.get("name") or "lightning_logs"
        versions = sorted(
            int(p.name.split("_")[1])
            for p in (save_dir / name).glob("version_*")
            if p.name.split("_")[1].isdigit()
        )
        if not versions:
            return {}
        if target.endswith("ContinuedCSVLogger"):
            return {"version": versions[-1], "resume_step": step}
        return {"version": versions[-1]}
    return {}
