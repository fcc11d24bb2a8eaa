"""Metric reports as strict JSON.

Why: a mean over no object (a tag with no absent frame, no re-emergence) is NaN, and
Python's `json` writes NaN as a bare token that is not JSON: browsers, `jq` and most
readers outside Python reject the whole file. Reports write such values as null; readers in
this package turn null back into NaN (`numbers`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps(report: Any, indent: int | None = None) -> str:
    """`report` as JSON with every NaN or infinity written as null."""
    return json.dumps(_finite(report), indent=indent, allow_nan=False)


def numbers(report: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of a report read back from JSON, null as NaN."""
    return {
        k: math.nan if v is None else float(v)
        for k, v in report.items()
        if v is None or (isinstance(v, int | float) and not isinstance(v, bool))
    }
