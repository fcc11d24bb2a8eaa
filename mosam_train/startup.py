"""What every entry point calls before Hydra starts (`start()`), so that nothing the
scripts rely on happens as a side effect of an import; and `compose_config`, an entry
point's config composed the same way by the commands that run outside its app."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

import mosam_train
from mosam_train.runs import register_resolvers

#: the checkout the package runs from: its entry points (train.py, eval.py) and configs
REPO = Path(mosam_train.__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def release_hydra_from_sam2() -> None:
    """Import `sam2` and undo the Hydra state its import leaves.

    `sam2/__init__.py` calls `initialize_config_module("sam2")` when Hydra is not yet
    initialised, and a `@hydra.main` app then refuses to start ("GlobalHydra is already
    initialized"). Only that state is cleared (Hydra's main config source is sam2's
    package); inside a running Hydra app `sam2` left Hydra alone and nothing is touched.
    Later `sam2` imports find the module cached and do nothing."""
    import sam2  # noqa: F401

    hydra = GlobalHydra.instance()
    if hydra.is_initialized() and any(
        s.provider == "main" and s.scheme() == "pkg" and s.path == "sam2"
        for s in hydra.config_loader().get_sources()
    ):
        hydra.clear()


def start() -> None:
    """Before `@hydra.main`: `sam2`'s Hydra state released, the config's resolvers known."""
    release_hydra_from_sam2()
    register_resolvers()


def compose_config(name: str, overrides: Sequence[str]) -> DictConfig:
    """configs/<name>.yaml with `overrides`, as its entry point's `@hydra.main` composes
    it, for the commands that build that entry point's model or data outside its app."""
    start()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose(name, overrides=list(overrides))
