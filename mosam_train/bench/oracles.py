"""Oracle bounds of memory selection: `tracker=oracle` under each setting on one split, as
one table.

    python -m mosam_train.bench.oracles ckpt=PATH data=synthetic_long [sam2=micro]
        [EVAL OVERRIDES ...] [--out DIR] [--scores iou,visible_iou,recency,prompt]
        [--strides 1,2,4] [--slots rank,distance] [--gate-tags occlusion,exit_reentry]

Runs `eval.py` as a Hydra multirun over tracker.score x tracker.stride x tracker.slots (the
prompt-only setting once: it has neither) on the data's val split (`data.test_split=...`
for another), each job in `<out>/<score>-<slots>-stride<Δ>` (`<out>/prompt`; `<out>`
defaults to `logs/oracles/<data>`), then prints a markdown table from each run's
`per_object.csv`: J&F overall, per tag, and pooled over the objects of the gate tags; and
the gate: the best ground-truth oracle (iou, visible_iou) minus recency at Δ=1 with slots
by rank (SAM 2's rule, equal to `tracker=sam2`) on those pooled objects, against
`--gate-margin` (5 J&F). The other arguments go to every `eval.py` job. A rerun continues
where it stopped: `eval.py` resumes each run directory's finished videos.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mosam_train
from mosam_train.metrics.jf import ObjectScore, aggregate
from mosam_train.models.memory.selection import SLOT_RULES
from mosam_train.trackers.oracle import SCORES

EVAL = Path(mosam_train.__file__).resolve().parents[1] / "eval.py"
GROUND_TRUTH_SCORES = ("iou", "visible_iou")
SCORE_LABELS = {
    "iou": "true IoU",
    "visible_iou": "visibility-aware IoU",
    "recency": "recency",
    "prompt": "prompt frame only",
}
SUBDIR = "${tracker.score}-${tracker.slots}-stride${tracker.stride}"


@dataclass
class OracleRun:
    """One evaluated setting: its `tracker=` config and per-object rows."""

    tracker: dict
    rows: list[ObjectScore]

    @property
    def label(self) -> str:
        t = self.tracker
        if t["score"] == "prompt":
            return SCORE_LABELS["prompt"]
        label = f"{SCORE_LABELS[t['score']]}, Δ={t['stride']}, slots by {t['slots']}"
        return label + " (= SAM 2)" if self.is_sam2 else label

    @property
    def is_sam2(self) -> bool:
        """Recency at Δ=1 with slots by rank: SAM 2's own window."""
        t = self.tracker
        return t["score"] == "recency" and t["stride"] == 1 and t["slots"] == "rank"

    def sort_key(self) -> tuple:
        t = self.tracker
        return (SCORES.index(t["score"]), t["stride"], SLOT_RULES.index(t["slots"]))

    def jf(self, tags: Sequence[str] | None = None) -> float:
        """J&F (0-100) over every object, or pooled over the objects carrying any of `tags`."""
        rows = self.rows if tags is None else [r for r in self.rows if set(r.tags) & set(tags)]
        return float(aggregate(rows)["JF"])


def _csv_list(text: str) -> list[str]:
    return [v for v in text.split(",") if v]


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m mosam_train.bench.oracles",
        description="tracker=oracle under each setting on one split, as one table; other "
        "arguments (ckpt=..., data=..., sam2=...) go to every eval.py job.",
    )
    parser.add_argument("--out", type=Path, help="runs go here (default: logs/oracles/<data>)")
    parser.add_argument("--scores", type=_csv_list, default=list(SCORES))
    parser.add_argument("--strides", type=_csv_list, default=["1", "2", "4"])
    parser.add_argument("--slots", type=_csv_list, default=list(SLOT_RULES))
    parser.add_argument("--gate-tags", type=_csv_list, default=["occlusion", "exit_reentry"])
    parser.add_argument("--gate-margin", type=float, default=5.0)
    parser.add_argument(
        "--table-only", action="store_true", help="print the table of the runs in --out"
    )
    args, overrides = parser.parse_known_args(argv)
    bad = [s for s in args.scores if s not in SCORES] + [
        s for s in args.slots if s not in SLOT_RULES
    ]
    if bad or not all(s.isdigit() and int(s) >= 1 for s in args.strides):
        parser.error(f"--scores from {SCORES}, --slots from {SLOT_RULES}, --strides integers >= 1")
    if args.out is None:
        data = next((o.split("=", 1)[1] for o in overrides if o.startswith("data=")), None)
        args.out = Path("logs") / "oracles" / (data or "synthetic").replace("/", "_")
    return args, overrides


def commands(args: argparse.Namespace, overrides: list[str]) -> list[list[str]]:
    """The `eval.py` invocations: one multirun over the strided settings, one prompt run."""
    base = ["tracker=oracle"]
    if not any(o.startswith("plots") for o in overrides):
        base.append("plots.videos=0")  # pictures of one setting are eval.py's job
    if not any(o.startswith("data.test_split=") for o in overrides):
        base.append("data.test_split=null")  # settings are chosen on the val split
    runs = []
    strided = [s for s in args.scores if s != "prompt"]
    if strided:
        runs.append([
            sys.executable, str(EVAL), "-m", *base, *overrides,
            f"tracker.score={','.join(strided)}",
            f"tracker.stride={','.join(args.strides)}",
            f"tracker.slots={','.join(args.slots)}",
            f"hydra.sweep.dir={args.out}", f"hydra.sweep.subdir={SUBDIR}",
        ])  # fmt: skip
    if "prompt" in args.scores:
        runs.append([
            sys.executable, str(EVAL), *base, *overrides,
            "tracker.score=prompt", f"hydra.run.dir={args.out}/prompt",
        ])  # fmt: skip
    return runs


def read_runs(out: Path) -> list[OracleRun]:
    """Every finished oracle run under `out` (a directory with metrics.json and
    per_object.csv, evaluated with `tracker=oracle`), in table order."""
    runs = []
    for metrics in sorted(out.glob("*/metrics.json")):
        tracker = json.loads(metrics.read_text()).get("tracker") or {}
        rows_file = metrics.with_name("per_object.csv")
        if tracker.get("name") != "oracle" or not rows_file.is_file():
            continue
        with rows_file.open() as f:
            rows = [ObjectScore.from_row(r) for r in csv.DictReader(f)]
        runs.append(OracleRun(tracker, rows))
    return sorted(runs, key=OracleRun.sort_key)


def table(runs: list[OracleRun], gate_tags: Sequence[str]) -> str:
    """Markdown: one line per setting; J&F overall, per tag and pooled over `gate_tags`."""
    tags = sorted({t for run in runs for r in run.rows for t in r.tags})
    pooled = " + ".join(gate_tags) + " (pooled)"
    lines = [
        "| setting | objects | J&F | " + " | ".join([*tags, pooled]) + " |",
        "|---" * (len(tags) + 4) + "|",
    ]
    for run in runs:
        cells = [run.jf(), *(run.jf([t]) for t in tags), run.jf(gate_tags)]
        lines.append(
            f"| {run.label} | {len(run.rows)} | " + " | ".join(f"{v:.1f}" for v in cells) + " |"
        )
    return "\n".join(lines)


def gate(runs: list[OracleRun], gate_tags: Sequence[str], margin: float) -> str:
    """The gate's verdict: the best ground-truth oracle against SAM 2's recency."""
    pooled = " + ".join(gate_tags)
    sam2 = next((r for r in runs if r.is_sam2), None)
    oracles = [r for r in runs if r.tracker["score"] in GROUND_TRUTH_SCORES]
    if sam2 is None or not oracles:
        return (
            "gate: needs recency at Δ=1 with slots by rank and at least one ground-truth "
            "oracle (--scores with recency and iou or visible_iou, --strides with 1, "
            "--slots with rank)"
        )
    best = max(oracles, key=lambda r: r.jf(gate_tags))
    gain = best.jf(gate_tags) - sam2.jf(gate_tags)
    verdict = "holds" if gain >= margin else "does not hold"
    return (
        f"gate on {pooled} (pooled): best oracle {best.label} {best.jf(gate_tags):.1f} vs "
        f"recency (SAM 2) {sam2.jf(gate_tags):.1f}: {gain:+.1f} J&F, needs >= {margin:g}: "
        f"{verdict}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    args, overrides = parse_args(argv)
    if not args.table_only:
        for command in commands(args, overrides):
            print("$", " ".join(command[1:]), flush=True)
            if subprocess.run(command).returncode != 0:
                raise SystemExit(f"eval.py failed (see above); runs so far are in {args.out}")
    runs = read_runs(args.out)
    if not runs:
        raise SystemExit(f"{args.out}: no finished tracker=oracle run (metrics.json)")
    print(table(runs, args.gate_tags))
    print()
    print(gate(runs, args.gate_tags, args.gate_margin))


if __name__ == "__main__":
    main()
