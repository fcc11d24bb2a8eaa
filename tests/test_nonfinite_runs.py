"""A diverging `train.py` stops with a non-zero exit at the step where the loss went
non-finite, with no best checkpoint, no export, and the shared export untouched; under DDP
a non-finite loss on one process stops both."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from mosam_train.checkpoint_files import nonfinite_entries
from mosam_train.lit.module import MoSAMModule


class PoisonBatch(L.Callback):
    """Fills process `rank`'s batch at global step `step` with NaN (a corrupt clip)."""

    def __init__(self, rank: int, step: int) -> None:
        self.rank, self.step = rank, step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            batch.frames.fill_(float("nan"))


@pytest.mark.slow
def test_diverging_run_stops_non_zero_without_best_or_export(run_script, small_data, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "sam2_micro_synthetic.pt").write_bytes(b"a trained base")
    out = tmp_path / "run"
    proc = run_script(
        "train.py",
        *small_data(),
        "callbacks.rich_progress_bar=null",
        "model.optim.lr=1e4",
        "trainer.max_steps=30",
        "trainer.val_check_interval=15",
        "callbacks.last_checkpoint.every_n_train_steps=1",
        f"export.publish_dir={shared}",
        "export.publish_min_steps=0",
        f"hydra.run.dir={out}",
        ok=False,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    assert "Training stopped: non-finite" in log, log[-3000:]
    step = int(log.split("non-finite", 1)[1].split("global step ")[1].split()[0].strip(".,"))
    assert 0 < step < 15  # it diverged long before the first validation
    assert "Training stopped" in (out / "train.log").read_text()
    ckpts = out / "checkpoints"
    assert not list(ckpts.glob("step*.ckpt"))  # never validated, so never "best"
    last = torch.load(ckpts / "last.ckpt", weights_only=True)
    assert last["global_step"] == step  # the last finite state, from just before it
    assert not nonfinite_entries(MoSAMModule.checkpoint_weights(last["state_dict"]))
    assert not (out / "export").exists()
    assert (shared / "sam2_micro_synthetic.pt").read_bytes() == b"a trained base"
    assert sorted(p.name for p in shared.iterdir()) == ["sam2_micro_synthetic.pt"]


@pytest.mark.slow
def test_ddp_non_finite_loss_on_one_process_stops_both(run_script, small_data, tmp_path):
    out = tmp_path / "run"
    proc = run_script(
        "train.py",
        "trainer=ddp_cpu",
        *small_data(),
        "callbacks.rich_progress_bar=null",
        "data.batch_size=2",
        "trainer.max_steps=6",
        "trainer.val_check_interval=6",
        "+callbacks.poison._target_=tests.test_nonfinite_runs.PoisonBatch",
        "+callbacks.poison.rank=1",
        "+callbacks.poison.step=2",
        "callbacks.last_checkpoint.every_n_train_steps=1",
        "export.name=null",
        f"hydra.run.dir={out}",
        one_thread=True,
        ok=False,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    expected = "non-finite train/loss (on 1 of 2 processes)"
    for rank_log in ("train.log", "train_rank1.log"):  # each process stopped, at step 2
        text = (out / rank_log).read_text()
        assert expected in text and "global step 2" in text, (rank_log, text[-2000:])
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2
