"""mosam-train: train, fine-tune and evaluate SAM 2 based video object segmentation.

`import sam2` initialises Hydra globally on the `sam2` config module, after which a
`@hydra.main` app refuses to start. Every `mosam_train` import passes through here first,
so `sam2` is imported once now and Hydra's global state is cleared again (only if `sam2`
was the one that set it; inside a running Hydra app nothing is touched).
"""

from hydra.core.global_hydra import GlobalHydra

_hydra_was_initialized = GlobalHydra.instance().is_initialized()
import sam2  # noqa: E402,F401

if not _hydra_was_initialized:
    GlobalHydra.instance().clear()
