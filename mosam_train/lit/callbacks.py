"""Training schedules that act on the data rather than the model."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
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
