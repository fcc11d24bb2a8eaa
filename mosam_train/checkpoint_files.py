"""Checkpoint-like files (Lightning checkpoints, official SAM 2 weights, exports): read,
fingerprint, check and write them, with no Lightning import so that every layer can.

Every read is `torch.load(weights_only=True)`: checkpoints of this project and official
SAM 2 weights hold tensors and plain containers only, and a file that needs arbitrary
unpickling could run code. Every way a read can fail (no such file, not a checkpoint at all,
truncated, not a dict, pickled objects) becomes one `CheckpointFileError` naming the file,
what was expected and the fix, instead of torch's `KeyError: 101` or a zip error without a
path.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from mosam_train.atomic_files import atomic_open

ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive
PICKLE_MAGIC = b"\x80"  # torch's legacy (pre-1.6) format starts with a pickle protocol byte


class CheckpointFileError(ValueError):
    """A file that should hold a checkpoint does not; the message names it and the fix."""


def _describe_unreadable(path: Path, error: Exception, expected: str) -> str:
    head = path.read_bytes()[:4] if path.stat().st_size else b""
    if not head:
        what = "is empty (0 bytes)"
    elif head.startswith(ZIP_MAGIC):
        what = f"is a truncated or corrupt PyTorch archive ({type(error).__name__}: {error})"
    elif head.startswith(PICKLE_MAGIC):
        what = f"is an unreadable legacy PyTorch file ({type(error).__name__}: {error})"
    else:
        what = f"is not a PyTorch checkpoint (it starts with {head!r}, not a zip archive)"
    return (
        f"{path} {what}; expected {expected}. Fix: pass the right file, or copy or download "
        f"it again if it was cut short."
    )


def load_checkpoint_file(
    path: str | Path,
    map_location: Any = "cpu",
    mmap: bool = False,
    expected: str = "a checkpoint of this project or official SAM 2 weights",
) -> dict[str, Any]:
    """The dict in `path`, read with `torch.load(weights_only=True)`; `expected` says what
    the caller wanted, for the error. `mmap`: read tensors only when used (e.g. to look at
    a checkpoint's step)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file ({'a folder' if path.is_dir() else 'missing'}); expected "
            f"{expected}. Fix: pass the path of that file."
        )
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:  # UnpicklingError, RuntimeError, KeyError, EOFError, ...
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            needs = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
            raise CheckpointFileError(
                f"{path}: refused. It holds pickled Python objects beyond tensors and plain "
                f"containers"
                + (f" (it needs {needs.group(1)})" if needs else "")
                + ", which only a full unpickle could read, and unpickling can run arbitrary "
                "code. Checkpoints of this project and official SAM 2 weights load without "
                "it. Fix: if you trust the file, re-save its tensors as plain dicts (e.g. "
                "torch.save({'model': state_dict}, ...)) and pass that file."
            ) from e
        raise CheckpointFileError(_describe_unreadable(path, e, expected)) from None
    if not isinstance(obj, dict):
        raise CheckpointFileError(
            f"{path} holds a {type(obj).__name__}, not a dict; expected {expected}. Fix: pass "
            f"the right file."
        )
    return obj


def require_keys(ckpt: Mapping[str, Any], path: str | Path, keys: Iterable[str], what: str) -> None:
    """Refuse a checkpoint dict that lacks `keys`, naming the file and what it holds."""
    missing = [k for k in keys if k not in ckpt]
    if missing:
        found = ", ".join(sorted(map(str, ckpt))[:8]) or "nothing"
        raise CheckpointFileError(
            f"{path} is not {what}: it has no {', '.join(repr(k) for k in missing)} (it holds "
            f"{found}). Fix: pass {what}."
        )


def nonfinite_entries(state: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors in `state` that hold NaN or inf."""
    return [
        name
        for name, value in state.items()
        if isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]


def require_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse weights holding NaN or inf: a diverged model must not be scored or used."""
    bad = nonfinite_entries(state)
    if bad:
        shown = ", ".join(bad[:5]) + (f", ... ({len(bad)} in all)" if len(bad) > 5 else "")
        raise CheckpointFileError(
            f"{source}: weights with NaN or inf values ({shown}). The model diverged before "
            f"these weights were saved. Fix: use an earlier checkpoint of the run, or retrain "
            f"with a lower learning rate (model.optim.lr) or float32 (trainer.precision)."
        )


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (official checkpoints are up to 900 MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint(path: str | Path) -> dict[str, Any]:
    """What a checkpoint file is, for comparing runs: its path and sha256 and, for a MoSAM
    checkpoint, the frozen SAM 2 base it names (path and sha256, checked when it loads)."""
    path = Path(path)
    ckpt = load_checkpoint_file(path, mmap=True)
    found: dict[str, Any] = {"path": str(path), "sha256": sha256_of(path)}
    base = ckpt.get("sam2_base")
    if isinstance(base, dict):
        found["sam2_base"] = {"path": str(base.get("path")), "sha256": base.get("sha256")}
    return found


def displaced_path(path: str | Path, sha256: str) -> Path:
    """Where a file whose content has `sha256` is kept when another file takes its path:
    `<stem>.<sha8><suffix>` beside it (checkpoints that name it by path still find it)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{sha256[:8]}{path.suffix}")


def save_atomic(obj: Any, path: str | Path) -> Path:
    """`torch.save` through `atomic_open`: a kill mid-write leaves the old file or the new
    one, never a truncated one."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)
