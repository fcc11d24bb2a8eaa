"""The model that eval and the demo run, loaded in one place: a checkpoint of this project
or official SAM 2 weights, on the evaluation device, with the configured inference rule."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mosam_train.checkpoint_files import CheckpointFileError, load_checkpoint_file
from mosam_train.inference.baselines import CopyFirstMask, FlowWarp
from mosam_train.inference.engine import VideoPropagator
from mosam_train.inference.vos import Propagator
from mosam_train.lit.module import MoSAMModule
from mosam_train.models.mosam import MoSAMTracker
from mosam_train.models.shipped import resolve_weights
from mosam_train.startup import compose_config
from mosam_train.trackers import build_tracker


def compose_eval(overrides: Sequence[str]) -> DictConfig:
    """configs/eval.yaml as `python eval.py <overrides>` run from here composes it: for the
    commands that run eval's model or read eval's videos outside the Hydra app."""
    return compose_config("eval", [f"paths.root_dir={Path.cwd()}", *overrides])


def load_module(cfg: DictConfig) -> MoSAMModule:
    """The model named by `cfg.ckpt`: a checkpoint of this project, official SAM 2 weights
    or shipped ones (`shipped:<name>`, checked by sha256)."""
    ckpt = resolve_weights(cfg.ckpt)
    if not ckpt.is_file():
        raise FileNotFoundError(
            f"ckpt={ckpt}: no such file. Pass a .ckpt of this project, a .pt or a shipped "
            f"base (shipped:<name>)."
        )
    # tensors and plain containers only: anything else is refused, naming the file
    raw = load_checkpoint_file(ckpt, mmap=True)
    if "state_dict" in raw and "hyper_parameters" in raw:
        try:  # the module refuses non-finite weights (on_load_checkpoint); name the file
            return MoSAMModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)
        except CheckpointFileError as e:
            raise CheckpointFileError(f"{ckpt}: {e}") from None
    module: MoSAMModule = instantiate(cfg.model, _convert_="all")
    module.load_initial_weights(ckpt)
    return module


def inference_propagator(cfg: DictConfig) -> tuple[VideoPropagator, int]:
    """What eval, tracking eval and the demo run: `load_module`'s model in eval mode on
    `eval_device`, under the `tracker=` rule; with the image size its frames are prepared at."""
    module = load_module(cfg).eval().to(eval_device(cfg))
    parts_off = list(cfg.get("parts_off") or [])
    min_confidence = cfg.get("min_confidence")
    rules = {k: v for k, v in (cfg.get("rules") or {}).items() if v is not None}
    settings = {"parts_off": parts_off, "min_confidence": min_confidence, "rules": rules}
    asked = {k: v for k, v in settings.items() if v not in (None, [], {})}
    if asked and not isinstance(module.model, MoSAMTracker):
        raise ValueError(
            f"{', '.join(f'{k}={v}' for k, v in asked.items())}: {cfg.ckpt} is not a MoSAM "
            "checkpoint, it has no parts, frame head or inference rules to set. Fix: leave "
            "them unset, or a MoSAM checkpoint."
        )
    for part in parts_off:
        module.model.switch_off(part)
    if min_confidence is not None:
        if "threshold" in parts_off:
            raise ValueError(
                f"min_confidence={min_confidence} with parts_off=[threshold]: the one sets "
                "the threshold the other switches off. Fix: one of the two."
            )
        module.model.leave_out_below(float(min_confidence))
    if rules:
        module.model.set_rules(rules)
    tracker = build_tracker(OmegaConf.to_container(cfg.tracker, resolve=True))
    return module.propagator(tracker), module.model.image_size


def mask_propagator(cfg: DictConfig, command: str) -> tuple[Propagator, int]:
    """What a mask evaluation runs (`command` names it in errors): a baseline
    (`baseline=copy_first`: each first mask repeated; `flow_warp`: each mask carried along
    optical flow) or `inference_propagator`'s model; with the image size its frames are
    prepared at."""
    baselines = {"copy_first": CopyFirstMask, "flow_warp": FlowWarp}
    if cfg.get("baseline") in baselines:
        return baselines[cfg.baseline](), int(cfg.model.sam2.image_size)
    if cfg.get("baseline"):
        raise ValueError(
            f"baseline={cfg.baseline}: unknown; use {' or '.join(baselines)} or leave it null"
        )
    if not cfg.get("ckpt"):
        raise ValueError(f"{command} needs ckpt=PATH (or baseline=copy_first)")
    return inference_propagator(cfg)


def eval_device(cfg: DictConfig) -> torch.device:
    """`device` from the config, else CUDA when there is one."""
    name = cfg.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(cfg: DictConfig) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, as SAM 2's `tools/vos_inference.py` runs; float32 elsewhere
    (`precision=32` forces float32 on CUDA too)."""
    if eval_device(cfg).type == "cuda" and str(cfg.get("precision") or "bf16") == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
