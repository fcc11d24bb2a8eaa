"""The long synthetic test bed (`data=synthetic_long`): val and test as written in the
DAVIS 2017 layout, train made on the fly from the spec in the set's meta.json.

See `mosam_train.data.synthetic_long` for what the videos hold and data/README.md for the
layout; `generate` is what `data.synthetic: true` runs in `prepare_data`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mosam_train.data.formats import DatasetFormat, SubmissionLayout
from mosam_train.data.formats.davis import read_davis
from mosam_train.data.formats.files import keep_subset
from mosam_train.data.synthetic_long import (
    RESOLUTION,
    ProceduralVideo,
    ensure_synthetic_long,
    read_spec,
    train_name,
)
from mosam_train.data.video import VideoRecord
from mosam_train.errors import DataError


def read_synthetic_long(
    root: str | Path,
    split: str,
    subset: Iterable[str] | str | Path | None = None,
    errors: list[DataError] | None = None,
) -> list[VideoRecord]:
    """`train`: the spec's `num_train` procedural videos (nothing is read but meta.json);
    any other split (`val`, `test`): the written videos, read as DAVIS 2017 (every frame
    annotated)."""
    spec = read_spec(root)
    if split == "train":
        names = keep_subset([train_name(i) for i in range(spec.num_train)], subset)
        return [ProceduralVideo(spec, int(n.split("_")[1])) for n in names]
    return read_davis(root, split, RESOLUTION, dense=True, subset=subset, errors=errors)


FORMAT = DatasetFormat(
    name="synthetic_long",
    reader=read_synthetic_long,
    submission=SubmissionLayout(frames="all", masks="palette", zip="never"),
    protocol="appearance",  # every object is in the first frame, as in DAVIS 2017
    generate=ensure_synthetic_long,
)
