"""The method table from one command: every row's training runs (one per seed), each
evaluated on the held-out split, the per-object CSVs collected, the table and the paired
comparisons printed.

    python -m mosam_train.bench.method_table [--config configs/table/method_long.yaml]
        [--rows control,mosam] [--seeds 0,1,2] [--dry-run] [--table-only]

The config (see configs/table/) names the rows: a trained row gives `train.py` overrides
(run once per seed), an evaluated-only row a checkpoint (`ckpt`, one run: nothing random
enters it) and optionally `eval.py` overrides of its own (e.g. an oracle rule), and a row
`of` a trained row evaluates that row's checkpoints, seed by seed, with `eval.py` overrides
of its own (e.g. `parts_off=[...]`: a part of the trained model switched off). Each trained
run lives in `<runs>/<row>/seed<k>/train`; its best validation's checkpoint (the training
runs choose checkpoints on val) is then evaluated by `eval.py` on the config's split in
`<runs>/<row>/seed<k>/test`, and its `per_object.csv` is copied to
`<results>/<row>/seed<k>.csv`: small files meant to be committed, from which
`--table-only` rebuilds the table (`metrics.table`) anywhere; beside it `seed<k>.cpu.json`,
the CPU and wall seconds its training and evaluation took (summed over resumes), which the
table's last line totals.

Why a driver and not one Hydra multirun: a row is a training run and then an evaluation on
another split, each a process of its own (a crash loses one run, not the sweep), and a
rerun continues where it stopped: a finished run is skipped, an interrupted training
resumes from its `last.ckpt` (`resume=`), and `eval.py` resumes its finished videos.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from mosam_train.metrics import table as table_cli
from mosam_train.startup import REPO

DEFAULT_CONFIG = REPO / "configs" / "table" / "method_long.yaml"
DONE = "done"  # written in a training run's directory once it finished
LEDGER = "cpu.json"  # a run's CPU and wall seconds per stage, summed over resumes


@dataclass
class Row:
    """One row: `train` overrides (a trained row), a `ckpt` (evaluated only), or `of` a
    trained row (its runs' checkpoints evaluated with this row's `eval` overrides)."""

    key: str
    label: str
    train: list[str] = field(default_factory=list)
    ckpt: str | None = None
    of: str | None = None
    eval: list[str] = field(default_factory=list)

    @property
    def trained(self) -> bool:
        return bool(self.train)

    @property
    def seeded(self) -> bool:
        """A run per seed: trained, or evaluating a trained row's runs."""
        return self.trained or self.of is not None


@dataclass
class Table:
    rows: list[Row]
    seeds: list[int]
    eval: list[str]
    runs: Path
    results: Path
    paired: list[tuple[str, str]]
    tags: list[str]


def read_table(path: str | Path) -> Table:
    """The table config, checked: each row trains, names a checkpoint or is `of` a trained
    row above it (with overrides of its own), one of the three."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"--config {path}: no such file. Fix: a table config (configs/table/).")
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    rows: list[Row] = []
    for key, spec in cfg["rows"].items():
        row = Row(key=key, **spec)
        kinds = sum((row.trained, row.ckpt is not None, row.of is not None))
        if kinds != 1:
            raise SystemExit(
                f"{path}: row {key} needs one of train overrides, a ckpt or `of` a trained "
                f"row, not {'several' if kinds else 'none'}. Fix: keep one of the three."
            )
        trained_above = [r.key for r in rows if r.trained]
        if row.of is not None and (row.of not in trained_above or not row.eval):
            raise SystemExit(
                f"{path}: row {key} is of {row.of!r}. Fix: `of` names a trained row above it "
                f"({', '.join(trained_above) or 'none yet'}) and the row gives eval overrides."
            )
        rows.append(row)
    keys = {r.key for r in rows}
    paired = [tuple(p) for p in cfg.get("paired", [])]
    for pair in paired:
        if len(pair) != 2 or not set(pair) <= keys:
            raise SystemExit(f"{path}: paired {list(pair)}: two of the rows {sorted(keys)}.")
    return Table(
        rows=rows,
        seeds=[int(s) for s in cfg["seeds"]],
        eval=list(cfg.get("eval", [])),
        runs=REPO / cfg["runs"],
        results=REPO / cfg["results"],
        paired=paired,
        tags=list(cfg.get("tags", [])),
    )


def runs_of(table: Table, row: Row, seeds: Sequence[int]) -> list[tuple[str, Path]]:
    """(name, directory) of a row's runs: `seed<k>` per seed, or one `run` when it evaluates
    a given checkpoint."""
    names = [f"seed{s}" for s in seeds] if row.seeded else ["run"]
    return [(n, table.runs / row.key / n) for n in names]


def best_checkpoint(train_dir: Path) -> Path:
    """The run's best validation checkpoint (ModelCheckpoint keeps one, `step*-jf*.ckpt`)."""
    found = sorted((train_dir / "checkpoints").glob("step*-jf*.ckpt"))
    if len(found) != 1:
        raise SystemExit(
            f"{train_dir}/checkpoints: {len(found)} best-validation checkpoints, expected one "
            f"(callbacks.model_checkpoint.save_top_k=1). Fix: remove {train_dir} to train again."
        )
    return found[0]


def train_command(row: Row, seed: int, train_dir: Path) -> list[str]:
    """Train from scratch, or continue an interrupted run from its last.ckpt."""
    if (train_dir / "checkpoints" / "last.ckpt").is_file():
        return [sys.executable, str(REPO / "train.py"), f"resume={train_dir}"]
    return [
        sys.executable, str(REPO / "train.py"), *row.train, f"seed={seed}",
        f"hydra.run.dir={train_dir}",
    ]  # fmt: skip


def eval_command(table: Table, row: Row, ckpt: Path | str, test_dir: Path) -> list[str]:
    return [
        sys.executable, str(REPO / "eval.py"), *table.eval, *row.eval, f"ckpt={ckpt}",
        f"hydra.run.dir={test_dir}",
    ]  # fmt: skip


def _children_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process's finished children and theirs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(command: list[str], dry_run: bool, ledger: Path | None = None, key: str = "") -> None:
    """Run `command`; its CPU and wall seconds are added to `ledger[key]` (a JSON file that
    sums a run's stages over resumes), whether it succeeds or not."""
    print("$", " ".join(command[1:]), flush=True)
    if dry_run:
        return
    cpu, wall = _children_cpu_seconds(), time.monotonic()
    returncode = subprocess.run(command, cwd=REPO).returncode
    if ledger is not None:
        spent = json.loads(ledger.read_text()) if ledger.is_file() else {}
        stage = spent.setdefault(key, {"cpu_s": 0.0, "wall_s": 0.0})
        stage["cpu_s"] += _children_cpu_seconds() - cpu
        stage["wall_s"] += time.monotonic() - wall
        ledger.parent.mkdir(parents=True, exist_ok=True)
        ledger.write_text(json.dumps(spent, indent=1))
    if returncode != 0:
        raise SystemExit(f"failed: {' '.join(command[1:])} (rerun this command to continue)")


def run_row(table: Table, row: Row, seeds: Sequence[int], dry_run: bool = False) -> None:
    """Train (if the row trains) and evaluate each of the row's runs not finished yet, and
    copy each evaluation's per-object CSV into the results."""
    for name, run_dir in runs_of(table, row, seeds):
        result = table.results / row.key / f"{name}.csv"
        if result.is_file():
            continue
        ledger = run_dir / LEDGER
        ckpt: Path | str | None = row.ckpt
        if row.trained:
            train_dir = run_dir / "train"
            if not (train_dir / DONE).is_file():
                seed = int(name.removeprefix("seed"))
                run(train_command(row, seed, train_dir), dry_run, ledger, "train")
                if dry_run:
                    continue
                (train_dir / DONE).write_text("")
            ckpt = best_checkpoint(train_dir)
        elif row.of is not None:
            train_dir = table.runs / row.of / name / "train"
            if not (train_dir / DONE).is_file():
                if dry_run:
                    continue
                raise SystemExit(
                    f"row {row.key} evaluates row {row.of}'s {name}, whose training has not "
                    f"finished ({train_dir}). Fix: run --rows {row.of} --seeds "
                    f"{name.removeprefix('seed')} first."
                )
            ckpt = best_checkpoint(train_dir)
        test_dir = run_dir / "test"
        run(eval_command(table, row, ckpt, test_dir), dry_run, ledger, "test")
        if not dry_run:
            result.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ledger, result.with_suffix(".cpu.json"))
            shutil.copyfile(test_dir / "per_object.csv", result)


def cpu_hours(table: Table) -> tuple[float, int, int]:
    """(CPU hours, runs measured whole, runs not) over the committed results: what the
    table cost as measured, and how many runs it does not cover whole (a stage run before
    CPU time was recorded; what was recorded of them is in the hours). A row `of` a trained
    row counts its evaluations only: the training is its source row's."""
    hours, measured, unmeasured = 0.0, 0, 0
    for row in table.rows:
        for result in (table.results / row.key).glob("*.csv"):
            ledger = result.with_suffix(".cpu.json")
            spent = json.loads(ledger.read_text()) if ledger.is_file() else {}
            hours += sum(s["cpu_s"] for s in spent.values()) / 3600
            whole = "test" in spent and ("train" in spent or not row.trained)
            measured, unmeasured = measured + whole, unmeasured + (not whole)
    return hours, measured, unmeasured


def table_arguments(table: Table, rows: Sequence[Row]) -> list[str]:
    """`metrics.table`'s arguments for the rows with results: one LABEL=GLOB each, the
    pairs whose rows both have results, the tags."""
    have = [r for r in rows if any((table.results / r.key).glob("*.csv"))]
    args = [f"{r.label}={table.results / r.key}/*.csv" for r in have]
    labels = {r.key: r.label for r in have}
    for a, b in table.paired:
        if a in labels and b in labels:
            args += ["--paired", labels[a], labels[b]]
    return [*args, "--tags", ",".join(table.tags)] if table.tags else args


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mosam_train.bench.method_table", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="the table config")
    parser.add_argument("--rows", default="", help="comma-separated row keys (default: all)")
    parser.add_argument("--seeds", default="", help="comma-separated (default: the config's)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--table-only", action="store_true", help="the table from the results")
    args = parser.parse_args(argv)
    table = read_table(args.config)
    wanted = [k for k in args.rows.split(",") if k]
    unknown = set(wanted) - {r.key for r in table.rows}
    if unknown:
        raise SystemExit(f"--rows {', '.join(sorted(unknown))}: not in {args.config}.")
    rows = [r for r in table.rows if not wanted or r.key in wanted]
    seeds = [int(s) for s in args.seeds.split(",") if s] or table.seeds
    if not args.table_only:
        for row in rows:
            run_row(table, row, seeds, args.dry_run)
    if args.dry_run:
        return
    arguments = table_arguments(table, table.rows)
    if not arguments or arguments[0].startswith("--"):
        raise SystemExit(f"{table.results}: no results yet. Fix: run without --table-only.")
    table_cli.main(arguments)
    hours, measured, unmeasured = cpu_hours(table)
    print(
        f"\nCPU time, training and test evaluation: {hours:.1f} h over {measured} runs"
        + (f" ({unmeasured} more run in part before CPU time was recorded)" if unmeasured else "")
    )


if __name__ == "__main__":
    main()
