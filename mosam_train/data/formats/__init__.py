"""One reader per on-disk layout; each turns files into `VideoRecord`s."""

from mosam_train.data.formats.davis import DavisVideo, read_davis

__all__ = ["DavisVideo", "read_davis"]
