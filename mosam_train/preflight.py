"""What a training run checks before it builds anything.

A trainer that asks for a GPU (`trainer=gpu`, `trainer=ddp`, experiments such as
`experiment=mosam_sav`) on a machine without CUDA would only fail once the model is built,
with Lightning's "No supported gpu backend found!", which names neither the setting to
change nor what else the run is missing. `check_train_setup` stops first and says both:
the trainer option to use instead, and whether the data roots and the SAM 2 weights the
run reads exist, so the next attempt does not fail on those.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from mosam_train.data.check import hydra_choice
from mosam_train.models.shipped import ShippedWeightsError, is_shipped, resolve_weights

GPU_ACCELERATORS = ("gpu", "cuda")


def data_roots(data: DictConfig) -> list[tuple[str, Path]]:
    """(config key, folder) of every dataset the run reads: the training source(s) (each
    `data.mix` entry, else `data.root`) and the validation source (`data.val`, else
    `data.root`). None for the synthetic set, which is generated when missing."""
    if data.get("synthetic"):
        return []
    roots: list[tuple[str, Path]] = []
    if data.get("mix"):
        roots += [(f"data.mix.{k}.root", Path(s.root)) for k, s in data.mix.items() if s]
    if not data.get("mix") or not data.get("val"):
        roots.append(("data.root", Path(data.root)))
    if data.get("val"):
        roots.append(("data.val.root", Path(data.val.root)))
    seen: set[Path] = set()
    return [(k, p) for k, p in roots if not (p in seen or seen.add(p))]


def _weights_fix(path: Path) -> str:
    from mosam_train.models.sam2_builder import SAM2_VARIANTS

    variant = SAM2_VARIANTS.get(path.stem)
    if variant is None or variant.url is None:
        return "put that file there, or set model.sam2.weights=PATH"
    where = (
        "" if path.parent.resolve() == Path("checkpoints").resolve() else f" --dir {path.parent}"
    )
    return f"python -m mosam_train.models.download {path.stem}{where}"


def missing_inputs(cfg: DictConfig) -> list[str]:
    """One line per data root or weights file the run reads that does not exist."""
    missing = [
        f"{key} {path} does not exist (put the dataset there, see data/README.md, or set "
        f"{key}=PATH)"
        for key, path in data_roots(cfg.data)
        if not path.is_dir()
    ]
    weights = cfg.model.sam2.get("weights")
    if is_shipped(weights):
        try:
            resolve_weights(weights)
        except ShippedWeightsError as err:
            missing.append(str(err))
    elif weights and not Path(weights).is_file():
        missing.append(
            f"model.sam2.weights {weights} does not exist ({_weights_fix(Path(weights))})"
        )
    return missing


def check_train_setup(cfg: DictConfig) -> None:
    """Refuse a GPU trainer on a machine without CUDA, naming the CPU trainer options and
    whatever else the run would miss (see the module docstring). Does nothing otherwise."""
    accelerator = str(cfg.trainer.get("accelerator") or "auto").lower()
    if accelerator not in GPU_ACCELERATORS or torch.cuda.is_available():
        return
    asked = hydra_choice("experiment") or "this run"
    trainer = hydra_choice("trainer")
    lines = [
        f"{asked} asks for trainer.accelerator={accelerator}"
        + (f" ({trainer})" if trainer else "")
        + " but this machine has no CUDA GPU (torch.cuda.is_available() is False). Fix: add "
        "trainer=cpu (one process, float32), or trainer=ddp_cpu for several processes on "
        "CPU (data.batch_size must be a multiple of trainer.devices)."
    ]
    missing = missing_inputs(cfg)
    if missing:
        lines.append("Also: " + "; ".join(missing) + ".")
    else:
        found = [f"{k} {p}" for k, p in data_roots(cfg.data)]
        if cfg.model.sam2.get("weights"):
            found.append(f"model.sam2.weights {cfg.model.sam2.weights}")
        if found:
            lines.append("The data and weights it reads are there: " + ", ".join(found) + ".")
    raise RuntimeError(" ".join(lines))
