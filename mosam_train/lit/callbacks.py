"""Callbacks: schedules that act on the data rather than the model, and validation plots."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L

log = logging.getLogger(__name__)


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
    """After each validation, a bar chart of J&F per video (coloured by tag) under
    `<run dir>/plots/`, also logged to wandb when a `WandbLogger` is on.

    It reads the module's `val_jf` rows before the module computes and resets them; under
    DDP the rows of every rank are gathered first (a collective: all ranks take part) and
    rank zero draws.
    """

    def __init__(self, every_n_validations: int = 1) -> None:
        self.every = max(1, every_n_validations)
        self.count = 0

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metric = getattr(pl_module, "val_jf", None)
        if trainer.sanity_checking or metric is None:
            return
        self.count += 1
        if (self.count - 1) % self.every:
            return
        with metric.sync_context():
            rows = metric.rows()
        if not trainer.is_global_zero or not rows:
            return
        from mosam_train.metrics.plots import plot_video_scores

        out = Path(trainer.default_root_dir) / "plots"
        path = plot_video_scores(
            rows, out / f"val_step{trainer.global_step:06d}_jf_per_video.png",
            title=f"validation J&F per video, step {trainer.global_step}",
        )  # fmt: skip
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):  # WandbLogger
                logger.log_image(
                    key="val/jf_per_video", images=[str(path)], step=trainer.global_step
                )
        log.info("validation plot: %s", path)

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.count = int(state_dict.get("count", 0))
