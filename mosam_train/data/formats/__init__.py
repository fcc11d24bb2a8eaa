"""One reader per on-disk layout; each turns files into `VideoRecord`s.

Every reader has the signature ``read_<name>(root, split, *, subset=None, errors=None,
**options) -> list[VideoRecord]`` (see `files.read_each` for `errors`). They are imported
on first use, so a layout's decoder (decord, PyAV) is only needed when that layout is read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from pathlib import Path
from typing import Any

from mosam_train.data.video import VideoRecord

READERS: dict[str, str] = {
    "davis": "mosam_train.data.formats.davis:read_davis",
    "sav": "mosam_train.data.formats.sav:read_sav",
    "ytvos": "mosam_train.data.formats.ytvos:read_ytvos",
    "mose": "mosam_train.data.formats.mose:read_mose",
    "lvos": "mosam_train.data.formats.lvos:read_lvos",
}


def get_reader(fmt: str) -> Callable[..., list[VideoRecord]]:
    """The reader function of layout `fmt` (a key of `READERS`)."""
    if fmt not in READERS:
        raise ValueError(f"unknown dataset format {fmt!r}; known: {sorted(READERS)}")
    module, name = READERS[fmt].split(":")
    return getattr(import_module(module), name)


def read_split(fmt: str, root: str | Path, split: str, **options: Any) -> list[VideoRecord]:
    """Records of `split` of the `fmt`-layout dataset at `root`."""
    return get_reader(fmt)(root, split, **options)


SOURCE_KEYS = ("format", "root", "split", "weight", "reader", "subset")


def source_spec(key: str, src: Mapping[str, Any], split: str | None = None) -> dict[str, Any]:
    """A dataset source mapping ``{format, root, split, weight, reader, subset}`` (config
    key `key`, e.g. ``data.mix.sav``) checked and completed: `split` is the default when
    the mapping has none, `reader` becomes a plain dict. Training, validation and the
    dataset check read sources through this, so they accept the same mappings."""
    src = dict(src)
    if split is not None:
        src.setdefault("split", split)
    unknown = set(src) - set(SOURCE_KEYS)
    if unknown or not {"format", "root", "split"} <= set(src):
        raise ValueError(
            f"{key}: needs format, root, split (optional weight, reader, subset); got {sorted(src)}"
        )
    src["reader"] = dict(src.get("reader") or {})
    src.setdefault("subset", None)
    return src


def read_source(
    key: str, src: Mapping[str, Any], split: str | None = None, **options: Any
) -> list[VideoRecord]:
    """Records of a source mapping (see `source_spec`); `options` go to the reader too
    (e.g. ``errors=[]``)."""
    spec = source_spec(key, src, split)
    return read_split(
        spec["format"], spec["root"], spec["split"], subset=spec["subset"],
        **spec["reader"], **options,
    )  # fmt: skip
