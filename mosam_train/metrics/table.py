"""Method tables: each row is mean ± std over seeds of J&F (overall and per tag) and of the
diagnostics; and paired comparisons of two rows over the same objects.

    python -m mosam_train.metrics.table "MoSAM=results/mosam/seed*.csv" "SAM 2=logs/eval/base" \
        [--paired MoSAM "SAM 2" [--paired ...]] [--tags occlusion,exit_reentry] [--metric JF]

Each row argument is LABEL=GLOB; the glob names the runs of one row (one per seed). A run is

- a per-object CSV (`eval.py`'s `per_object.csv`, or the scoring CLI's `--csv`): everything
  is computed from its rows. Run directories and checkpoints are git-ignored; tables that
  must be rebuilt from the repository are built from such small committed files;
- an `eval.py` run directory: its `per_object.csv` (its `metrics.json` if it has none);
- a training run directory: its csv logger's `metrics.csv`, the **last** validation (so no
  run is picked by its own val score).

Columns: runs, J&F, its 95% interval, J&F per tag, J on visible frames, the false-positive
rate on absent frames (%), the mean re-detection latency (frames) and the share of
re-emergences never re-detected (%) (`jf.aggregate`); a column blank in every row is left
out. Cells are mean ± sample std over the runs (ddof=1; the mean alone for one run). The
interval is the percentile bootstrap over objects (`jf.bootstrap_interval`) of the row's
J&F with each object's J&F averaged over the runs first (a single run without per-object
rows: its recorded interval): it shows how much a row's value can move from which objects
happen to be in the split, which matters when a tag has few.

Per-sequence CSVs of box tracking in the LaSOT layout (`eval.py task=tracking`'s
per_sequence.csv) make a table of their own (`tracking_table`): success AUC with its 95%
interval over sequences, precision, normalized precision and success AUC per class.

`--paired A B` prints, for the objects of both rows (matched by (video, object id); the runs
of both rows must hold the same objects) that carry any tag of `--tags` (default: every
object), the mean over objects of A minus B of `--metric` with each object's value averaged
over the row's runs (seeds), and its 95% paired bootstrap interval over objects.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mosam_train.metrics import reports
from mosam_train.metrics.jf import (
    LOGGED_KEYS,
    LOGGED_TAG_KEYS,
    ObjectScore,
    aggregate,
    bootstrap_interval,
)

__all__ = [
    "PER_OBJECT", "Paired", "Run", "is_sequence_rows", "main", "paired_difference", "read_run",
    "table", "tracking_table",
]  # fmt: skip

# tags in this order first (the synthetic test beds'), then any other, sorted
TAG_ORDER = ("occlusion", "exit_reentry", "distractor", "fast_motion")
TAG_LABELS = {"exit_reentry": "exit/re-entry", "fast_motion": "fast motion"}
DIAGNOSTICS = (
    ("J visible", "J_visible"),
    ("FP absent %", "FP_absent"),
    ("latency", "latency_mean"),
    ("never %", "never_redetected"),
)
# per-object values (0-100) a paired comparison can take
PER_OBJECT = {
    "JF": lambda r: 50.0 * (r.j_mean + r.f_mean),
    "J": lambda r: 100.0 * r.j_mean,
    "F": lambda r: 100.0 * r.f_mean,
    "J_visible": lambda r: 100.0 * r.j_visible,
    "FP_absent": lambda r: 100.0 * r.fp_absent,
}
METRIC_LABELS = {"JF": "J&F", "J_visible": "J visible", "FP_absent": "FP absent %"}
ROWS_FILE = "per_object.csv"


@dataclass(frozen=True)
class Run:
    """One run of a row: `aggregate`-style values, and its per-object rows where it has them."""

    path: Path
    values: dict[str, float]
    rows: tuple[ObjectScore, ...] | None = None


def read_rows(path: str | Path) -> list[ObjectScore]:
    """The rows of a per-object CSV (columns added since it was written take defaults)."""
    path = Path(path)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        try:
            return [ObjectScore.from_row(r) for r in reader]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"{path}, line {reader.line_num}: not a per-object row ({e!r}). Fix: point the "
                f"glob at per_object.csv files (eval.py, or the scoring CLI's --csv)."
            ) from None


def _from_rows(path: Path) -> Run:
    rows = read_rows(path)
    if not rows:
        raise ValueError(f"{path}: no row. Fix: point the glob at a finished evaluation.")
    return Run(path, {k: float(v) for k, v in aggregate(rows).items()}, tuple(rows))


def _from_validation(row: dict[str, str]) -> dict[str, float]:
    """`aggregate`-style keys of a csv logger row of validation (`jf.logged_values`)."""
    key_of = {name: key for key, name in LOGGED_KEYS.items()}
    out: dict[str, float] = {}
    for column, value in row.items():
        if not column or not column.startswith("val/") or value in (None, ""):
            continue
        name = column[4:]
        if name in key_of:
            out[key_of[name]] = float(value)
        elif "/" in name:
            tag, stat = name.rsplit("/", 1)
            if key_of.get(stat) in LOGGED_TAG_KEYS:
                out[f"tag/{tag}/{key_of[stat]}"] = float(value)
    return out


def read_run(path: str | Path) -> Run:
    """One run: a per-object CSV, an eval run directory or a training run directory."""
    path = Path(path)
    if path.is_file():
        return _from_rows(path)
    if (path / ROWS_FILE).is_file():
        return _from_rows(path / ROWS_FILE)
    metrics = path / "metrics.json"
    if metrics.is_file():
        return Run(path, reports.numbers(json.loads(metrics.read_text())))
    logs = sorted(path.glob("csv/version_*/metrics.csv"))
    if not logs:
        raise FileNotFoundError(
            f"{path}: neither a per-object CSV, per_object.csv or metrics.json (eval.py) nor "
            f"csv/version_*/metrics.csv (train.py). Fix: point the glob at those files or run "
            f"directories."
        )
    rows = [r for r in csv.DictReader(logs[-1].open()) if r.get("val/jf")]
    if not rows:
        raise ValueError(f"{logs[-1]}: no validation row (val/jf). Did the run validate?")
    return Run(path, _from_validation(rows[-1]))


def _objects(runs: Sequence[Run], label: str, metric: str = "JF") -> dict[tuple[str, int], float]:
    """(video, object id) -> `metric` averaged over the runs, which must hold the same
    objects; NaN where every run lacks it (an object without absent frame, for FP)."""
    missing = [str(r.path) for r in runs if r.rows is None]
    if missing:
        raise ValueError(
            f"{label}: {missing[0]} has no per-object rows. Fix: point the row at per_object.csv "
            f"files or eval.py run directories."
        )
    per_run = [{(r.video, r.object_id): PER_OBJECT[metric](r) for r in run.rows} for run in runs]
    first = set(per_run[0])
    for run, objects in zip(runs[1:], per_run[1:], strict=True):
        if set(objects) != first:
            odd = sorted(first ^ set(objects))[0]
            raise ValueError(
                f"{label}: {run.path} and {runs[0].path} hold different objects (e.g. video "
                f"{odd[0]!r} object {odd[1]}). Fix: evaluate every run on the same split."
            )
    out = {}
    for k in sorted(first):
        values = [o[k] for o in per_run if not math.isnan(o[k])]
        out[k] = sum(values) / len(values) if values else math.nan
    return out


def _tags_of(runs: Sequence[Run]) -> dict[tuple[str, int], tuple[str, ...]]:
    return {(r.video, r.object_id): r.tags for r in runs[0].rows or ()}


@dataclass(frozen=True)
class Paired:
    """Row A minus row B: mean over objects, its 95% paired bootstrap interval, objects."""

    difference: float
    low: float
    high: float
    num_objects: int


def paired_difference(
    runs_a: Sequence[Run],
    runs_b: Sequence[Run],
    tags: Sequence[str] = (),
    metric: str = "JF",
    labels: tuple[str, str] = ("A", "B"),
) -> Paired:
    """A minus B over the objects both rows hold that carry any of `tags` (none: all),
    each object's `metric` (`PER_OBJECT`) averaged over its row's runs first; the interval
    is the percentile bootstrap over those objects (`bootstrap_interval`). Objects where
    the metric is undefined (NaN, e.g. FP_absent without absent frames) are left out."""
    a = _objects(runs_a, labels[0], metric)
    b = _objects(runs_b, labels[1], metric)
    if set(a) != set(b):
        odd = sorted(set(a) ^ set(b))[0]
        raise ValueError(
            f"{labels[0]} and {labels[1]} hold different objects (e.g. video {odd[0]!r} object "
            f"{odd[1]}). Fix: compare rows evaluated on the same split."
        )
    object_tags = _tags_of(runs_a)
    wanted = set(tags)
    keys = [k for k in a if not wanted or wanted & set(object_tags.get(k, ()))]
    if not keys:
        seen = sorted({t for ts in object_tags.values() for t in ts})
        raise ValueError(f"no object carries any of the tags {sorted(wanted)}; tags seen: {seen}")
    d = np.array([a[k] - b[k] for k in keys])
    d = d[~np.isnan(d)]
    if not d.size:
        raise ValueError(f"{metric} is undefined on every object compared")
    low, high = bootstrap_interval(d)
    return Paired(float(d.mean()), low, high, int(d.size))


def _cell(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return ""
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.1f} ± {std:.1f}"


def _interval(runs: Sequence[Run], label: str) -> str:
    if all(r.rows is not None for r in runs):
        low, high = bootstrap_interval(list(_objects(runs, label).values()))
    elif len(runs) == 1:
        low, high = (runs[0].values.get(k, math.nan) for k in ("JF_ci_low", "JF_ci_high"))
    else:
        return ""
    return "" if math.isnan(low) else f"[{low:.1f}, {high:.1f}]"


def _tags(rows: dict[str, list[Run]]) -> list[str]:
    seen = {
        k[4:].rsplit("/", 1)[0]
        for runs in rows.values()
        for r in runs
        for k in r.values
        if k.startswith("tag/") and k.endswith("/JF")
    }
    return [t for t in TAG_ORDER if t in seen] + sorted(seen - set(TAG_ORDER))


def table(rows: dict[str, list[Run]], extra: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """Markdown: one line per row label (see the module docstring for the columns), then
    the `extra` columns ({column: {row label: cell}}, e.g. a cost measured elsewhere)."""
    tags = _tags(rows)
    columns: list[tuple[str, str | None]] = [("J&F", "JF"), ("95% CI", None)]
    columns += [(TAG_LABELS.get(t, t), f"tag/{t}/JF") for t in tags]
    columns += list(DIAGNOSTICS)
    cells = {
        label: [
            _interval(runs, label)
            if key is None
            else _cell([r.values.get(key, math.nan) for r in runs])
            for _, key in columns
        ]
        for label, runs in rows.items()
    }
    return _markdown([c for c, _ in columns], cells, {k: len(v) for k, v in rows.items()}, extra)


def _markdown(
    names: list[str],
    cells: dict[str, list[str]],
    runs: Mapping[str, int],
    extra: Mapping[str, Mapping[str, str]] | None,
) -> str:
    """One line per row label: its number of runs, its cells, then the `extra` columns; a
    column blank in every row is left out."""
    names = [*names, *(extra or {})]
    cells = {
        label: [*row, *(column.get(label, "") for column in (extra or {}).values())]
        for label, row in cells.items()
    }
    keep = [i for i in range(len(names)) if any(c[i] for c in cells.values())]
    header = ["model", "runs", *(names[i] for i in keep)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, row in cells.items():
        lines.append("| " + " | ".join([label, str(runs[label]), *(row[i] for i in keep)]) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------ box tracking (LaSOT)
def _sequence_mean(run: dict[str, dict[str, str]], key: str, cls: str | None = None) -> float:
    values = [float(r[key]) for r in run.values() if cls is None or r["class"] == cls]
    return sum(values) / len(values) if values else math.nan


SEQUENCE_COLUMNS = (
    ("success AUC", "success_auc"),
    ("precision", "precision"),
    ("norm. precision", "norm_precision"),
)


def is_sequence_rows(path: str | Path) -> bool:
    """Whether `path` is a per-sequence CSV of box tracking in the LaSOT layout (`eval.py
    task=tracking`'s per_sequence.csv)."""
    path = Path(path)
    if not path.is_file():
        return False
    with path.open(newline="") as f:
        return "success_auc" in (csv.DictReader(f).fieldnames or [])


def read_sequences(path: str | Path) -> dict[str, dict[str, str]]:
    """Sequence name -> its row, from a per-sequence CSV in the LaSOT layout."""
    path = Path(path)
    with path.open(newline="") as f:
        rows = {r["sequence"]: r for r in csv.DictReader(f)}
    if not rows:
        raise ValueError(f"{path}: no row. Fix: point the row at a finished evaluation.")
    return rows


def tracking_table(
    rows: Mapping[str, Sequence[str | Path]], extra: Mapping[str, Mapping[str, str]] | None = None
) -> str:
    """Markdown for box tracking, one line per row label from its runs' per-sequence CSVs
    (LaSOT layout, one per seed): success AUC, its 95% interval, precision, normalized
    precision and success AUC per class, mean ± std over the runs; then `extra`.

    Each run's scores are the means over its sequences, which is what the LaSOT toolkits'
    curves averaged over sequences give (`metrics.tracking.aggregate_lasot`: every score is
    linear in the curves). The interval is the percentile bootstrap over sequences of the
    success AUC, each sequence's averaged over the runs first."""
    read = {label: [read_sequences(p) for p in paths] for label, paths in rows.items()}
    seen = {r["class"] for runs in read.values() for run in runs for r in run.values()}
    classes = [c for c in TAG_ORDER if c in seen] + sorted(seen - set(TAG_ORDER))
    names = [SEQUENCE_COLUMNS[0][0], "95% CI", *(c for c, _ in SEQUENCE_COLUMNS[1:])]
    names += [f"{TAG_LABELS.get(c, c)} AUC" for c in classes]
    cells: dict[str, list[str]] = {}
    for label, runs in read.items():
        names_of = [set(run) for run in runs]
        if any(n != names_of[0] for n in names_of):
            raise ValueError(
                f"{label}: its runs hold different sequences ({', '.join(map(str, rows[label]))})."
                f" Fix: evaluate every run on the same split."
            )

        per_sequence = [
            sum(float(run[n]["success_auc"]) for run in runs) / len(runs)
            for n in sorted(names_of[0])
        ]
        low, high = bootstrap_interval(per_sequence)
        cells[label] = [
            _cell([_sequence_mean(run, "success_auc") for run in runs]),
            "" if math.isnan(low) else f"[{low:.1f}, {high:.1f}]",
            *(_cell([_sequence_mean(run, key) for run in runs]) for _, key in SEQUENCE_COLUMNS[1:]),
            *(_cell([_sequence_mean(run, "success_auc", c) for run in runs]) for c in classes),
        ]
    return _markdown(names, cells, {k: len(v) for k, v in rows.items()}, extra)


def paired_table(
    rows: dict[str, list[Run]], pairs: Sequence[tuple[str, str]], tags: Sequence[str], metric: str
) -> str:
    """Markdown: one line per pair (A, B), A minus B (`paired_difference`)."""
    what = " or ".join(tags) if tags else "all"
    name = METRIC_LABELS.get(metric, metric)
    lines = [
        f"| A − B | objects ({what}) | Δ {name} | 95% CI (paired bootstrap) |",
        "|---|---|---|---|",
    ]
    for a, b in pairs:
        unknown = [x for x in (a, b) if x not in rows]
        if unknown:
            raise ValueError(f"--paired {unknown[0]!r}: no such row; rows: {list(rows)}")
        p = paired_difference(rows[a], rows[b], tags, metric, (a, b))
        interval = f"[{p.low:+.1f}, {p.high:+.1f}]"
        lines.append(f"| {a} − {b} | {p.num_objects} | {p.difference:+.1f} | {interval} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mosam_train.metrics.table",
        description="Method table (mean ± std over seeds) and paired comparisons of its rows.",
    )
    parser.add_argument("rows", nargs="+", metavar="LABEL=GLOB", help="one row: its runs")
    parser.add_argument(
        "--paired", nargs=2, action="append", default=[], metavar=("A", "B"),
        help="print row A minus row B over the same objects, with a bootstrap interval",
    )  # fmt: skip
    parser.add_argument(
        "--tags", default="", help="comma-separated: --paired compares the objects with any"
    )
    parser.add_argument("--metric", choices=sorted(PER_OBJECT), default="JF", help="--paired's")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    paths: dict[str, list[str]] = {}
    for arg in args.rows:
        label, sep, pattern = arg.rpartition("=")  # labels may hold "=", paths rarely do
        if not sep:
            raise SystemExit(f"{arg!r}: expected LABEL=GLOB")
        paths[label] = sorted(glob.glob(pattern))
        if not paths[label]:
            raise SystemExit(f"{label}: no run directory or per-object CSV matches {pattern!r}")
    boxes = {label for label, found in paths.items() if all(map(is_sequence_rows, found))}
    if boxes:
        if boxes != set(paths) or args.paired:
            raise SystemExit(
                f"{', '.join(sorted(boxes))}: per-sequence box-tracking CSVs, which make a table "
                f"of their own (no --paired). Fix: give only box-tracking rows, or only VOS ones."
            )
        print(tracking_table(paths))
        return
    rows = {label: [read_run(p) for p in found] for label, found in paths.items()}
    print(table(rows))
    if args.paired:
        tags = [t for t in args.tags.split(",") if t]
        print()
        print(paired_table(rows, [tuple(p) for p in args.paired], tags, args.metric))


if __name__ == "__main__":
    main()
