"""Callbacks: per-step seeding, schedules that act on the data rather than the model, and
validation plots."""

from __future__ import annotations

import bisect
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint

if TYPE_CHECKING:
    from mosam_train.lit.module import MoSAMModule

log = logging.getLogger(__name__)


class LastCheckpoint(Checkpoint):
    """`<dirpath>/last.ckpt`: every `every_n_train_steps` optimizer steps, after each
    validation and at the end of training, so a kill loses at most N steps.

    A `Checkpoint`, so Lightning runs it after the other callbacks (the best-model
    checkpoint included) and the file holds their final state. Files are written through
    the trainer's checkpoint IO (atomic with `AtomicCheckpointIO`).
    """

    FILE = "last.ckpt"

    def __init__(self, dirpath: str | Path, every_n_train_steps: int = 100) -> None:
        if every_n_train_steps < 1:
            raise ValueError(f"every_n_train_steps must be >= 1, got {every_n_train_steps}")
        self.path = Path(dirpath) / self.FILE
        self.every = int(every_n_train_steps)
        self._saved: tuple[int, bool] | None = None  # (step, after validation)

    def _save(self, trainer: L.Trainer, validated: bool) -> None:
        if self._saved == (trainer.global_step, validated) or trainer.sanity_checking:
            return
        for logger in trainer.loggers:  # what was logged so far is on disk with the checkpoint
            logger.save()
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved = (trainer.global_step, validated)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step % self.every == 0:
            self._save(trainer, validated=False)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._save(trainer, validated=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer, validated=True)


class StepSeed(L.Callback):
    """Seeds the global RNGs (torch on every device, numpy, random) before each training
    batch from (seed, process rank, epoch, batch index).

    The random draws of a step (dropout, prompt simulation) are then a function of where
    the step is, not of everything drawn before it: a run resumed from a checkpoint draws
    exactly what the uninterrupted run drew, with no RNG state to save, and every DDP
    process draws its own stream.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        entropy = [self.seed, trainer.global_rank, trainer.current_epoch, batch_idx]
        seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # CUDA devices too


class MaxSkipCurriculum(L.Callback):
    """Changes the clip sampler's max frame skip as training progresses.

    `schedule` is a list of ``[fraction of training, max_skip in video frames]`` pairs,
    e.g. ``[[0, 5], [0.1, 10], [0.3, 15], [0.8, 5]]`` (short gaps first, long ones once the
    model tracks, short again to finish, as XMem trains). Fractions are of
    `trainer.estimated_stepping_batches`, so one schedule fits runs of any length. The value
    reaches every DataLoader worker through the dataset's shared memory; clips already
    prefetched keep the skip they were drawn with.
    """

    def __init__(self, schedule: Sequence[Sequence[float]]) -> None:
        pairs = sorted((float(f), int(s)) for f, s in schedule)
        if not pairs or pairs[0][0] > 0 or any(s < 1 for _, s in pairs):
            raise ValueError(
                f"schedule {schedule}: need [fraction, max_skip] pairs starting at fraction 0 "
                f"with max_skip >= 1"
            )
        self.fractions = [f for f, _ in pairs]
        self.skips = [s for _, s in pairs]
        self.current: int | None = None

    def skip_at(self, fraction: float) -> int:
        """The max skip in force at `fraction` of training."""
        return self.skips[bisect.bisect_right(self.fractions, fraction) - 1]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._apply(trainer)  # before the first clips are drawn (and after a resume)

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self._apply(trainer)

    def _apply(self, trainer: L.Trainer) -> None:
        total = max(1, int(trainer.estimated_stepping_batches))
        skip = self.skip_at(trainer.global_step / total)
        if skip != self.current:
            dataset = getattr(trainer.datamodule, "train_dataset", None)
            if dataset is None or not hasattr(dataset, "set_max_skip"):
                raise RuntimeError("MaxSkipCurriculum needs a datamodule with a ClipDataset")
            dataset.set_max_skip(skip)
            log.info("step %d: max frame skip -> %d", trainer.global_step, skip)
            self.current = skip

    def state_dict(self) -> dict[str, Any]:
        return {"current": self.current}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.current = None  # re-applied to the fresh dataset on the first batch


class ValidationPlots(L.Callback):
    """After each validation, pictures under `<run dir>/plots/`, also logged to every logger
    that takes images (wandb media, TensorBoard images; `mosam_train.lit.loggers`):

    - `val_stepNNNNNN_jf_per_video.png`: J&F per video, coloured by tag (`val/jf_per_video`);
    - `overlays/val_stepNNNNNN_<video>.png` for the first `overlay_videos` videos: the
      predicted masks blended into `overlay_frames` frames spread over the video, above the
      ground truth where the frame has one (`val/overlay/<video>`).

    It asks the module for label maps (`MoSAMModule.keep_validation_labels`) and reads its
    `val_jf` rows before the module computes and resets them; under DDP the rows of every
    rank are gathered first (a collective: all ranks take part) and rank zero draws
    (overlays: of the first videos of rank zero's share).
    """

    def __init__(
        self, every_n_validations: int = 1, overlay_videos: int = 1, overlay_frames: int = 4
    ) -> None:
        self.every = max(1, every_n_validations)
        self.overlay_videos = max(0, overlay_videos)
        self.overlay_frames = max(1, overlay_frames)
        self.count = 0
        self._overlays: list[tuple[str, Path]] = []

    def _drawing(self, trainer: L.Trainer) -> bool:
        """Whether this validation (about to end, or running) is one that draws."""
        return not trainer.sanity_checking and self.count % self.every == 0

    def on_validation_start(self, trainer: L.Trainer, pl_module: MoSAMModule) -> None:
        self._overlays = []
        pl_module.keep_validation_labels(self.overlay_videos if self._drawing(trainer) else 0)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.is_global_zero or not isinstance(outputs, dict):
            return
        record, labels = outputs.get("record"), outputs.get("labels")
        if record is None or not labels:
            return
        from mosam_train.metrics.plots import index_labels, plot_overlays

        predicted = sorted(labels)
        annotated = [t for t in record.annotated_frames if t in labels]
        pool = annotated or predicted
        spread = np.linspace(0, len(pool) - 1, self.overlay_frames).round().astype(int)
        picks = sorted({pool[i] for i in spread})
        rows = {"prediction": [labels[t] for t in picks]}
        if annotated:
            rows["ground truth"] = [index_labels(record.load_masks(t)) for t in picks]
        step = trainer.global_step
        path = plot_overlays(
            list(record.load_frames(picks)), rows, picks,
            Path(trainer.default_root_dir) / "plots" / "overlays"
            / f"val_step{step:06d}_{record.name}.png",
            title=f"{record.name}, step {step}",
        )  # fmt: skip
        self._overlays.append((record.name, path))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: MoSAMModule) -> None:
        if trainer.sanity_checking:
            return
        drawing = self._drawing(trainer)
        self.count += 1
        if not drawing:
            return
        with pl_module.val_jf.sync_context():
            rows = pl_module.val_jf.rows()
        if not trainer.is_global_zero or not rows:
            return
        from mosam_train.lit.loggers import log_image
        from mosam_train.metrics.plots import plot_video_scores

        step = trainer.global_step
        out = Path(trainer.default_root_dir) / "plots"
        path = plot_video_scores(
            rows, out / f"val_step{step:06d}_jf_per_video.png",
            title=f"validation J&F per video, step {step}",
        )  # fmt: skip
        log_image(trainer.loggers, "val/jf_per_video", path, step)
        for name, overlay in self._overlays:
            log_image(trainer.loggers, f"val/overlay/{name}", overlay, step, caption=name)
        log.info("validation plots: %s (overlays: %d)", path, len(self._overlays))

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.count = int(state_dict.get("count", 0))
