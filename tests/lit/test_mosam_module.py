"""model=mosam under Lightning: SAM 2 stays frozen, checkpoints name their base."""

import lightning as L
import pytest
import torch

from mosam_train.data.datamodule import VOSDataModule
from mosam_train.lit.module import MoSAMModule
from mosam_train.models.sam2_builder import build_sam2

MICRO = {"variant": "sam2.1_micro", "image_size": 128, "overrides": {}}
MOSAM = {
    "prompts": {"prob_mask": 1.0},
    "loss": {"weight_mask": 1.0},
    "optim": {"lr": 1e-2, "lr_image_encoder": 0.0, "weight_decay": 0.0},
    "mgp": {"sparse": True, "dense": True, "history": 3},
    "stms": {"stride": 1, "candidates": 8, "top_k": 3},
    "flow": {"name": "farneback"},
    "freeze_sam2": True,
}


class ModeSpy(L.Callback):
    """Records SAM 2's and MoSAM's module modes at every training batch."""

    def __init__(self) -> None:
        self.sam2_training, self.mosam_training = [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.sam2_training.append(any(m.training for m in module.model.sam2.modules()))
        self.mosam_training.append(all(m.training for m in module.model.mgp.modules()))


@pytest.fixture(scope="module")
def base_weights(tmp_path_factory):
    torch.manual_seed(0)
    sam = build_sam2("sam2.1_micro")
    path = tmp_path_factory.mktemp("base") / "base.pt"
    torch.save({"model": sam.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def fitted(base_weights, small_synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("mosam_fit")
    torch.manual_seed(0)
    module = MoSAMModule(sam2={**MICRO, "weights": str(base_weights)}, **MOSAM)
    # the base's weights, which setup("fit") loads
    base = torch.load(base_weights, weights_only=True)["model"]
    dm = VOSDataModule(
        root=small_synthetic,
        image_size=128,
        clip_len=10,
        max_skip=1,
        max_objects=2,
        batch_size=1,
        num_workers=0,
        samples_per_epoch=4,
        val_max_videos=1,
        flow={"name": "farneback"},
    )
    spy = ModeSpy()
    grads = {}

    class GradSpy(L.Callback):
        def on_before_optimizer_step(self, trainer, module, optimizer):
            for name, p in module.named_parameters():
                if p.grad is not None and p.grad.abs().sum() > 0:
                    grads[name] = True

    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=4,
        val_check_interval=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        default_root_dir=out,
        callbacks=[
            spy,
            GradSpy(),
            L.pytorch.callbacks.ModelCheckpoint(dirpath=out, save_last=True),
        ],
    )
    trainer.fit(module, datamodule=dm)
    return module, base, spy, grads, out / "last.ckpt"


def test_sam2_stays_frozen_and_in_eval_mode(fitted):
    module, base, spy, grads, _ = fitted
    for k, v in module.model.sam2.state_dict().items():
        assert torch.equal(v, base[k]), k  # bit-identical after training steps
    assert grads and all(n.startswith(("model.mgp.", "model.stms.")) for n in grads), grads
    assert not any(p.requires_grad for p in module.model.sam2.parameters())
    # every batch, including those after a validation round
    assert len(spy.sam2_training) == 4 and not any(spy.sam2_training)
    assert all(spy.mosam_training)


def test_checkpoint_holds_mosam_weights_and_names_its_base(fitted, base_weights):
    module, _, _, _, ckpt_path = fitted
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    model_keys = [k for k in ckpt["state_dict"] if k.startswith("model.")]
    assert model_keys and all(k.startswith(("model.mgp.", "model.stms.")) for k in model_keys)
    base = ckpt["sam2_base"]
    assert base["variant"] == "sam2.1_micro" and base["path"] == str(base_weights)
    assert len(base["sha256"]) == 64
    loaded = MoSAMModule.load_from_checkpoint(ckpt_path, map_location="cpu")
    for k, v in module.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_checkpoint_without_its_base_fails_clearly(fitted, base_weights, tmp_path):
    _, _, _, _, ckpt_path = fitted
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    moved = dict(ckpt, sam2_base={**ckpt["sam2_base"], "path": str(tmp_path / "gone.pt")})
    torch.save(moved, tmp_path / "moved.ckpt")
    with pytest.raises(FileNotFoundError, match=r"gone\.pt.*does not exist"):
        MoSAMModule.load_from_checkpoint(tmp_path / "moved.ckpt", map_location="cpu")

    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    torch.save({"model": build_sam2("sam2.1_micro").state_dict()}, other)
    swapped = dict(ckpt, sam2_base={**ckpt["sam2_base"], "path": str(other)})
    torch.save(swapped, tmp_path / "swapped.ckpt")
    with pytest.raises(ValueError, match="a different SAM 2"):
        MoSAMModule.load_from_checkpoint(tmp_path / "swapped.ckpt", map_location="cpu")


def test_mosam_needs_base_weights_to_checkpoint():
    module = MoSAMModule(sam2={**MICRO, "weights": None}, **MOSAM)
    with pytest.raises(ValueError, match=r"model\.sam2\.weights"):
        module.on_save_checkpoint({"state_dict": module.state_dict()})


def test_checkpoint_on_a_shipped_base_loads_from_the_package(
    fitted, base_weights, tmp_path, monkeypatch
):
    """A base named `shipped:<name>` is recorded by name and found wherever the package is."""
    from mosam_train.checkpoint_files import sha256_of
    from mosam_train.models.shipped import SHIPPED, ShippedWeights

    entry = ShippedWeights(
        "lit_base", "base.pt", "sam2.1_micro", sha256_of(base_weights), 4, False, "-"
    )
    monkeypatch.setitem(SHIPPED, "lit_base", entry)
    monkeypatch.setattr(ShippedWeights, "path", lambda self: base_weights)
    module = MoSAMModule(sam2={**MICRO, "weights": "shipped:lit_base"}, **MOSAM)
    assert module._base_record() == {
        "variant": "sam2.1_micro",
        "path": "shipped:lit_base",
        "sha256": entry.sha256,
    }
    module, _, _, _, ckpt_path = fitted
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    named = dict(ckpt, sam2_base={**ckpt["sam2_base"], "path": "shipped:lit_base"})
    torch.save(named, tmp_path / "named.ckpt")
    loaded = MoSAMModule.load_from_checkpoint(tmp_path / "named.ckpt", map_location="cpu")
    for k, v in module.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
