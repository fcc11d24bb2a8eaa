"""The VOT toolkit's analysis as one markdown table, a row per tracker:

    python -m mosam_train.integrations.vot_report WORKSPACE/analysis/NAME.json

`vot analysis --name NAME` writes that JSON. It holds each experiment's analyses with their
parameters and, per analysis, one list of values per tracker. The values are the toolkit's
own (nothing is computed here); each column is one scalar measure, named as the toolkit's
analysis describes it (its `describe()`), or by the analysis's name in the stack where it
has one measure. Curves and plot points are left out (`vot report` draws them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def measures(report: dict[str, Any]) -> dict[str, dict[str, dict[str, list]]]:
    """{experiment: {analysis name: {tracker: its values}}}: each experiment's `results`
    are listed in its analyses' order, then in the report's tracker order."""
    trackers = list(report["trackers"])
    out = {}
    for experiment, body in report["results"].items():
        names = [a["name"] for a in body["parameters"]["analyses"]]
        out[experiment] = {
            name: dict(zip(trackers, per_tracker, strict=True))
            for name, per_tracker in zip(names, body["results"], strict=True)
        }
    return out


def scalar_columns(report: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(column label, analysis name, index in its values) of every scalar measure, from
    the toolkit's own description of each analysis."""
    from vot.analysis import Measure
    from vot.utilities import import_class

    columns = []
    for experiment, body in report["results"].items():
        for params in body["parameters"]["analyses"]:
            settings = {k: v for k, v in params.items() if k != "type" and v is not None}
            described = import_class(params["type"])(**settings).describe()
            scalars = [(i, d) for i, d in enumerate(described) if isinstance(d, Measure)]
            for i, d in scalars:
                name = params["name"] if len(scalars) == 1 else d.name
                columns.append((f"{experiment} {name}", params["name"], i))
    return columns


def table(report: dict[str, Any]) -> str:
    """Markdown: one row per tracker (its label in the registry), one column per measure."""
    values = measures(report)
    columns = scalar_columns(report)
    experiment_of = {c[0]: c[0].split(" ", 1)[0] for c in columns}
    lines = [
        "| tracker | label | " + " | ".join(c[0] for c in columns) + " |",
        "|" + "---|" * (len(columns) + 2),
    ]
    for tracker, entry in report["trackers"].items():
        cells = [
            f"{values[experiment_of[label]][analysis][tracker][index]:.3f}"
            for label, analysis, index in columns
        ]
        lines.append(f"| {tracker} | {entry['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mosam_train.integrations.vot_report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("report", type=Path, help="WORKSPACE/analysis/NAME.json")
    args = parser.parse_args(argv)
    if not args.report.is_file():
        raise SystemExit(
            f"{args.report}: no such file. Fix: run python -m mosam_train.integrations."
            f"vot_toolkit analysis --workspace WORKSPACE --name NAME first."
        )
    report = json.loads(args.report.read_text())
    print(table(report))
    sequences = report.get("sequences") or []
    print(f"\n{len(sequences)} sequences; toolkit {report.get('toolkit', '?')}; {args.report}")


if __name__ == "__main__":
    main()
