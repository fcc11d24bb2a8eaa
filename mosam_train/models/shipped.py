"""SAM 2 weights shipped inside the package, named in configs as `shipped:<name>`.

The long-video test bed needs a base that tracks, and no official SAM 2 fits its 128 px
micro models; training one takes CPU hours, so the weights travel with the code (under
`mosam_train/assets/`, a few MB). Each entry pins the file's sha256, so a changed or
half-copied file is refused rather than silently giving other numbers, and says which
generator version it was trained on and the command that reproduces it.

A MoSAM checkpoint records its frozen base as `shipped:<name>` (not an install path), so it
loads on any machine that has the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mosam_train.checkpoint_files import sha256_of

PREFIX = "shipped:"
ASSETS_PACKAGE = "mosam_train.assets"


@dataclass(frozen=True)
class ShippedWeights:
    """One shipped SAM 2 weights file and how it was made."""

    name: str
    file: str  # inside mosam_train/assets/
    variant: str  # SAM2_VARIANTS key (model.sam2.variant)
    sha256: str
    generator_version: int  # data=synthetic_long's version it was trained on
    multimask: bool  # trained with SAM 2's three candidate masks for tracking
    command: str  # reproduces it, from the repository root

    def path(self) -> Path:
        return Path(str(resources.files(ASSETS_PACKAGE).joinpath(self.file)))


SHIPPED: dict[str, ShippedWeights] = {
    entry.name: entry
    for entry in (
        # the long-video test bed's base (README, "The shipped base"): the wide micro, seed
        # 0, three stages (random init on 2-frame clips, 8-frame clips, 2,400 steps more at
        # a lower rate); stage 3's best validation (its last step), single-mask tracking
        ShippedWeights(
            name="sam2_micro_long",
            file="sam2_micro_long.pt",
            variant="sam2.1_micro_wide",
            sha256="599896d8aea8d99adc95d44dbe35225ea3162e2e3b5816e3718f6937c14c6e4d",
            generator_version=4,
            multimask=False,
            command=(
                "python train.py experiment=sam2_micro_long_stage1 seed=0 && python train.py "
                "experiment=sam2_micro_long_stage2 seed=0 && python train.py "
                "experiment=sam2_micro_long seed=0 (writes checkpoints/sam2_micro_long.pt)"
            ),
        ),
        # the same base tracking with SAM 2's three candidate masks (sam2=micro_wide_multimask):
        # its multimask outputs started as copies of the single-mask one, then the mask
        # decoder and object-pointer projection fine-tuned, seed 0, best validation (step
        # 800 of 1,200)
        ShippedWeights(
            name="sam2_micro_long_multimask",
            file="sam2_micro_long_multimask.pt",
            variant="sam2.1_micro_wide",
            sha256="d32b4e5f591b45b72394c59e2dbd288c3080df220ba13c010b57bca4326b3dd7",
            generator_version=4,
            multimask=True,
            command=(
                "python train.py experiment=sam2_micro_long_multimask seed=0 (from "
                "shipped:sam2_micro_long; writes checkpoints/sam2_micro_long_multimask.pt)"
            ),
        ),
    )
}


class ShippedWeightsError(RuntimeError):
    """A `shipped:` name is unknown, or its file is missing or not the pinned one."""


def is_shipped(weights: str | Path | None) -> bool:
    return weights is not None and str(weights).startswith(PREFIX)


def get_shipped(name: str) -> ShippedWeights:
    """The entry for `name` (with or without the `shipped:` prefix)."""
    key = name.removeprefix(PREFIX)
    if key not in SHIPPED:
        known = ", ".join(PREFIX + k for k in SHIPPED) or "none"
        raise ShippedWeightsError(
            f"model.sam2.weights={name}: no shipped SAM 2 weights of that name (shipped: "
            f"{known}). Fix: use one of those names or the path of a weights file."
        )
    return SHIPPED[key]


def resolve_weights(weights: str | Path) -> Path:
    """The file behind a weights setting: a `shipped:` name is found in the package and its
    sha256 checked; anything else is a path, returned as given."""
    if not is_shipped(weights):
        return Path(weights)
    entry = get_shipped(str(weights))
    path = entry.path()
    if not path.is_file():
        raise ShippedWeightsError(
            f"{weights}: {path} is missing from the installed package. Fix: reinstall "
            f"mosam-train from a full checkout (the file is tracked in git), or rebuild it: "
            f"{entry.command}"
        )
    found = sha256_of(path)
    if found != entry.sha256:
        raise ShippedWeightsError(
            f"{weights}: {path} has sha256 {found}, but {entry.sha256} is pinned in "
            f"mosam_train/models/shipped.py. The file is damaged or was replaced. Fix: "
            f"restore it from git (git checkout -- {path.name} in mosam_train/assets/)."
        )
    return path
