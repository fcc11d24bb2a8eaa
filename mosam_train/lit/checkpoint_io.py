"""Checkpoint files: written atomically, read with `torch.load(weights_only=True)` only.

A kill while Lightning writes `last.ckpt` in place leaves a truncated file, and the run
can no longer resume; writing a temporary file next to it and renaming it over the old
one (atomic on POSIX file systems) leaves either the old or the new checkpoint.

Checkpoints of this project hold tensors and plain containers only (hyperparameters are
plain dicts), so every load here is `weights_only=True`: a file that needs arbitrary
unpickling could run code, and is refused with an explanation instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _MAP_LOCATION_TYPE, _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO


def load_checkpoint_file(
    path: str | Path, map_location: _MAP_LOCATION_TYPE = "cpu", mmap: bool = False
) -> Any:
    """`torch.load(path, weights_only=True)`, with an error that says what to do when the
    file holds more than tensors and plain containers. `mmap`: read tensors only when
    used (e.g. to look at a checkpoint's step)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise
    except Exception as e:  # torch raises UnpicklingError (or RuntimeError) here
        if "weights_only" not in str(e) and "Unsupported global" not in str(e):
            raise
        needs = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        raise ValueError(
            f"{path}: refused. It holds pickled Python objects beyond tensors and plain "
            f"containers"
            + (f" (it needs {needs.group(1)})" if needs else "")
            + ", which only a full unpickle could read, and unpickling can run arbitrary "
            "code. Checkpoints of this project and official SAM 2 weights load without it. "
            "Fix: if you trust the file, re-save its tensors as plain dicts (e.g. "
            "torch.save({'model': state_dict}, ...)) and pass that file."
        ) from e


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, written through a temporary file and a rename, and
    read with `weights_only=True` only (`load_checkpoint_file`)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash
        finally:
            os.close(dir_fd)

    def load_checkpoint(
        self,
        path: _PATH,
        map_location: _MAP_LOCATION_TYPE = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if weights_only is False:
            raise ValueError(f"{path}: this project loads checkpoints with weights_only=True only")
        if not Path(path).is_file():
            raise FileNotFoundError(f"Checkpoint file not found: {path}")
        return load_checkpoint_file(path, map_location)
