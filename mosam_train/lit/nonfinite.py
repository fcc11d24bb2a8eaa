"""Non-finite training: found at the step where it starts, never trained on in silence.

Without a guard a NaN loss trains on: the weights turn NaN, validation scores the NaN
model, it becomes the best checkpoint and is exported, and the run exits 0.
`NonFiniteGuard` checks each step's loss terms and gradients before the optimizer uses
them, and the weights before each validation and each checkpoint, so the checkpoints on
disk stay the last finite ones.
"""

from __future__ import annotations

import logging
from itertools import chain
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from mosam_train.checkpoint_files import nonfinite_entries

log = logging.getLogger(__name__)

MODES = ("stop", "skip")


class NonFiniteError(RuntimeError):
    """Training met NaN or inf; the run stops without saving, validating or exporting it."""


def _settings(trainer: L.Trainer, optimizer: torch.optim.Optimizer | None) -> str:
    lrs = sorted({f"{g['lr']:.3g}" for g in optimizer.param_groups}) if optimizer else []
    return (
        f"Look at the learning rate (model.optim.lr, now {', '.join(lrs) or 'unknown'}), "
        f"the precision (trainer.precision, now {trainer.precision}) and gradient clipping "
        f"(trainer.gradient_clip_val, now {trainer.gradient_clip_val})."
    )


def nonfinite_weights(module: torch.nn.Module) -> list[str]:
    """Parameters and buffers holding NaN or inf (metric states, such as a running maximum
    that starts at -inf, are not weights)."""
    return nonfinite_entries(dict(chain(module.named_parameters(), module.named_buffers())))


class NonFiniteGuard(L.Callback):
    """Stops the run (`mode: stop`) at the first step whose loss terms or gradients hold NaN
    or inf, or skips that step's update (`mode: skip`, for rare bad batches) and stops after
    `max_skips` skips. Also stops before validating non-finite weights.

    The loss terms are the module's `step_losses` (name -> tensor, set in training_step).
    Under DDP the per-term flags are summed over the processes every step (one small
    all-reduce), so every process stops or skips at the same step. Under float16 mixed
    precision the gradient scaler already skips steps with inf gradients, so only the loss
    terms are checked there.
    """

    def __init__(self, mode: str = "stop", max_skips: int = 10) -> None:
        if mode not in MODES:
            raise ValueError(f"NonFiniteGuard mode={mode!r}: use one of {MODES}")
        if max_skips < 0:
            raise ValueError(f"NonFiniteGuard max_skips={max_skips}: need >= 0")
        self.mode = mode
        self.max_skips = int(max_skips)
        self.skipped = 0

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        losses: dict[str, torch.Tensor] = dict(getattr(pl_module, "step_losses", {}) or {})
        flags = [~torch.isfinite(v.detach()).all() for v in losses.values()]
        names = list(losses)
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if not (isinstance(trainer.precision_plugin, MixedPrecision) and scaler is not None):
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            if grads:
                norms = torch.stack(torch._foreach_norm(grads))
                flags.append(~torch.isfinite(norms).all())
                names.append("gradients")
        if not flags:
            return
        counts = trainer.strategy.reduce(torch.stack(flags).float(), reduce_op="sum")
        if not bool(counts.any()):  # the one host sync per step
            return
        bad = [
            f"{name} (on {int(c)} of {trainer.world_size} processes)"
            if trainer.world_size > 1
            else name
            for name, c in zip(names, counts.tolist(), strict=True)
            if c > 0
        ]
        what = f"non-finite {', '.join(bad)} at global step {trainer.global_step}"
        if self.mode == "skip" and self.skipped < self.max_skips:
            self.skipped += 1
            optimizer.zero_grad(set_to_none=True)  # AdamW leaves params without grads alone
            log.warning("%s: update skipped (%d of at most %d)", what, self.skipped, self.max_skips)
            pl_module.log("train/nonfinite_skipped", float(self.skipped))
            return
        limit = f" after {self.skipped} skipped step(s)" if self.mode == "skip" else ""
        self._stop(f"{what}{limit}. {_settings(trainer, optimizer)}")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_weights(trainer, pl_module, "before validation")

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._check_weights(trainer, pl_module, "instead of saving a checkpoint")

    def _check_weights(self, trainer: L.Trainer, pl_module: L.LightningModule, when: str) -> None:
        bad = nonfinite_weights(pl_module)
        if bad:
            optimizer = trainer.optimizers[0] if trainer.optimizers else None
            self._stop(
                f"weights with NaN or inf ({', '.join(bad[:5])}) at global step "
                f"{trainer.global_step}, {when}. {_settings(trainer, optimizer)}"
            )

    def _stop(self, message: str) -> None:
        message = (
            f"Training stopped: {message} The checkpoints already written are kept (none with "
            f"non-finite weights is written or exported)."
        )
        log.error(message)
        raise NonFiniteError(message)

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = int(state_dict.get("skipped", 0))
