"""The non-finite guard: a NaN/inf loss term or gradient stops the run at the step where it
first appears (or skips that update, a limited number of times), and no checkpoint with
non-finite weights is ever written."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from mosam_train.checkpoint_files import nonfinite_entries
from mosam_train.lit.callbacks import LastCheckpoint
from mosam_train.lit.checkpoint_io import AtomicCheckpointIO
from mosam_train.lit.nonfinite import NonFiniteError, NonFiniteGuard


class Toy(L.LightningModule):
    """A linear model whose step `bad_steps` goes non-finite in its loss (`where="loss"`)
    or only in its gradients (`where="grad"`: sqrt at 0 has an infinite derivative)."""

    def __init__(self, bad_steps: set[int], where: str = "loss") -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.bad_steps, self.where = bad_steps, where
        self.step_losses: dict[str, torch.Tensor] = {}
        self.weights_seen: dict[int, torch.Tensor] = {}

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.weights_seen[self.global_step] = self.layer.weight.detach().clone()
        fit = self.layer(batch).pow(2).mean()
        aux = fit * 0
        if self.global_step in self.bad_steps:
            if self.where == "loss":
                aux = aux + float("nan")
            else:
                aux = torch.sqrt(self.layer.weight.sum() * 0)  # value 0, gradient NaN
        self.step_losses = {"train/loss": (fit + aux).detach(), "train/loss_aux": aux.detach()}
        return fit + aux

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=0.1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(torch.randn(64, 4), batch_size=4)


def fit(module: Toy, tmp_path, guard: NonFiniteGuard, steps: int = 8) -> L.Trainer:
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=True,
        callbacks=[guard, LastCheckpoint(tmp_path, every_n_train_steps=1)],
        plugins=[AtomicCheckpointIO()],
        default_root_dir=tmp_path,
    )
    trainer.fit(module)
    return trainer


@pytest.mark.parametrize("where", ["loss", "grad"])
def test_stops_at_the_first_non_finite_step_and_keeps_the_finite_checkpoint(tmp_path, where):
    module = Toy({3}, where)
    with pytest.raises(NonFiniteError) as e:
        fit(module, tmp_path, NonFiniteGuard())
    text = str(e.value)
    assert "global step 3" in text
    if where == "loss":
        assert "train/loss_aux" in text and "train/loss" in text
    else:
        assert "gradients" in text and "train/loss_aux" not in text
    assert "model.optim.lr" in text and "trainer.precision" in text  # the settings to look at
    assert not nonfinite_entries(module.state_dict())  # the bad update never happened
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3  # written after step 3's update ... (0-based: 3 steps)
    assert not nonfinite_entries(last["state_dict"])
    assert torch.equal(last["state_dict"]["layer.weight"], module.weights_seen[3])


def test_skip_mode_skips_the_update_then_stops_past_its_limit(tmp_path):
    module = Toy({2, 4})
    guard = NonFiniteGuard(mode="skip", max_skips=2)
    fit(module, tmp_path, guard)
    assert guard.skipped == 2
    # a skipped step leaves the weights as they were (AdamW sees no gradient)
    assert torch.equal(module.weights_seen[2], module.weights_seen[3])
    assert not torch.equal(module.weights_seen[3], module.weights_seen[4])  # steps resume
    assert not nonfinite_entries(module.state_dict())

    module = Toy({2, 4, 5})
    with pytest.raises(NonFiniteError, match=r"global step 5 after 2 skipped"):
        fit(module, tmp_path / "b", NonFiniteGuard(mode="skip", max_skips=2))


def test_non_finite_weights_are_never_validated_or_written(tmp_path):
    module = Toy(set())
    trainer = fit(module, tmp_path, NonFiniteGuard(), steps=1)
    with torch.no_grad():
        module.layer.bias.fill_(float("inf"))
    with pytest.raises(NonFiniteError, match=r"layer.bias.*before validation"):
        NonFiniteGuard().on_validation_start(trainer, module)
    before = (tmp_path / "last.ckpt").read_bytes()
    with pytest.raises(NonFiniteError, match=r"layer.bias.*instead of saving"):
        trainer.save_checkpoint(tmp_path / "last.ckpt")  # the guard is among the callbacks
    assert (tmp_path / "last.ckpt").read_bytes() == before  # the finite file is kept


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="mode"):
        NonFiniteGuard(mode="ignore")
    with pytest.raises(ValueError, match="max_skips"):
        NonFiniteGuard(max_skips=-1)
