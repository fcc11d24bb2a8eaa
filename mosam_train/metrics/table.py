"""Method tables: each row is mean ± std over seeds of J&F, overall and per tag.

    python -m mosam_train.metrics.table "MoSAM=logs/table/mosam/*" "SAM 2=logs/eval/base" ...

Each argument is LABEL=GLOB; the glob names the runs of one row (one per seed). A run is a
training run directory (its csv logger's `metrics.csv`: the **last** validation, so no run
is picked by its own val score) or an `eval.py` run directory (`metrics.json`). The std is
the sample standard deviation (ddof=1; blank for a single run).
"""

from __future__ import annotations

import csv
import glob
import json
import math
import sys
from pathlib import Path

COLUMNS = ("JF", "occlusion", "exit_reentry", "distractor")


def read_run(path: str | Path) -> dict[str, float]:
    """J&F overall and per tag (0-100) of one run directory."""
    path = Path(path)
    metrics = path / "metrics.json"
    if metrics.is_file():
        m = json.loads(metrics.read_text())
        return {c: float(m["JF"] if c == "JF" else m.get(f"tag/{c}/JF", math.nan)) for c in COLUMNS}
    logs = sorted(path.glob("csv/version_*/metrics.csv"))
    if not logs:
        raise FileNotFoundError(
            f"{path}: neither metrics.json (eval.py) nor csv/version_*/metrics.csv (train.py). "
            f"Fix: point the glob at run directories."
        )
    rows = [r for r in csv.DictReader(logs[-1].open()) if r.get("val/jf")]
    if not rows:
        raise ValueError(f"{logs[-1]}: no validation row (val/jf). Did the run validate?")
    last = rows[-1]
    return {
        c: float(last["val/jf"] if c == "JF" else last.get(f"val/{c}/jf") or math.nan)
        for c in COLUMNS
    }


def _cell(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return ""
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.1f} ± {std:.1f}"


def table(rows: dict[str, list[dict[str, float]]]) -> str:
    """Markdown: one line per row label, J&F and per-tag J&F cells, number of runs."""
    lines = [
        "| model | runs | J&F | occlusion | exit/re-entry | distractor |",
        "|---|---|---|---|---|---|",
    ]
    for label, runs in rows.items():
        cells = [_cell([r[c] for r in runs]) for c in COLUMNS]
        lines.append(f"| {label} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    rows: dict[str, list[dict[str, float]]] = {}
    for arg in argv if argv is not None else sys.argv[1:]:
        label, sep, pattern = arg.rpartition("=")  # labels may hold "=", paths rarely do
        if not sep:
            raise SystemExit(f"{arg!r}: expected LABEL=GLOB")
        paths = sorted(glob.glob(pattern))
        if not paths:
            raise SystemExit(f"{label}: no run directory matches {pattern!r}")
        rows[label] = [read_run(p) for p in paths]
    print(table(rows))


if __name__ == "__main__":
    main()
