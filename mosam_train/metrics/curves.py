"""Validation curves of training runs, and whether they have stopped rising.

Why: the shipped base is trained "until converged", which needs one stated rule checked
the same way on every run: the mean over seeds of `val/jf` rises by less than
`--threshold` (0.5 J&F) over the last `--window` (800) steps. Runs are read from their
csv logs, so a resumed run (several `csv/version_*`) reads as one curve.

    python -m mosam_train.metrics.curves RUN_DIR [RUN_DIR ...] [--plot curve.png]
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mosam_train.metrics.plots import _save, plt


def read_curve(run: str | Path, metric: str = "val/jf") -> dict[int, float]:
    """`metric` by step over every csv log of `run` (a resumed run's later logs win)."""
    logs = sorted(Path(run).glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    if not logs:
        raise FileNotFoundError(
            f"{run}: no csv/version_*/metrics.csv. Fix: pass run directories of train.py."
        )
    curve: dict[int, float] = {}
    for log in logs:
        for row in csv.DictReader(log.open()):
            if row.get(metric):
                curve[int(row["step"])] = float(row[metric])
    if not curve:
        raise ValueError(f"{run}: no {metric} row in {len(logs)} csv log(s). Did it validate?")
    return dict(sorted(curve.items()))


def mean_curve(curves: Sequence[dict[int, float]]) -> dict[int, float]:
    """The mean over runs at the steps every run validated."""
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    return {s: float(np.mean([c[s] for c in curves])) for s in steps}


def rise(mean: dict[int, float], window: int) -> float | None:
    """How much the mean rose over the last `window` steps: the latest value minus the best
    one at least `window` steps earlier (None until the curve is that long)."""
    steps = list(mean)
    last = steps[-1]
    earlier = [mean[s] for s in steps if s <= last - window]
    return None if not earlier else mean[last] - max(earlier)


def plot(curves: dict[str, dict[int, float]], mean: dict[int, float], path: str | Path,
         metric: str) -> Path:  # fmt: skip
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, c in curves.items():
        ax.plot(list(c), list(c.values()), marker=".", alpha=0.6, label=name)
    if len(curves) > 1:
        ax.plot(list(mean), list(mean.values()), color="black", lw=2, label="mean")
    ax.set_xlabel("training step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m mosam_train.metrics.curves", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("runs", nargs="+", type=Path, help="train.py run directories")
    p.add_argument("--metric", default="val/jf")
    p.add_argument("--window", type=int, default=800, help="steps (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=0.5, help="default: %(default)s")
    p.add_argument("--plot", type=Path, help="write the curves there (PNG)")
    a = p.parse_args(argv)
    try:
        curves = {str(r): read_curve(r, a.metric) for r in a.runs}
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    mean = mean_curve(list(curves.values()))
    names = [Path(r).name for r in curves]
    print("| step | " + " | ".join(names) + " | mean |")
    print("|---" * (len(names) + 2) + "|")
    for s in sorted(set().union(*curves.values())):
        cells = [f"{c[s]:.2f}" if s in c else "" for c in curves.values()]
        cells.append(f"{mean[s]:.2f}" if s in mean else "")
        print(f"| {s} | " + " | ".join(cells) + " |")
    r = rise(mean, a.window) if mean else None
    if r is None:
        print(f"not converged: the mean curve is shorter than {a.window} steps")
    elif r < a.threshold:
        print(f"converged: the mean rose {r:+.2f} over the last {a.window} steps (< {a.threshold})")
    else:
        print(f"not converged: the mean rose {r:+.2f} over the last {a.window} steps")
    if a.plot:
        print(f"plot: {plot({Path(k).name: v for k, v in curves.items()}, mean, a.plot, a.metric)}")


if __name__ == "__main__":
    main()
