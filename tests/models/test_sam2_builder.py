"""SAM 2 variants, the micro model and the weights-mismatch report (sam2_builder)."""

from __future__ import annotations

import inspect

import pytest
import torch
from omegaconf import DictConfig
from sam2.modeling.backbones.hieradet import Hiera

from mosam_train.data.formats.davis import read_davis
from mosam_train.inference.engine import VideoPropagator
from mosam_train.inference.sources import RecordFrames
from mosam_train.inference.vos import first_appearance_prompts
from mosam_train.models.sam2_builder import (
    _TRUNK_SIGNATURES,
    SAM2_VARIANTS,
    WeightsMismatchError,
    build_sam2,
    load_model_config,
    load_sam2_weights,
    multimask_from_single,
    read_sam2_state_dict,
)
from mosam_train.models.video_sam import VideoSAM

# SAM 2-style micro: the keys a SAM 2 (not 2.1) config lacks.
SAM2_STYLE = {"no_obj_embed_spatial": False, "proj_tpos_enc_in_obj_ptrs": False}


@pytest.fixture(scope="module")
def micro_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = build_sam2("sam2.1_micro")
    path = tmp_path_factory.mktemp("w") / "micro.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def tiny_model():
    """The one large-ish model these tests instantiate (39M params), built once."""
    return build_sam2("sam2.1_hiera_tiny")


@pytest.mark.parametrize("name", list(SAM2_VARIANTS))
def test_every_variant_config_composes(name):
    v = SAM2_VARIANTS[name]
    cfg = load_model_config(name)
    assert isinstance(cfg, DictConfig)
    assert cfg._target_ == "sam2.modeling.sam2_base.SAM2Base"
    assert int(cfg.image_size) == v.image_size
    assert cfg.image_encoder.trunk._target_.endswith("Hiera")
    # SAM 2.1 configs carry the 2.1-only modules, SAM 2 ones do not.
    assert bool(cfg.get("no_obj_embed_spatial", False)) == name.startswith("sam2.1")
    # Official variants have a URL, the micro ones do not.
    assert (v.url is None) == name.startswith("sam2.1_micro")
    if v.url:
        assert v.url.endswith(f"/{name}.pt")


@pytest.mark.parametrize("name", list(SAM2_VARIANTS))
def test_trunk_signature_names_the_variant_size(name):
    """The (width, blocks) table used to name mix-ups agrees with every variant's config."""
    trunk = load_model_config(name).image_encoder.trunk
    defaults = inspect.signature(Hiera).parameters
    width = int(trunk.get("embed_dim", defaults["embed_dim"].default))
    blocks = sum(trunk.get("stages", defaults["stages"].default))
    size = _TRUNK_SIGNATURES[(width, blocks)]
    assert name.endswith(size)


def test_instantiate_micro_and_tiny(tiny_model):
    micro = build_sam2("sam2.1_micro")
    assert micro.image_size == 128
    assert tiny_model.image_size == 1024
    n_tiny = sum(p.numel() for p in tiny_model.parameters())
    assert 38e6 < n_tiny < 40e6  # 38.9M (REFERENCE.md section 7)
    for model in (micro, tiny_model):
        assert hasattr(model, "no_obj_embed_spatial")


def test_micro_size_and_forward_image():
    model = build_sam2("sam2.1_micro").eval()
    n_params = sum(p.numel() for p in model.parameters())
    assert 0.5e6 < n_params < 1.5e6
    with torch.no_grad():
        out = model.forward_image(torch.randn(1, 3, 128, 128))
    assert out["vision_features"].shape == (1, 32, 8, 8)
    assert [tuple(f.shape[-2:]) for f in out["backbone_fpn"]] == [(32, 32), (16, 16), (8, 8)]


def test_micro_wide_size_and_forward_image(tmp_path):
    model = build_sam2("sam2.1_micro_wide").eval()
    n_params = sum(p.numel() for p in model.parameters())
    assert 2.0e6 < n_params < 2.5e6  # float32 weights under 10 MB
    with torch.no_grad():
        out = model.forward_image(torch.randn(1, 3, 128, 128))
    assert out["vision_features"].shape == (1, 64, 8, 8)
    path = tmp_path / "wide.pt"
    torch.save({"model": model.state_dict()}, path)
    with pytest.raises(WeightsMismatchError, match=r"a micro_wide model .* sam2=micro_wide\)"):
        load_sam2_weights(build_sam2("sam2.1_micro"), path, variant="sam2.1_micro")


def test_wrong_image_size_names_the_right_one():
    with pytest.raises(ValueError, match=r"image_size 128") as exc:
        build_sam2("sam2.1_micro", image_size=1024)
    assert "model.sam2.image_size=128" in str(exc.value)


def test_micro_weights_round_trip(micro_weights):
    model = build_sam2("sam2.1_micro")
    load_sam2_weights(model, micro_weights, variant="sam2.1_micro")
    sd = read_sam2_state_dict(micro_weights)
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_sam21_weights_into_sam2_style_model(micro_weights):
    model = build_sam2("sam2.1_micro", overrides=SAM2_STYLE)
    with pytest.raises(WeightsMismatchError) as exc:
        load_sam2_weights(model, micro_weights, variant="sam2.1_micro")
    msg = str(exc.value)
    assert "SAM 2 vs SAM 2.1" in msg
    assert "unexpected keys" in msg
    assert "no_obj_embed_spatial" in msg
    assert "obj_ptr_tpos_proj" in msg
    assert str(micro_weights) in msg


def test_sam2_weights_into_sam21_model(tmp_path):
    path = tmp_path / "sam2_style.pt"
    torch.save({"model": build_sam2("sam2.1_micro", overrides=SAM2_STYLE).state_dict()}, path)
    with pytest.raises(WeightsMismatchError) as exc:
        load_sam2_weights(build_sam2("sam2.1_micro"), path)
    msg = str(exc.value)
    assert "missing keys" in msg and "no_obj_embed_spatial" in msg
    assert "the file is SAM 2 but the config is SAM 2.1" in msg


def test_micro_weights_into_tiny_model_names_the_size(micro_weights, tiny_model):
    with pytest.raises(WeightsMismatchError) as exc:
        load_sam2_weights(tiny_model, micro_weights, variant="sam2.1_hiera_tiny")
    msg = str(exc.value)
    assert "wrong shapes" in msg
    assert "holds a micro model but the config builds a tiny one" in msg
    assert "sam2=micro)" in msg
    assert "SAM 2 vs SAM 2.1" not in msg


def test_tiny_trunk_into_micro_model_names_the_size(tmp_path, tiny_model):
    # Only the trunk of a tiny model (enough for the size diagnosis, a small file).
    tiny_sd = tiny_model.state_dict()
    sd = {k: v for k, v in tiny_sd.items() if k.startswith("image_encoder.trunk.")}
    path = tmp_path / "tiny_trunk.pt"
    torch.save({"model": sd}, path)
    with pytest.raises(WeightsMismatchError) as exc:
        load_sam2_weights(build_sam2("sam2.1_micro"), path, variant="sam2.1_micro")
    msg = str(exc.value)
    assert "holds a tiny model but the config builds a micro one" in msg
    assert "missing keys" in msg


def test_one_missing_key_is_listed(micro_weights, tmp_path):
    sd = read_sam2_state_dict(micro_weights)
    del sd["obj_ptr_proj.layers.0.weight"]
    path = tmp_path / "missing.pt"
    torch.save({"model": sd}, path)
    with pytest.raises(
        WeightsMismatchError, match=r"missing keys: obj_ptr_proj\.layers\.0\.weight"
    ):
        load_sam2_weights(build_sam2("sam2.1_micro"), path)


def test_lightning_checkpoint_is_read(micro_weights, tmp_path):
    sd = read_sam2_state_dict(micro_weights)
    path = tmp_path / "run.ckpt"
    torch.save({"state_dict": {f"model.sam2.{k}": v for k, v in sd.items()}}, path)
    load_sam2_weights(build_sam2("sam2.1_micro"), path)


def test_missing_file_says_how_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"mosam_train\.models\.download"):
        read_sam2_state_dict(tmp_path / "nope.pt")


def test_not_a_sam2_file(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(WeightsMismatchError, match="neither SAM 2 weights"):
        read_sam2_state_dict(path)


def test_multimask_from_single_tracks_as_its_own_single_mask_output(micro, small_synthetic):
    """After `multimask_from_single`, tracking with three candidates gives, on every frame,
    what the same weights give tracking with one mask (up to float rounding); before it,
    not (the other three tokens were never trained as outputs)."""
    record = read_davis(small_synthetic, "val")[0]

    def logits(sam):
        engine = VideoPropagator(VideoSAM(sam))
        frames = RecordFrames(record, 128)
        return [r.logits for r in engine.propagate(frames, first_appearance_prompts(record))]

    def single_mask(weights):
        sam = micro()
        sam.load_state_dict(weights.state_dict())
        return sam

    multi = micro(multimask=True)
    before = logits(multi)
    gaps = [(a - b).abs().max() for a, b in zip(before, logits(single_mask(multi)), strict=True)]
    assert max(gaps) > 0.1
    multimask_from_single(multi)
    after = logits(multi)
    # equal up to float rounding: the copies' rows may take other kernels' paths
    for a, b in zip(after, logits(single_mask(multi)), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-3)
    tokens = multi.sam_mask_decoder.mask_tokens.weight
    assert all(torch.equal(tokens[0], tokens[k]) for k in (1, 2, 3))
