"""Dataset formats: one registry entry per on-disk layout, with its reader, the layout its
benchmark takes submissions in, and the J&F protocol its videos are scored with.

Every reader has the signature ``read_<name>(root, split, *, subset=None, errors=None,
**options) -> list[VideoRecord]`` (see `files.read_each` for `errors`). Format `<name>` is
the module `<name>.py` here, which defines its `DatasetFormat` as ``FORMAT`` (`FORMATS`, a
`mosam_train.registry.Registry`, finds it there and imports it on first use, so a layout's
decoder, decord or PyAV, is only needed when that layout is read). A format defined
elsewhere (a plug-in, a test) joins with `register_format`. Nothing here names a metric: `DatasetFormat.protocol` is a name
that `mosam_train.metrics.jf` resolves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from mosam_train.data.video import VideoRecord
from mosam_train.registry import Registry

SubmissionFrames = Literal["all", "annotated", "submission"]
SubmissionMasks = Literal["palette", "per_object"]
SubmissionZip = Literal["always", "without_ground_truth", "never"]


@dataclass(frozen=True)
class SubmissionLayout:
    """How a benchmark takes predictions (`inference.writers.make_writer` builds the writer).

    frames: which frames of each video get a file: ``all``, the ``annotated`` ones, or
    ``submission``: the record's own `submission_frames()` (YouTube-VOS: its meta.json).
    masks: ``palette``: one palette PNG per frame, pixel = object id (no overlaps);
    ``per_object``: one binary (0/1) PNG per object and frame in a 3-digit object folder
    (overlaps kept). subdir: a folder between the output root and the video folders
    (YouTube-VOS: ``Annotations``). zip: build the server's zip of the tree ``always``,
    only for a split ``without_ground_truth`` (DAVIS test-dev), or ``never``.
    """

    frames: SubmissionFrames = "all"
    masks: SubmissionMasks = "palette"
    subdir: str = ""
    zip: SubmissionZip = "never"

    def __post_init__(self) -> None:
        for key, allowed in (
            ("frames", get_args(SubmissionFrames)),
            ("masks", get_args(SubmissionMasks)),
            ("zip", get_args(SubmissionZip)),
        ):
            if getattr(self, key) not in allowed:
                raise ValueError(
                    f"SubmissionLayout.{key}={getattr(self, key)!r}: use one of {list(allowed)}"
                )


@dataclass(frozen=True)
class DatasetFormat:
    """One dataset layout: `data.format=<name>` selects it.

    reader: ``(root, split, *, subset=None, errors=None, **options) -> list[VideoRecord]``
    (the options are the config's `data.reader`). submission: the layout `eval.py` writes.
    protocol: the name of the `metrics.jf` protocol its videos are scored with by default
    (``appearance``: DAVIS 2017's rule per object, from its first appearance; ``sav``:
    SA-V's evaluator); `read_split` gives every record it reads this name as `protocol`.
    generate: for a set made by code rather than downloaded, ``(root, seed=...) -> root``
    that makes it at `root` unless it is there (`data.synthetic: true` runs it in
    `prepare_data`); None for downloaded layouts.
    """

    name: str
    reader: Callable[..., list[VideoRecord]]
    submission: SubmissionLayout = field(default_factory=SubmissionLayout)
    protocol: str = "appearance"
    generate: Callable[..., Path] | None = None


FORMATS: Registry[DatasetFormat] = Registry(
    "dataset format",
    __name__,
    "FORMAT",
    accepts=lambda entry: isinstance(entry, DatasetFormat),
    register_with="mosam_train.data.formats.register_format",
)


def format_names() -> list[str]:
    """Every known format name, sorted."""
    return FORMATS.names()


def register_format(entry: DatasetFormat) -> DatasetFormat:
    """Make `entry` known under `entry.name` (for formats defined outside this package)."""
    return FORMATS.register(entry.name, entry)


def get_format(name: str) -> DatasetFormat:
    """The entry of format `name`: `data/formats/<name>.py`'s `FORMAT`, or a registered one."""
    entry = FORMATS.get(name)
    if entry.name != name:
        raise TypeError(f"dataset format {name!r}: its FORMAT is named {entry.name!r}")
    return entry


def read_split(fmt: str, root: str | Path, split: str, **options: Any) -> list[VideoRecord]:
    """Records of `split` of the `fmt`-layout dataset at `root`, each with its format's
    scoring protocol name as `protocol` (so validation and eval score it the same way)."""
    entry = get_format(fmt)
    records = entry.reader(root, split, **options)
    for record in records:
        record.protocol = entry.protocol
    return records


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
