"""Metric reports are strict JSON: NaN and infinities become null and read back as NaN."""

import json
import math

from mosam_train.metrics import reports


def test_non_finite_values_are_written_as_null_at_any_depth():
    report = {
        "JF": 41.5,
        "latency": math.nan,
        "n": 3,
        "ok": True,
        "per_tag": {"x": [math.inf, 1.0]},
    }
    text = reports.dumps(report, indent=2)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {
        "JF": 41.5, "latency": None, "n": 3, "ok": True, "per_tag": {"x": [None, 1.0]}
    }  # fmt: skip


def test_numbers_reads_null_back_as_nan_and_skips_the_rest():
    found = reports.numbers({"JF": 41.5, "latency": None, "n": 3, "ok": True, "ckpt": "a.pt"})
    assert found.keys() == {"JF", "latency", "n"}
    assert found["JF"] == 41.5 and found["n"] == 3.0 and math.isnan(found["latency"])
