"""The LightningModule: SAM 2 trained on clips, validated by streaming J&F on whole videos.

Hyperparameters are plain dicts (the entry points convert Hydra configs), so a checkpoint
loads with `MoSAMModule.load_from_checkpoint(path)` and `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torchmetrics import MaxMetric

from mosam_train.data.video import ClipBatch, VideoRecord
from mosam_train.inference.engine import VideoPropagator
from mosam_train.inference.vos import run_record
from mosam_train.metrics.metric import VideoJF
from mosam_train.models.losses import LOSS_TERMS, SAM2VideoLoss
from mosam_train.models.prompts import PromptSimulation
from mosam_train.models.sam2_builder import build_sam2, load_sam2_weights
from mosam_train.models.video_sam import VideoSAM

DEFAULT_OPTIM = {
    "lr": 5e-6,
    "lr_image_encoder": 3e-6,
    "weight_decay": 0.1,
    "betas": (0.9, 0.999),
    "warmup_steps": 0,
    "min_lr_ratio": 0.1,
}


def _no_decay(name: str, p: torch.Tensor) -> bool:
    """Biases, norms and embeddings (1-D tensors) get no weight decay, as in SAM 2's recipe."""
    return p.ndim <= 1 or name.endswith(".bias")


class MoSAMModule(L.LightningModule):
    """SAM 2 fine-tuning with SAM 2's prompt simulation and loss (the baseline MoSAM builds on).

    sam2: {variant, image_size, weights, overrides}; prompts: PromptSimulation fields;
    loss: SAM2VideoLoss fields; optim: see DEFAULT_OPTIM; inference: {memory}.
    """

    def __init__(
        self,
        sam2: dict[str, Any],
        prompts: dict[str, Any] | None = None,
        loss: dict[str, Any] | None = None,
        optim: dict[str, Any] | None = None,
        inference: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = VideoSAM(
            build_sam2(
                sam2["variant"],
                overrides=sam2.get("overrides") or {},
                image_size=sam2.get("image_size"),
            )
        )
        self.prompt_sim = PromptSimulation(**(prompts or {}))
        self.criterion = SAM2VideoLoss(**(loss or {}))
        self.optim_cfg = {**DEFAULT_OPTIM, **(optim or {})}
        self.inference_cfg = {"memory": "full", **(inference or {})}
        self.val_jf = VideoJF()
        self.val_jf_best = MaxMetric()
        self.val_jf_best.persistent(True)

    # ------------------------------------------------------------------ weights
    def load_initial_weights(self) -> None:
        """Initialise SAM 2 from `sam2.weights` (official .pt or a checkpoint of this project)."""
        weights = self.hparams.sam2.get("weights")
        if weights:
            load_sam2_weights(self.model.sam2, weights, variant=self.hparams.sam2["variant"])

    def setup(self, stage: str) -> None:
        # Before a resumed fit restores its checkpoint, which then overwrites these weights.
        if stage == "fit":
            self.load_initial_weights()

    def export_sam2_weights(self, path: str | Path) -> Path:
        """Write SAM 2's weights in the official format ({"model": state_dict})."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({"model": self.model.sam2.state_dict()}, tmp)
        tmp.replace(path)
        return path

    # ------------------------------------------------------------------ training
    def training_step(self, batch: ClipBatch, batch_idx: int) -> torch.Tensor:
        clip_idx, obj_idx = batch.object_valid.nonzero(as_tuple=True)
        # [B, T, O, S, S] -> [T, N, S, S] for the N valid objects.
        targets = batch.masks[clip_idx, :, obj_idx].transpose(0, 1)
        prompt = self.prompt_sim.sample(targets[0])
        outputs = self.model.forward_clip(batch.frames, clip_idx, prompt)
        losses = self.criterion(outputs, targets)
        n = float(len(clip_idx))
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=n)
        for k in LOSS_TERMS:
            self.log(f"train/{k}", losses[k], batch_size=n)
        with torch.no_grad():
            pred = torch.stack([o["pred_masks_high_res"][:, 0] > 0 for o in outputs[1:]])
            gt = targets[1:]
            inter = (pred & gt).flatten(2).sum(-1).float()
            union = (pred | gt).flatten(2).sum(-1).float()
            iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        self.log("train/iou", iou.mean() * 100, prog_bar=True, batch_size=n)
        return losses["loss"]

    def on_train_epoch_start(self) -> None:
        # Under DDP Lightning wraps the sampler and does not forward set_epoch to it.
        set_epoch = getattr(self.trainer.datamodule, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(self.current_epoch)

    def on_train_epoch_end(self) -> None:
        # Clips skipped for unreadable or inconsistent files (the datamodule logs which).
        skipped = getattr(self.trainer.datamodule, "skipped", None)
        if skipped is not None:
            self.log("train/skipped_clips", float(skipped))

    # ------------------------------------------------------------------ validation
    def propagator(self) -> VideoPropagator:
        return VideoPropagator(self.model, memory=self.inference_cfg["memory"])

    def validation_step(self, record: VideoRecord, batch_idx: int) -> None:
        rows = run_record(self.propagator(), record, self.model.image_size)
        self.val_jf.update(rows)

    def on_validation_epoch_end(self) -> None:
        result = self.val_jf.compute()
        self.val_jf.reset()
        self.val_jf_best.update(torch.tensor(result["JF"]))
        self.log("val/j", result["J"], sync_dist=True)
        self.log("val/f", result["F"], sync_dist=True)
        self.log("val/jf", result["JF"], prog_bar=True, sync_dist=True)
        self.log("val/jf_best", self.val_jf_best.compute(), prog_bar=True, sync_dist=True)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.optim_cfg
        groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
        for name, p in self.model.sam2.named_parameters():
            if not p.requires_grad:
                continue
            key = (name.startswith("image_encoder."), _no_decay(name, p))
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
        total = max(1, int(self.trainer.estimated_stepping_batches))
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
