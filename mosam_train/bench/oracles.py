"""Oracle bounds of memory selection: `tracker=oracle` under each setting on one split, as
one table.

    python -m mosam_train.bench.oracles ckpt=PATH data=synthetic_long [sam2=micro]
        [EVAL OVERRIDES ...] [--out DIR] [--scores iou,visible_iou,recency,prompt]
        [--strides 1,4] [--slots rank] [--pointers sam2,kept] [--min-scores none,0.3]
        [--orders score] [--gate-tags occlusion,exit_reentry]

Runs `eval.py` as Hydra multiruns over tracker.score x tracker.stride x tracker.slots, the
ground-truth scores also over tracker.pointers x tracker.min_score and, per `--orders`,
tracker.order (recency among the good frames: its own multirun, over the thresholds only;
recency stays SAM 2's pointer rule; the prompt-only setting runs once: it has none of
these), on the data's val split (`data.test_split=...` for another), each job in
`<out>/<score>-<slots>-stride<Δ>[-ptr<pointers>-min<min_score>[-by_recency]]`
(`<out>/prompt`; `<out>`
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

from mosam_train.metrics.jf import ObjectScore, aggregate
from mosam_train.models.memory.selection import SLOT_RULES
from mosam_train.startup import REPO
from mosam_train.trackers.oracle import ORDERS, POINTER_RULES, SCORES

EVAL = REPO / "eval.py"
GROUND_TRUTH_SCORES = ("iou", "visible_iou")
SCORE_LABELS = {
    "iou": "true IoU",
    "visible_iou": "visibility-aware IoU",
    "recency": "recency",
    "prompt": "prompt frame only",
}
SUBDIR = "${tracker.score}-${tracker.slots}-stride${tracker.stride}"
GROUND_TRUTH_SUBDIR = SUBDIR + "-ptr${tracker.pointers}-min${tracker.min_score}"
BY_RECENCY_SUBDIR = GROUND_TRUTH_SUBDIR + "-by_recency"
#: what an oracle run's tracker config holds where it was written before these settings
#: configs/tracker/oracle.yaml's candidates n: other values are named in a setting's label
DEFAULT_CANDIDATES = 12
DEFAULTS = {
    "candidates": DEFAULT_CANDIDATES,
    "keep_previous": True,
    "min_score": None,
    "pointers": "sam2",
    "order": "score",
}


@dataclass
class OracleRun:
    """One evaluated setting: its `tracker=` config and per-object rows."""

    tracker: dict
    rows: list[ObjectScore]

    def __post_init__(self) -> None:
        self.tracker = {**DEFAULTS, **self.tracker}

    @property
    def label(self) -> str:
        t = self.tracker
        if t["score"] == "prompt":
            return SCORE_LABELS["prompt"]
        label = f"{SCORE_LABELS[t['score']]}, Δ={t['stride']}, slots by {t['slots']}"
        if t["candidates"] != DEFAULT_CANDIDATES:
            label += f", n={t['candidates']}"
        if not t["keep_previous"]:
            label += ", t-1 not forced"
        if t["pointers"] == "kept":
            label += ", pointers of kept frames"
        elif t["pointers"] == "window":
            label += ", SAM 2's pointers less those left out"
        if t["min_score"] is not None:
            label += f", frames < {t['min_score']:g} left out"
        if t["order"] == "recency":
            label += ", the most recent of the rest"
        return label + " (= SAM 2)" if self.is_sam2 else label

    @property
    def is_sam2(self) -> bool:
        """Recency at Δ=1 with slots by rank and SAM 2's pointers: SAM 2's own window."""
        t = self.tracker
        return (t["score"], t["stride"], t["slots"], t["pointers"]) == (
            "recency",
            1,
            "rank",
            "sam2",
        )

    def sort_key(self) -> tuple:
        t = self.tracker
        return (
            SCORES.index(t["score"]),
            t["stride"],
            t["candidates"],
            SLOT_RULES.index(t["slots"]),
            POINTER_RULES.index(t["pointers"]),
            -1.0 if t["min_score"] is None else t["min_score"],
            ORDERS.index(t["order"]),
            not t["keep_previous"],
        )

    def jf(self, tags: Sequence[str] | None = None) -> float:
        """J&F (0-100) over every object, or pooled over the objects carrying any of `tags`."""
        rows = self.rows if tags is None else [r for r in self.rows if set(r.tags) & set(tags)]
        return float(aggregate(rows)["JF"])


def _csv_list(text: str) -> list[str]:
    return [v for v in text.split(",") if v]


def _is_fraction(text: str) -> bool:
    try:
        return 0.0 <= float(text) <= 1.0
    except ValueError:
        return False


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m mosam_train.bench.oracles",
        description="tracker=oracle under each setting on one split, as one table; other "
        "arguments (ckpt=..., data=..., sam2=...) go to every eval.py job.",
    )
    parser.add_argument("--out", type=Path, help="runs go here (default: logs/oracles/<data>)")
    parser.add_argument("--scores", type=_csv_list, default=list(SCORES))
    parser.add_argument("--strides", type=_csv_list, default=["1", "4"])
    parser.add_argument("--slots", type=_csv_list, default=["rank"])
    parser.add_argument(
        "--pointers", type=_csv_list, default=["sam2", "kept"],
        help="object pointers of the ground-truth oracles: sam2 (SAM 2's window), kept "
        "and/or window (SAM 2's less the frames left out; needs numbers in --min-scores only)",
    )  # fmt: skip
    parser.add_argument(
        "--min-scores", type=_csv_list, default=["none", "0.3"],
        help="ground-truth oracles leave out kept frames scoring below it (none: never)",
    )  # fmt: skip
    parser.add_argument(
        "--orders", type=_csv_list, default=["score"],
        help="kept frames of the ground-truth oracles: score (the top by score) and/or "
        "recency (the most recent scoring at least each --min-scores)",
    )  # fmt: skip
    parser.add_argument("--gate-tags", type=_csv_list, default=["occlusion", "exit_reentry"])
    parser.add_argument("--gate-margin", type=float, default=5.0)
    parser.add_argument(
        "--table-only", action="store_true", help="print the table of the runs in --out"
    )
    args, overrides = parser.parse_known_args(argv)
    bad = (
        [s for s in args.scores if s not in SCORES]
        + [s for s in args.slots if s not in SLOT_RULES]
        + [s for s in args.pointers if s not in POINTER_RULES]
        + [s for s in args.min_scores if s != "none" and not _is_fraction(s)]
        + [s for s in args.orders if s not in ORDERS]
    )
    if bad or not all(s.isdigit() and int(s) >= 1 for s in args.strides):
        parser.error(
            f"--scores from {SCORES}, --slots from {SLOT_RULES}, --pointers from "
            f"{POINTER_RULES}, --min-scores none or numbers in [0, 1], --orders from "
            f"{ORDERS}, --strides integers >= 1"
        )
    if "window" in args.pointers and "none" in args.min_scores:
        parser.error(
            "--pointers window leaves out the pointers of frames below the threshold: "
            "--min-scores with numbers only (e.g. 0.3), or run it apart"
        )
    if "recency" in args.orders and all(m == "none" for m in args.min_scores):
        parser.error("--orders recency needs a threshold: --min-scores with a number (e.g. 0.3)")
    if args.out is None:
        data = next((o.split("=", 1)[1] for o in overrides if o.startswith("data=")), None)
        args.out = Path("logs") / "oracles" / (data or "synthetic").replace("/", "_")
    return args, overrides


def commands(args: argparse.Namespace, overrides: list[str]) -> list[list[str]]:
    """The `eval.py` invocations: a multirun over the ground-truth oracles' settings, one over
    recency's, one prompt run."""
    base = ["tracker=oracle"]
    if not any(o.startswith("plots") for o in overrides):
        base.append("plots.videos=0")  # pictures of one setting are eval.py's job
    if not any(o.startswith("data.test_split=") for o in overrides):
        base.append("data.test_split=null")  # settings are chosen on the val split
    runs = []
    grid = [
        f"tracker.stride={','.join(args.strides)}",
        f"tracker.slots={','.join(args.slots)}",
        f"hydra.sweep.dir={args.out}",
    ]
    truth = [s for s in args.scores if s in GROUND_TRUTH_SCORES]
    if truth and "score" in args.orders:
        min_scores = ",".join("null" if m == "none" else m for m in args.min_scores)
        runs.append([
            sys.executable, str(EVAL), "-m", *base, *overrides,
            f"tracker.score={','.join(truth)}", *grid,
            f"tracker.pointers={','.join(args.pointers)}", f"tracker.min_score={min_scores}",
            f"hydra.sweep.subdir={GROUND_TRUTH_SUBDIR}",
        ])  # fmt: skip
    if truth and "recency" in args.orders:  # only thresholds say which frames are good
        thresholds = ",".join(m for m in args.min_scores if m != "none")
        runs.append([
            sys.executable, str(EVAL), "-m", *base, *overrides,
            f"tracker.score={','.join(truth)}", *grid,
            f"tracker.pointers={','.join(args.pointers)}", f"tracker.min_score={thresholds}",
            "tracker.order=recency", f"hydra.sweep.subdir={BY_RECENCY_SUBDIR}",
        ])  # fmt: skip
    if "recency" in args.scores:
        runs.append([
            sys.executable, str(EVAL), "-m", *base, *overrides,
            "tracker.score=recency", *grid, f"hydra.sweep.subdir={SUBDIR}",
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
