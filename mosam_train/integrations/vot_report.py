"""The VOT toolkit's analysis as one markdown table, a row per tracker:

    python -m mosam_train.integrations.vot_report WORKSPACE/analysis/NAME.json

`vot analysis --name NAME` writes that JSON. It holds each experiment's analyses with their
parameters and, per analysis, one list of values per tracker. The values are the toolkit's
own (nothing is computed here); each column is one scalar measure, named as the toolkit's
analysis describes it (its `describe()`), or by the analysis's name in the stack where it
has one measure. Curves and plot points are left out (`vot report` draws them).

`--seeds NAME=A,B,C` shows the trackers A, B and C (e.g. one model trained with three
seeds, each a `--named` entry of the workspace) as one row NAME: each cell the mean ± the
sample standard deviation of their values, the only arithmetic done here.
"""

from __future__ import annotations

import argparse
import json
import statistics
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


def table(report: dict[str, Any], seeds: dict[str, list[str]] | None = None) -> str:
    """Markdown: one row per tracker (its label in the registry), one column per measure;
    the trackers of each `seeds` group (name: its trackers) as one row, mean ± std."""
    values = measures(report)
    columns = scalar_columns(report)
    experiment_of = {c[0]: c[0].split(" ", 1)[0] for c in columns}
    groups = check_seeds(report, seeds or {})
    lines = [
        "| tracker | label | " + " | ".join(c[0] for c in columns) + " |",
        "|" + "---|" * (len(columns) + 2),
    ]
    for tracker, entry in report["trackers"].items():
        group = next((g for g, members in groups.items() if tracker in members), None)
        if group is not None and tracker != groups[group][0]:
            continue  # the group's row stands where its first tracker would
        members = groups[group] if group is not None else [tracker]
        cells = []
        for label, analysis, index in columns:
            found = [values[experiment_of[label]][analysis][m][index] for m in members]
            if len(found) == 1:
                cells.append(f"{found[0]:.3f}")
            else:
                cells.append(f"{statistics.mean(found):.3f} ± {statistics.stdev(found):.3f}")
        if group is None:
            lines.append(f"| {tracker} | {entry['label']} | " + " | ".join(cells) + " |")
        else:
            label = f"mean ± std of {', '.join(members)}"
            lines.append(f"| {group} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check_seeds(report: dict[str, Any], seeds: dict[str, list[str]]) -> dict[str, list[str]]:
    """`seeds` with each group's trackers in the report, at least two, in no other group."""
    seen: set[str] = set()
    for name, members in seeds.items():
        unknown = [m for m in members if m not in report["trackers"]]
        if unknown or len(members) < 2 or seen & set(members):
            raise SystemExit(
                f"--seeds {name}={','.join(members)}: each group needs two or more of the "
                f"report's trackers ({', '.join(report['trackers'])}), each in one group only"
                + (f"; not in the report: {', '.join(unknown)}" if unknown else "")
            )
        seen |= set(members)
    return seeds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mosam_train.integrations.vot_report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("report", type=Path, help="WORKSPACE/analysis/NAME.json")
    parser.add_argument(
        "--seeds", action="append", default=[], metavar="NAME=A,B,C",
        help="show the trackers A, B, C as one row NAME, mean ± std (e.g. training seeds)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    seeds = {}
    for text in args.seeds:
        name, _, members = text.partition("=")
        if not name or not members:
            raise SystemExit(f"--seeds {text}: expected NAME=A,B,C (trackers of the report)")
        seeds[name] = members.split(",")
    if not args.report.is_file():
        raise SystemExit(
            f"{args.report}: no such file. Fix: run python -m mosam_train.integrations."
            f"vot_toolkit analysis --workspace WORKSPACE --name NAME first."
        )
    report = json.loads(args.report.read_text())
    print(table(report, seeds))
    sequences = report.get("sequences") or []
    print(f"\n{len(sequences)} sequences; toolkit {report.get('toolkit', '?')}; {args.report}")


if __name__ == "__main__":
    main()
