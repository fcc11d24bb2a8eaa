"""Lightning's checkpoint IO, written atomically and read with `weights_only=True` only.

A kill while Lightning writes `last.ckpt` in place leaves a truncated file, and the run
can no longer resume; `checkpoint_files.save_atomic` leaves either the old or the new
checkpoint. (Non-finite weights never get here: `lit.nonfinite.NonFiniteGuard` refuses them.)
"""

from __future__ import annotations

from typing import Any

from lightning.fabric.utilities.types import _MAP_LOCATION_TYPE, _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mosam_train.checkpoint_files import load_checkpoint_file, require_keys, save_atomic

LIGHTNING_CHECKPOINT = "a Lightning checkpoint of this project (e.g. checkpoints/last.ckpt)"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, written through a temporary file and a rename, and
    read with `weights_only=True` only."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        save_atomic(checkpoint, path)

    def load_checkpoint(
        self,
        path: _PATH,
        map_location: _MAP_LOCATION_TYPE = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if weights_only is False:
            raise ValueError(f"{path}: this project loads checkpoints with weights_only=True only")
        ckpt = load_checkpoint_file(path, map_location, expected=LIGHTNING_CHECKPOINT)
        require_keys(ckpt, path, ("state_dict", "global_step"), LIGHTNING_CHECKPOINT)
        return ckpt
