"""`shipped:` weights: found in the package, sha256 checked, named by MoSAM checkpoints."""

from pathlib import Path

import pytest
import torch

from mosam_train.checkpoint_files import sha256_of
from mosam_train.models import shipped
from mosam_train.models.sam2_builder import SAM2_VARIANTS, build_sam2, load_sam2_weights
from mosam_train.models.shipped import SHIPPED, ShippedWeights, ShippedWeightsError
from mosam_train.preflight import missing_inputs


@pytest.fixture
def fake_shipped(tmp_path, monkeypatch):
    """A shipped entry `shipped:test_base` whose file is a random-init micro in tmp_path."""
    torch.manual_seed(3)
    sam = build_sam2("sam2.1_micro")
    path = tmp_path / "test_base.pt"
    torch.save({"model": sam.state_dict()}, path)
    entry = ShippedWeights(
        name="test_base",
        file="test_base.pt",
        variant="sam2.1_micro",
        sha256=sha256_of(path),
        generator_version=4,
        multimask=False,
        command="python train.py experiment=sam2_micro_long",
    )
    monkeypatch.setitem(SHIPPED, "test_base", entry)
    monkeypatch.setattr(ShippedWeights, "path", lambda self: tmp_path / self.file)
    return sam, path


def test_a_path_is_passed_through(tmp_path):
    assert shipped.resolve_weights(tmp_path / "x.pt") == tmp_path / "x.pt"
    assert shipped.resolve_weights("checkpoints/a.pt") == Path("checkpoints/a.pt")


def test_shipped_weights_load_by_name(fake_shipped):
    sam, path = fake_shipped
    assert shipped.resolve_weights("shipped:test_base") == path
    model = build_sam2("sam2.1_micro", weights="shipped:test_base")
    for k, v in sam.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_unknown_name_lists_the_shipped_ones(fake_shipped):
    with pytest.raises(ShippedWeightsError, match=r"shipped:nope.*shipped:test_base"):
        shipped.resolve_weights("shipped:nope")


def test_changed_or_missing_file_is_refused(fake_shipped):
    _, path = fake_shipped
    torch.manual_seed(4)
    torch.save({"model": build_sam2("sam2.1_micro").state_dict()}, path)
    with pytest.raises(ShippedWeightsError, match=r"test_base\.pt has sha256 .* pinned"):
        load_sam2_weights(build_sam2("sam2.1_micro"), "shipped:test_base")
    path.unlink()
    with pytest.raises(ShippedWeightsError, match=r"missing from the installed package"):
        shipped.resolve_weights("shipped:test_base")


def test_preflight_names_a_broken_shipped_file(fake_shipped):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {"data": {"synthetic": True}, "model": {"sam2": {"weights": "shipped:test_base"}}}
    )
    assert missing_inputs(cfg) == []
    fake_shipped[1].unlink()
    (problem,) = missing_inputs(cfg)
    assert "shipped:test_base" in problem and "missing" in problem


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_file_is_in_the_package_and_pinned(name):
    entry = SHIPPED[name]
    assert entry.variant in SAM2_VARIANTS
    assert entry.path().is_file(), f"{entry.path()} is not tracked"
    assert sha256_of(entry.path()) == entry.sha256
    assert entry.path().stat().st_size <= 10 * 2**20  # the package stays small
    # loads strictly into the model it was trained as
    overrides = {"multimask_output_for_tracking": entry.multimask}
    model = build_sam2(entry.variant, overrides=overrides)
    load_sam2_weights(model, f"shipped:{name}", variant=entry.variant)
