"""MaxSkipCurriculum: the schedule by fraction of training, applied to the clip dataset."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mosam_train.lit.callbacks import MaxSkipCurriculum


class _Dataset:
    def __init__(self):
        self.calls = []

    def set_max_skip(self, v):
        self.calls.append(v)


def test_schedule_by_fraction_of_training():
    cb = MaxSkipCurriculum([[0.1, 10], [0, 5], [0.3, 15], [0.8, 5]])  # order does not matter
    ds = _Dataset()
    trainer = SimpleNamespace(
        estimated_stepping_batches=100, global_step=0, datamodule=SimpleNamespace(train_dataset=ds)
    )
    cb.on_train_start(trainer, None)
    for step in range(100):
        trainer.global_step = step
        cb.on_train_batch_start(trainer, None, None, step)
    assert ds.calls == [5, 10, 15, 5]  # applied only when it changes
    assert [cb.skip_at(f) for f in (0.0, 0.09, 0.1, 0.29, 0.3, 0.79, 0.8, 1.0)] == [5, 5, 10, 10, 15, 15, 5, 5]  # fmt: skip


@pytest.mark.parametrize("schedule", [[], [[0.2, 5]], [[0, 0]]])
def test_bad_schedules_are_refused(schedule):
    with pytest.raises(ValueError, match="schedule"):
        MaxSkipCurriculum(schedule)
