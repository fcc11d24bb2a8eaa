"""Build SAM 2 models from the `sam2` package's own yaml files, and load their weights.

`sam2.build_sam.build_sam2` composes through Hydra's global state, which a running Hydra
app has replaced; so the yaml files are read directly with OmegaConf and the `model` node
is instantiated (see also `mosam_train/__init__.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from sam2.modeling.sam2_base import SAM2Base

from mosam_train.checkpoint_files import load_checkpoint_file, require_finite
from mosam_train.models.shipped import resolve_weights

OFFICIAL_URL = "https://dl.fbaipublicfiles.com/segment_anything_2"
# Where MoSAMModule keeps SAM 2 in its state_dict (module.model.sam2).
LIGHTNING_SAM2_PREFIX = "model.sam2."
SAM2_WEIGHTS = "SAM 2 weights (an official .pt, {'model': state_dict}, or a .ckpt of this project)"


@dataclass(frozen=True)
class SAM2Variant:
    """A SAM 2 size: where its yaml lives and where its official weights come from."""

    name: str
    package: str
    config: str
    url: str | None
    image_size: int


SAM2_VARIANTS: dict[str, SAM2Variant] = {
    v.name: v
    for v in [
        SAM2Variant(
            "sam2.1_hiera_tiny",
            "sam2",
            "configs/sam2.1/sam2.1_hiera_t.yaml",
            f"{OFFICIAL_URL}/092824/sam2.1_hiera_tiny.pt",
            1024,
        ),
        SAM2Variant(
            "sam2.1_hiera_small",
            "sam2",
            "configs/sam2.1/sam2.1_hiera_s.yaml",
            f"{OFFICIAL_URL}/092824/sam2.1_hiera_small.pt",
            1024,
        ),
        SAM2Variant(
            "sam2.1_hiera_base_plus",
            "sam2",
            "configs/sam2.1/sam2.1_hiera_b+.yaml",
            f"{OFFICIAL_URL}/092824/sam2.1_hiera_base_plus.pt",
            1024,
        ),
        SAM2Variant(
            "sam2.1_hiera_large",
            "sam2",
            "configs/sam2.1/sam2.1_hiera_l.yaml",
            f"{OFFICIAL_URL}/092824/sam2.1_hiera_large.pt",
            1024,
        ),
        SAM2Variant(
            "sam2_hiera_tiny",
            "sam2",
            "configs/sam2/sam2_hiera_t.yaml",
            f"{OFFICIAL_URL}/072824/sam2_hiera_tiny.pt",
            1024,
        ),
        SAM2Variant(
            "sam2_hiera_small",
            "sam2",
            "configs/sam2/sam2_hiera_s.yaml",
            f"{OFFICIAL_URL}/072824/sam2_hiera_small.pt",
            1024,
        ),
        SAM2Variant(
            "sam2_hiera_base_plus",
            "sam2",
            "configs/sam2/sam2_hiera_b+.yaml",
            f"{OFFICIAL_URL}/072824/sam2_hiera_base_plus.pt",
            1024,
        ),
        SAM2Variant(
            "sam2_hiera_large",
            "sam2",
            "configs/sam2/sam2_hiera_l.yaml",
            f"{OFFICIAL_URL}/072824/sam2_hiera_large.pt",
            1024,
        ),
        SAM2Variant(
            "sam2.1_micro", "mosam_train.models.sam2_configs", "sam2.1_micro.yaml", None, 128
        ),
        SAM2Variant(
            "sam2.1_micro_wide",
            "mosam_train.models.sam2_configs",
            "sam2.1_micro_wide.yaml",
            None,
            128,
        ),
    ]
}

# Trunk signature (patch-embed width, number of blocks) of each official size, used to
# name the likely mix-up when a weights file does not fit the configured model.
_TRUNK_SIGNATURES = {
    (96, 12): "tiny",
    (96, 16): "small",
    (112, 24): "base_plus",
    (144, 48): "large",
    (16, 5): "micro",
    (32, 5): "micro_wide",
}
# Keys that exist in SAM 2.1 models but not in SAM 2 ones.
_SAM21_ONLY_PREFIXES = ("no_obj_embed_spatial", "obj_ptr_tpos_proj")


class WeightsMismatchError(RuntimeError):
    """A weights file does not fit the configured SAM 2 model."""


def get_variant(name: str) -> SAM2Variant:
    if name not in SAM2_VARIANTS:
        known = ", ".join(SAM2_VARIANTS)
        raise KeyError(f"Unknown SAM 2 variant {name!r}. Known variants: {known}.")
    return SAM2_VARIANTS[name]


def load_model_config(variant: str, overrides: dict[str, Any] | None = None) -> DictConfig:
    """The `model` node of a variant's yaml with `overrides` (dotted keys) merged in."""
    v = get_variant(variant)
    text = resources.files(v.package).joinpath(v.config).read_text()
    cfg = OmegaConf.create(text).model
    for key, value in (overrides or {}).items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def build_sam2(
    variant: str,
    overrides: dict[str, Any] | None = None,
    weights: str | Path | None = None,
    target: str | None = None,
    image_size: int | None = None,
) -> SAM2Base:
    """Instantiate a SAM 2 model (random init unless `weights` is given).

    `target` swaps the class (e.g. `sam2.sam2_video_predictor.SAM2VideoPredictor` or a
    subclass of `SAM2Base`); `image_size`, when given, must match the variant's.
    """
    cfg = load_model_config(variant, overrides)
    if target is not None:
        cfg._target_ = target
    if image_size is not None and int(cfg.image_size) != int(image_size):
        raise ValueError(
            f"SAM 2 variant {variant} runs at image_size {cfg.image_size}, but the config asks "
            f"for {image_size}. Set model.sam2.image_size={cfg.image_size} or pick another variant."
        )
    model = instantiate(cfg, _recursive_=True)
    if weights is not None:
        load_sam2_weights(model, weights, variant=variant)
    return model


def read_sam2_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """SAM 2 weights from an official `.pt` ({"model": ...}), a checkpoint of this project or
    a `shipped:` name (models/shipped.py)."""
    path = resolve_weights(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"SAM 2 weights file {path} does not exist. Download official weights with "
            f"`python -m mosam_train.models.download <variant>`, run the experiment that "
            f"publishes a file of that name (its export.name, e.g. "
            f"experiment=sam2_micro_long_stage1 for sam2_micro_long_stage1.pt), or pass the "
            f"right path."
        )
    # torch.load(weights_only=True); any unreadable file is an error naming it
    ckpt = load_checkpoint_file(path, expected=SAM2_WEIGHTS)
    sd: dict[str, torch.Tensor] = {}
    if isinstance(ckpt.get("model"), dict):
        sd = ckpt["model"]
    elif isinstance(ckpt.get("state_dict"), dict):
        prefix = LIGHTNING_SAM2_PREFIX
        sd = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    if sd:
        require_finite(sd, str(path))
        return sd
    raise WeightsMismatchError(
        f"{path} holds neither SAM 2 weights ({{'model': state_dict}}) nor a checkpoint of this "
        f"project with SAM 2 weights. Pass an official SAM 2 .pt file or a mosam-train .ckpt."
    )


def _describe_trunk(keys_to_shapes: dict[str, tuple[int, ...]]) -> str | None:
    width = keys_to_shapes.get("image_encoder.trunk.patch_embed.proj.weight")
    blocks = {
        k.split(".")[3] for k in keys_to_shapes if k.startswith("image_encoder.trunk.blocks.")
    }
    if width is None:
        return None
    return _TRUNK_SIGNATURES.get((width[0], len(blocks)))


def _mismatch_report(
    model: torch.nn.Module, sd: dict[str, torch.Tensor], path: str | Path, variant: str | None
) -> str:
    model_sd = model.state_dict()
    missing = sorted(set(model_sd) - set(sd))
    unexpected = sorted(set(sd) - set(model_sd))
    wrong_shape = sorted(
        k for k in set(sd) & set(model_sd) if tuple(sd[k].shape) != tuple(model_sd[k].shape)
    )
    lines = [f"SAM 2 weights in {path} do not fit the configured model ({variant or 'unknown'})."]

    def listing(title: str, keys: list[str]) -> None:
        if keys:
            shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
            lines.append(f"  {title}: {shown}")

    listing("missing keys", missing)
    listing("unexpected keys", unexpected)
    listing(
        "wrong shapes",
        [f"{k} {tuple(sd[k].shape)} vs {tuple(model_sd[k].shape)}" for k in wrong_shape],
    )
    file_size = _describe_trunk({k: tuple(v.shape) for k, v in sd.items()})
    model_size = _describe_trunk({k: tuple(v.shape) for k, v in model_sd.items()})
    file_is_21 = any(k.startswith(_SAM21_ONLY_PREFIXES) for k in sd)
    model_is_21 = any(k.startswith(_SAM21_ONLY_PREFIXES) for k in model_sd)
    if file_size and model_size and file_size != model_size:
        if file_size.startswith("micro"):
            suggestion = file_size  # configs/sam2/micro*.yaml
        else:
            suggestion = f"{'sam2.1' if file_is_21 else 'sam2'}_hiera_{file_size}"
        lines.append(
            f"  Likely cause: the file holds a {file_size} model but the config builds a "
            f"{model_size} one. Pick the matching size (e.g. sam2={suggestion})."
        )
    if file_is_21 != model_is_21:
        lines.append(
            "  Likely cause: SAM 2 vs SAM 2.1 mix-up: the file is "
            f"{'SAM 2.1' if file_is_21 else 'SAM 2'} but the config is "
            f"{'SAM 2.1' if model_is_21 else 'SAM 2'}. Use the matching sam2=... config."
        )
    return "\n".join(lines)


def load_sam2_weights(model: SAM2Base, path: str | Path, variant: str | None = None) -> None:
    """Strictly load SAM 2 weights; a mismatch raises with the keys and the likely mix-up."""
    sd = read_sam2_state_dict(path)
    model_sd = model.state_dict()
    fits = set(sd) == set(model_sd) and all(
        tuple(sd[k].shape) == tuple(model_sd[k].shape) for k in sd
    )
    if not fits:
        raise WeightsMismatchError(_mismatch_report(model, sd, path, variant))
    model.load_state_dict(sd, strict=True)


def multimask_from_single(model: SAM2Base) -> None:
    """Start SAM 2's three multimask outputs as copies of its single-mask output: the mask
    tokens, their hypernetworks and their rows of the IoU head's last layer.

    A base trained to track with one mask (`multimask_output_for_tracking: false`) never
    trains the other three outputs; tracking with them as they are, it loses what it
    tracked. From copies, tracking with three candidates gives what the same weights give
    with one mask, up to float rounding (three equal candidates, the first chosen, the
    same object pointer), and fine-tuning lets them part. Not exactly the base's own output: the mask
    tokens attend to each other in the decoder, so copying three of them moves the others'
    outputs a little (README, "The shipped base", gives the cost on the shipped base).
    """
    decoder = model.sam_mask_decoder
    with torch.no_grad():
        tokens = decoder.mask_tokens.weight
        tokens[1:] = tokens[0]
        first = decoder.output_hypernetworks_mlps[0].state_dict()
        for mlp in decoder.output_hypernetworks_mlps[1:]:
            mlp.load_state_dict(first)
        last = decoder.iou_prediction_head.layers[-1]
        last.weight[1:] = last.weight[0]
        last.bias[1:] = last.bias[0]
