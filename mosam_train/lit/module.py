"""The LightningModule: SAM 2 trained on clips, validated by streaming J&F on whole videos.

Hyperparameters are plain dicts (the entry points convert Hydra configs), so a checkpoint
loads with `MoSAMModule.load_from_checkpoint(path)` and `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torchmetrics import MaxMetric

from mosam_train.checkpoint_files import displaced_path, require_finite, save_atomic, sha256_of
from mosam_train.data.video import ClipBatch, VideoRecord
from mosam_train.inference.engine import VideoPropagator
from mosam_train.inference.rules import TrackerRule
from mosam_train.inference.vos import FramePrediction, run_record, unscorable_videos
from mosam_train.metrics.jf import logged_values
from mosam_train.metrics.metric import VideoJF
from mosam_train.metrics.plots import index_labels
from mosam_train.models.losses import (
    FRAME_TARGETS,
    LOSS_TERMS,
    SAM2VideoLoss,
    auxiliary_losses,
)
from mosam_train.models.prompts import PromptSimulation
from mosam_train.models.sam2_builder import build_sam2, load_sam2_weights, multimask_from_single
from mosam_train.models.shipped import resolve_weights
from mosam_train.models.variants import build_video_model
from mosam_train.models.video_sam import enable_activation_checkpointing
from mosam_train.trackers import build_tracker

DEFAULT_OPTIM = {
    "lr": 5e-6,
    "lr_image_encoder": 3e-6,
    "weight_decay": 0.1,
    "betas": (0.9, 0.999),
    "warmup_steps": 0,
    "min_lr_ratio": 0.1,
}


# `inference.memory` of checkpoints saved before the tracker= group -> the tracker rule
_MEMORY_TRACKERS = {"full": "sam2", "cond_only": "cond_only"}


def _tracker_config(
    tracker: dict[str, Any] | None, inference: dict[str, Any] | None
) -> dict[str, Any]:
    """The validation tracker: `tracker` when given, else read from the `inference:
    {memory: full|cond_only}` hyperparameter older checkpoints and run configs carry."""
    if tracker:
        return dict(tracker)
    memory = (inference or {}).get("memory", "full")
    if memory not in _MEMORY_TRACKERS:
        raise ValueError(
            f"inference.memory={memory!r}: unknown (this setting is now tracker=). Fix: "
            f"inference.memory full or cond_only, or tracker=<name> instead."
        )
    return {"name": _MEMORY_TRACKERS[memory]}


def _no_decay(name: str, p: torch.Tensor) -> bool:
    """Biases, norms and embeddings (1-D tensors) get no weight decay, as in SAM 2's recipe."""
    return p.ndim <= 1 or name.endswith(".bias")


def train_only(model: torch.nn.Module, prefixes: Sequence[str]) -> None:
    """Freeze every parameter of `model` whose name starts with none of `prefixes`
    (`model.trainable`); a prefix that names no parameter is refused, since a typo would
    otherwise freeze everything it meant to train."""
    prefixes = tuple(str(p) for p in prefixes)
    names = [name for name, _ in model.named_parameters()]
    unmatched = [p for p in prefixes if not any(n.startswith(p) for n in names)]
    if not prefixes or unmatched:
        tops = sorted({".".join(n.split(".")[:2]) + "." for n in names})
        raise ValueError(
            f"model.trainable={list(prefixes)}: "
            + (f"{unmatched} name no parameter" if unmatched else "nothing would train")
            + f". Fix: prefixes of parameter names such as {', '.join(tops)}, or null to "
            "train all."
        )
    for name, p in model.named_parameters():
        if not name.startswith(prefixes):
            p.requires_grad_(False)


class MoSAMModule(L.LightningModule):
    """SAM 2 trained on clips: fine-tuned itself (`model=sam2`), or frozen under MoSAM's
    learnable parts (`model=mosam`: `mgp` and/or `stms` set, `freeze_sam2: true`).

    sam2: {variant, image_size, weights, overrides}; prompts: PromptSimulation fields;
    loss: SAM2VideoLoss fields plus `weight_frame_conf` / `weight_pixel_conf` for the memory
    heads; optim: see DEFAULT_OPTIM; mgp / stms / flow: the parts on top of SAM 2
    (`models.variants.build_video_model`). `activation_checkpointing` recomputes SAM 2's
    encoder blocks and memory attention in the backward pass (long clips at full resolution;
    see `enable_activation_checkpointing`). `trainable`: name prefixes of the parameters
    that train (e.g. `sam2.sam_mask_decoder.` to adapt the decoder of a trained base
    without moving the memory it writes); None: all (all of MoSAM's parts under
    `freeze_sam2`). tracker: the `tracker=` config validation runs
    with ({name, ...}; `mosam_train.trackers`), which the train task passes; inference:
    what checkpoints saved before `tracker=` carry instead ({memory: full|cond_only}).
    """

    def __init__(
        self,
        sam2: dict[str, Any],
        prompts: dict[str, Any] | None = None,
        loss: dict[str, Any] | None = None,
        optim: dict[str, Any] | None = None,
        inference: dict[str, Any] | None = None,
        mgp: dict[str, Any] | None = None,
        stms: dict[str, Any] | None = None,
        flow: dict[str, Any] | None = None,
        freeze_sam2: bool = False,
        activation_checkpointing: bool = False,
        tracker: dict[str, Any] | None = None,
        trainable: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        base = build_sam2(
            sam2["variant"],
            overrides=sam2.get("overrides") or {},
            image_size=sam2.get("image_size"),
        )
        self.model = build_video_model(base, mgp, stms, flow)
        if activation_checkpointing:
            enable_activation_checkpointing(base)
        self.freeze_sam2 = bool(freeze_sam2)
        if self.freeze_sam2:
            if not self.model.added_parameter_prefixes:
                raise ValueError(
                    "freeze_sam2 needs parts to train on top of SAM 2 (mgp and/or stms)"
                )
            self.model.sam2.requires_grad_(False)
            self.model.sam2.eval()
        if trainable is not None:
            train_only(self.model, trainable)
        loss = dict(loss or {})
        self.aux_weights = {
            "frame_conf": float(loss.pop("weight_frame_conf", 1.0)),
            "pixel_conf": float(loss.pop("weight_pixel_conf", 1.0)),
            "visibility": float(loss.pop("weight_visibility", 1.0)),
        }
        self.frame_target = str(loss.pop("frame_target", "visible_iou"))
        if self.frame_target not in FRAME_TARGETS:
            raise ValueError(
                f"model.loss.frame_target={self.frame_target!r}: unknown. Fix: one of "
                f"{', '.join(FRAME_TARGETS)}."
            )
        self.prompt_sim = PromptSimulation(**(prompts or {}))
        self.criterion = SAM2VideoLoss(**loss)
        self.optim_cfg = {**DEFAULT_OPTIM, **(optim or {})}
        self.tracker_cfg = _tracker_config(tracker, inference)
        self._tracker: TrackerRule | None = None  # built from tracker_cfg on first use
        # this step's loss terms (detached), which the non-finite guard checks
        self.step_losses: dict[str, torch.Tensor] = {}
        self.val_jf = VideoJF()
        self.val_keep_labels = 0  # see keep_validation_labels
        self.val_unscorable: dict[str, str] = {}  # video: why it has no J&F (warned once)
        self.val_jf_best = MaxMetric()
        self.val_jf_best.persistent(True)

    # ------------------------------------------------------------------ weights
    def load_initial_weights(self, weights: str | Path | None = None) -> None:
        """Initialise SAM 2 from `weights` (default `sam2.weights`: official .pt, shipped or a
        checkpoint of this project), then, with `sam2.multimask_from_single`, its multimask
        outputs from its single-mask one (`multimask_from_single`). Training and the
        evaluation of an official file both start here, so a setting acts in both."""
        weights = weights or self.hparams.sam2.get("weights")
        if weights:
            load_sam2_weights(self.model.sam2, weights, variant=self.hparams.sam2["variant"])
        if self.hparams.sam2.get("multimask_from_single"):
            multimask_from_single(self.model.sam2)

    def setup(self, stage: str) -> None:
        # Before a resumed fit restores its checkpoint, which then overwrites these weights.
        if stage == "fit":
            self.load_initial_weights()
            # an unknown tracker=, or one this model cannot run (e.g. a rule that needs
            # three candidate masks on a model that tracks with one), stops the run here
            self.propagator()

    def train(self, mode: bool = True) -> MoSAMModule:
        """A frozen SAM 2 stays in eval mode: its dropout and its train-time memory stride
        must not switch on (Lightning 2.2+ restores each submodule's mode after validation
        and never switches modules to train mode for us, so this is the one place)."""
        super().train(mode)
        if self.freeze_sam2:
            self.model.sam2.eval()
        return self

    # ------------------------------------------------------------------ checkpoints
    def _base_record(self) -> dict[str, str]:
        """The frozen SAM 2 a MoSAM checkpoint is trained on: variant, file, sha256."""
        weights = self.hparams.sam2.get("weights")
        if not weights:
            raise ValueError(
                "model=mosam trains on a frozen SAM 2 and its checkpoints name that base: "
                "set model.sam2.weights=PATH (e.g. checkpoints/sam2_micro_synthetic.pt)."
            )
        if getattr(self, "_base_sha", None) is None:
            self._base_sha = sha256_of(resolve_weights(weights))
        return {
            "variant": self.hparams.sam2["variant"],
            "path": str(weights),
            "sha256": self._base_sha,
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A MoSAM checkpoint holds what it trained and names its frozen base.
        if self.freeze_sam2:
            state = checkpoint["state_dict"]
            own = tuple(f"model.{p}" for p in self.model.added_parameter_prefixes)
            for key in [k for k in state if k.startswith("model.") and not k.startswith(own)]:
                del state[key]
            checkpoint["sam2_base"] = self._base_record()

    @staticmethod
    def checkpoint_weights(state_dict: dict[str, Any]) -> dict[str, Any]:
        """The weights among a checkpoint's `state_dict` entries (not the metric states)."""
        return {k: v for k, v in state_dict.items() if k.startswith("model.")}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # a resumed fit or load_from_checkpoint never continues from a diverged model
        require_finite(self.checkpoint_weights(checkpoint["state_dict"]), "checkpoint to load")
        base = checkpoint.get("sam2_base")
        if base is None:
            return
        # a shipped base is found in this install's package, its pinned sha256 checked
        path = resolve_weights(base["path"])
        hint = (
            f"This MoSAM checkpoint was trained on the frozen SAM 2 {base['variant']} weights "
            f"{path} (sha256 {base['sha256']})."
        )
        found = sha256_of(path) if path.is_file() else None
        displaced = displaced_path(path, base["sha256"])  # kept aside by a later export
        if found != base["sha256"] and displaced.is_file():
            path, found = displaced, sha256_of(displaced)
        if found is None:
            raise FileNotFoundError(
                f"{hint} That file does not exist here. Fix: put that file at {path} (the "
                f"default job writes checkpoints/sam2_micro_synthetic.pt; official weights: "
                f"python -m mosam_train.models.download)."
            )
        if found != base["sha256"]:
            raise ValueError(
                f"{hint} {path} now has sha256 {found}: a different SAM 2. Fix: restore "
                f"the base it was trained on; MoSAM weights do not transfer to another base."
            )
        load_sam2_weights(self.model.sam2, path, variant=base["variant"])
        self._base_sha = found
        state = checkpoint["state_dict"]
        for key, value in self.state_dict().items():
            if key.startswith("model.") and key not in state:
                state[key] = value

    def export_sam2_weights(self, path: str | Path) -> Path:
        """Write SAM 2's weights in the official format ({"model": state_dict}); never
        non-finite ones."""
        state = self.model.sam2.state_dict()
        require_finite(state, f"export to {path}")
        return save_atomic({"model": state}, path)

    # ------------------------------------------------------------------ training
    def _clip_flows(self, batch: ClipBatch) -> torch.Tensor | None:
        """The clips' optical flow: from the data workers, else computed here."""
        if not self.model.needs_flow:
            return None
        if batch.flows is not None:
            return batch.flows
        b, t = batch.frames.shape[:2]
        flows = torch.zeros(b, t, 2, *batch.frames.shape[-2:], device=batch.frames.device)
        cur, prev = batch.frames[:, 1:].flatten(0, 1), batch.frames[:, :-1].flatten(0, 1)
        flows[:, 1:] = self.model.flow_provider(cur, prev).view(b, t - 1, 2, *flows.shape[-2:])
        return flows

    def training_step(self, batch: ClipBatch, batch_idx: int) -> torch.Tensor:
        clip_idx, obj_idx = batch.object_valid.nonzero(as_tuple=True)
        # [B, T, O, S, S] -> [T, N, S, S] for the N valid objects.
        targets = batch.masks[clip_idx, :, obj_idx].transpose(0, 1)
        prompt = self.prompt_sim.sample(targets[0])
        steps = [m.get("frame_step", 1) for m in batch.meta] or [1]
        outputs = self.model.forward_clip(
            batch.frames,
            clip_idx,
            prompt,
            flows=self._clip_flows(batch),
            frame_step=int(np.median(steps)),
        )
        losses = self.criterion(outputs, targets)
        n = float(len(clip_idx))
        total = losses["loss"]
        terms = {f"train/{k}": losses[k] for k in LOSS_TERMS}
        for name, value in auxiliary_losses(outputs, targets, self.frame_target).items():
            total = total + self.aux_weights[name] * value
            terms[f"train/loss_{name}"] = value
        self.step_losses = {
            "train/loss": total.detach(),
            **{k: v.detach() for k, v in terms.items()},
        }
        self.log("train/loss", total, prog_bar=True, batch_size=n)
        for k, v in terms.items():
            self.log(k, v, batch_size=n)
        with torch.no_grad():
            # the tracked frames; a one-frame clip (image training) has only the prompted one
            first = 1 if len(outputs) > 1 else 0
            pred = torch.stack([o["pred_masks_high_res"][:, 0] > 0 for o in outputs[first:]])
            gt = targets[first:]
            inter = (pred & gt).flatten(2).sum(-1).float()
            union = (pred | gt).flatten(2).sum(-1).float()
            iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        self.log("train/iou", iou.mean() * 100, prog_bar=True, batch_size=n)
        flow_seconds = [m["flow_seconds"] for m in batch.meta if "flow_seconds" in m]
        if flow_seconds:  # optical flow computed in the data workers for this batch
            self.log("train/flow_seconds", float(sum(flow_seconds)), batch_size=n)
        return total

    def on_train_epoch_end(self) -> None:
        # Clips skipped for unreadable or inconsistent files (the datamodule logs which).
        skipped = getattr(self.trainer.datamodule, "skipped", None)
        if skipped is not None:
            self.log("train/skipped_clips", float(skipped))

    # ------------------------------------------------------------------ validation
    def validation_tracker(self) -> TrackerRule:
        """The rule validation runs with (`tracker_cfg`). Built on first use, not when a
        checkpoint loads: eval and predict bring their own, so a checkpoint whose rule
        this process does not know still loads."""
        if self._tracker is None:
            self._tracker = build_tracker(self.tracker_cfg)
        return self._tracker

    def propagator(self, tracker: TrackerRule | None = None) -> VideoPropagator:
        """The streaming engine on this model under `tracker` (eval and predict build it
        from their `tracker=` config); None: `validation_tracker()`."""
        return VideoPropagator(
            self.model, tracker if tracker is not None else self.validation_tracker()
        )

    def keep_validation_labels(self, num_videos: int) -> None:
        """Make the next validation return the predicted label maps of its first
        `num_videos` videos (0: none), for pictures (`ValidationPlots`)."""
        self.val_keep_labels = max(0, int(num_videos))

    def validation_step(self, record: VideoRecord, batch_idx: int) -> dict[str, Any] | None:
        """Scores the video; for the first `val_keep_labels` videos (`keep_validation_labels`)
        also returns the predictions as label maps (`plots.index_labels`: k + 1 for the
        record's k-th object) by frame index. A video too short to score
        (`unscorable_videos`) is warned about once and left out of J&F."""
        keep = batch_idx < self.val_keep_labels
        labels: dict[int, np.ndarray] = {}

        def on_frame(frame: FramePrediction) -> None:
            labels[frame.frame_idx] = index_labels(frame.masks)

        first = record.first_appearance()
        if record.name not in self.val_unscorable:  # warned about once per run
            self.val_unscorable.update(unscorable_videos([record], {record.name: first}))
        unscorable = record.name in self.val_unscorable
        if unscorable and not keep:
            return None
        rows = run_record(
            self.propagator(),
            record,
            self.model.image_size,
            on_frame=on_frame if keep else None,
            score=not unscorable,
            first=first,
        )
        if not unscorable:
            self.val_jf.update(rows)
        return {"record": record, "labels": labels} if keep else None

    def on_validation_epoch_end(self) -> None:
        result = self.val_jf.compute()
        self.val_jf.reset()
        self.val_jf_best.update(torch.tensor(result["JF"]))
        # val/j, val/f, val/jf, the diagnostics, and per tag val/<tag>/jf, ...
        for name, value in logged_values(result).items():
            self.log(f"val/{name}", value, prog_bar=name == "jf", sync_dist=True)
        self.log("val/jf_best", self.val_jf_best.compute(), prog_bar=True, sync_dist=True)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        return self.optimizer_config(int(self.trainer.estimated_stepping_batches))

    def optimizer_config(self, total_steps: int) -> dict[str, Any]:
        """AdamW over the trainable parameters (image encoder and no-decay groups apart)
        and its per-step schedule for a run of `total_steps` steps: what
        `configure_optimizers` returns, usable without a Trainer (benchmarks, tests)."""
        cfg = self.optim_cfg
        groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            key = (name.startswith("sam2.image_encoder."), _no_decay(name, p))
            groups.setdefault(key, []).append(p)
        param_groups = [
            {
                "params": params,
                "lr": cfg["lr_image_encoder"] if is_enc else cfg["lr"],
                "weight_decay": 0.0 if no_decay else cfg["weight_decay"],
            }
            for (is_enc, no_decay), params in sorted(groups.items())
        ]
        optimizer = torch.optim.AdamW(param_groups, betas=tuple(cfg["betas"]))
        total = max(1, total_steps)
        warmup = int(cfg["warmup_steps"])
        floor = float(cfg["min_lr_ratio"])

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
