"""Files written so that a kill at any moment (SIGKILL, a preempted node, a full disk)
leaves either the old file or the new one, never a truncated one: results are written as
they are produced, and a rerun resumes from what is on disk, so a half-written file would
be read as finished work."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside `path` (created with its folder) for writing; on a clean
    exit flush it to disk and rename it over `path` (then sync the folder, so the rename
    survives a crash too); on an error remove it and leave `path` as it was."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode {mode!r}, not 'w' or 'wb'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open(mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_text_atomically(path: str | Path, text: str) -> Path:
    """`Path.write_text` through `atomic_open`."""
    with atomic_open(path) as f:
        f.write(text)
    return Path(path)
