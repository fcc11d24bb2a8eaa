"""The one exception type for bad input data.

Readers raise `DataError` with a message that names the file, the problem and the fix, so
a user can act on it without reading our code. Training code catches exactly this type to
skip a broken sample instead of crashing mid-epoch; programming errors stay other types.
The scoring CLI, the demo and `predict.py` raise or catch it too, so it sits below them all.
"""

from __future__ import annotations

from pathlib import Path


class DataError(RuntimeError):
    """Bad or missing input data. `path` is the offending file or folder, when known;
    `video` the video it belongs to, when a reader collects errors per video."""

    video: str | None = None

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)

    def __reduce__(self):  # keep `path` when sent back from a DataLoader worker
        return (type(self), (str(self), self.path))
