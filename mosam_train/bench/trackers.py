"""The peer-tracker comparison: SAM 2, SAMURAI, SAM2Long and DAM4SAM on one SAM 2 base that
tracks with three candidate masks, and MoSAM trained on that same base, with the same
prompts and scorer on the held-out split, as one table.

    python -m mosam_train.bench.trackers ckpt=BASE [mosam_ckpt=SEED0,SEED1,...]
        data=synthetic_long [sam2=micro] [EVAL OVERRIDES ...] [--split test]
        [--rules sam2,samurai,sam2long,dam4sam] [--add] [--out DIR] [--results DIR]
        [--timing run|none|PATH] [--infer-args "ARGS"] [--table-only]
    python -m mosam_train.bench.trackers task=tracking data=tracking/synthetic_lasot ckpt=BASE ...

Runs `eval.py` as a Hydra multirun over `tracker=<rule>` on `ckpt` (each job in
`<out>/<rule>`), then `eval.py ckpt=MOSAM` (SAM 2's rule; MoSAM's own parts select its
memory) for each MoSAM checkpoint (one per training seed: one row, mean ± std) in
`<out>/mosam_<i>`; every job evaluates `data.test_split=<--split>` with every object of
every video. With `task=tracking` (a box-tracking set in the LaSOT layout, e.g.
`data=tracking/synthetic_lasot`) every job tracks each sequence from its first box
(`data.split=<--split>`) and the table is LaSOT's (`metrics.table.tracking_table`). An
official-format base (.pt) is built tracking with three candidates
(`++model.sam2.overrides.multimask_output_for_tracking=true`, unless the command sets it); a
checkpoint of this project carries its own setting, and one that tracks with one mask is
refused before anything runs when a rule needs three. A MoSAM checkpoint names its frozen
base (path and sha256): a base other than `ckpt` (by sha256) is refused, naming both.

Each run's `per_object.csv` (`per_sequence.csv` for box tracking) is copied to
`<results>/<run>.csv` (small files meant to be committed), with `runs.json` (each run's
model files, rule, data and split, checked to share one base) and `infer.json`; the table
is built from that directory alone (`--table-only` rebuilds it from committed files), by
`metrics.table`: J&F with its 95% interval, J&F per tag and the diagnostics (box tracking:
LaSOT's scores), plus the per-frame time relative to SAM 2 and
the peak memory of `python -m mosam_train.bench.infer` for the base's size, tracking with
three candidates, run by this command on this machine (`--timing run`, stored in
`<out>/infer.json` and reused while its arguments stay the same), read from a file of its
JSON (`--timing PATH`) or left out (`--timing none`); the lines under the table say which
run and machine the figures come from. `--infer-args` adds arguments to that run.

A rerun continues where it stopped: `eval.py` resumes each run directory's finished videos,
and the benchmark is not run again. `--add` evaluates only the rows asked for (`--rules ""`
for none, e.g. to add MoSAM) and adds them to those already in `--results`, which must be
on the same base and split; the timing is run for every row of the table.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mosam_train.bench import infer
from mosam_train.checkpoint_files import fingerprint, load_checkpoint_file
from mosam_train.metrics.table import read_run, table, tracking_table
from mosam_train.models.sam2_builder import load_model_config
from mosam_train.models.shipped import resolve_weights
from mosam_train.startup import REPO, compose_config
from mosam_train.trackers import build_tracker, tracker_names

EVAL = REPO / "eval.py"
DEFAULT_RULES = ("sam2", "samurai", "sam2long", "dam4sam")
LABELS = {"sam2": "SAM 2", "samurai": "SAMURAI", "sam2long": "SAM2Long", "dam4sam": "DAM4SAM"}
MOSAM = "mosam"  # MoSAM's runs are mosam_1, mosam_2, ...: their run directories and CSVs
MULTIMASK = "model.sam2.overrides.multimask_output_for_tracking"
RUNS_FILE = "runs.json"
PER_OBJECT, PER_SEQUENCE = "per_object.csv", "per_sequence.csv"  # eval.py's rows: VOS, boxes
INFER_FILE = "infer.json"
TIME_COLUMN = "time × SAM 2"
MEMORY_COLUMN = "peak RSS MiB"


def label(key: str) -> str:
    """The name in the table of the row run `key` belongs to."""
    return "MoSAM" if is_mosam(key) else LABELS.get(key, key)


def is_mosam(key: str) -> bool:
    return key.startswith(f"{MOSAM}_")


def mosam_keys(count: int) -> list[str]:
    """The run keys of `count` MoSAM checkpoints, in the order given."""
    return [f"{MOSAM}_{i}" for i in range(1, count + 1)]


def order(keys: Sequence[str]) -> list[str]:
    """The rule rows in their usual order, then any other rule, then MoSAM's runs."""
    rank = {k: i for i, k in enumerate(DEFAULT_RULES)}
    return sorted(
        keys,
        key=lambda k: (
            is_mosam(k),
            rank.get(k, len(rank)),
            int(k.split("_")[-1]) if is_mosam(k) else 0,
            k,
        ),
    )


def _csv_list(text: str) -> list[str]:
    return [v for v in text.split(",") if v]


def _value(overrides: Sequence[str], key: str) -> str | None:
    """The value of `key=...` among `overrides` (the last one wins, as in Hydra)."""
    found = [o.split("=", 1)[1] for o in overrides if o.lstrip("+~").split("=", 1)[0] == key]
    return found[-1] if found else None


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The options, and the overrides every `eval.py` job gets (without `ckpt` and
    `mosam_ckpt`, which are `args.ckpt` and `args.mosam_ckpt`)."""
    parser = argparse.ArgumentParser(
        prog="python -m mosam_train.bench.trackers",
        description="SAM 2, SAMURAI, SAM2Long, DAM4SAM and MoSAM on one base, as one table; "
        "ckpt=BASE and mosam_ckpt=MOSAM name the models, other arguments (data=..., "
        "sam2=...) go to every eval.py job.",
    )
    parser.add_argument("--split", default="test", help="the evaluated split (data.test_split)")
    parser.add_argument(
        "--rules",
        type=_csv_list,
        default=list(DEFAULT_RULES),
        help=f"comma list of tracker rules, one row each (default: {','.join(DEFAULT_RULES)})",
    )
    parser.add_argument(
        "--out", type=Path, help="runs go here (default: logs/trackers/<data>_<split>)"
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="per-object CSVs to commit (default: docs/results/trackers/<data>_<split>)",
    )
    parser.add_argument(
        "--timing",
        default="run",
        help="run: bench.infer here; none: no cost columns; PATH: a file of its JSON output",
    )
    parser.add_argument("--infer-args", default="", help="more arguments for bench.infer")
    parser.add_argument(
        "--add",
        action="store_true",
        help="evaluate only these rows and add them to the rows already in --results",
    )
    parser.add_argument(
        "--table-only", action="store_true", help="print the table of the files in --results"
    )
    args, overrides = parser.parse_known_args(argv)
    unknown = [r for r in args.rules if r not in tracker_names()]
    if unknown:
        parser.error(
            f"--rules: unknown rule(s) {', '.join(unknown)}; registered: "
            f"{', '.join(tracker_names())}"
        )
    tracker = [o for o in overrides if o.lstrip("+~").split("=", 1)[0].split(".")[0] == "tracker"]
    if tracker:
        parser.error(
            f"{tracker[0]}: every row runs its rule with its published defaults "
            f"(configs/tracker/); choose rows with --rules, and run eval.py tracker=... for "
            f"an ablation"
        )
    args.task = _value(overrides, "task") or "vos"
    if args.task not in ("vos", "tracking"):
        parser.error(f"task={args.task}: the table is for task=vos or task=tracking")
    if args.task == "tracking" and "got10k" in (_value(overrides, "data") or ""):
        parser.error(
            "data=tracking/got10k: the box-tracking table reads LaSOT-layout sequences "
            "(success AUC, precision); run eval.py task=tracking tracker=<rule> for GOT-10k"
        )
    stray = [o for o in overrides if "=" not in o]
    if stray:
        parser.error(f"unrecognised argument(s) {' '.join(stray)}")
    args.ckpt = _value(overrides, "ckpt")
    args.mosam_ckpts = _csv_list(_value(overrides, "mosam_ckpt") or "")
    overrides = [
        o for o in overrides if o.lstrip("+~").split("=", 1)[0] not in ("ckpt", "mosam_ckpt")
    ]
    if not args.table_only and not args.ckpt:
        parser.error("ckpt=PATH (the SAM 2 base every rule runs on) is needed")
    if not args.table_only and not (args.rules or args.mosam_ckpts):
        parser.error("no row to evaluate: --rules is empty and no mosam_ckpt= is given")
    data = (_value(overrides, "data") or "synthetic").replace("/", "_")
    name = f"{data}_{args.split}"
    args.out = args.out or Path("logs") / "trackers" / name
    args.results = args.results or Path("docs") / "results" / "trackers" / name
    return args, overrides


# ------------------------------------------------------------------------------ checks
def check_same_base(ckpt: str | Path, mosam_ckpt: str | Path) -> dict[str, Any]:
    """`mosam_ckpt`'s fingerprint, refused unless its frozen base is the file `ckpt` (by
    sha256): rows on different bases would not compare the trackers."""
    base, mosam = fingerprint(resolve_weights(ckpt)), fingerprint(resolve_weights(mosam_ckpt))
    named = mosam.get("sam2_base")
    if named is None:
        raise SystemExit(
            f"mosam_ckpt={mosam_ckpt} names no frozen SAM 2 base: it is not a MoSAM checkpoint "
            f"(model=mosam). Fix: pass a checkpoint trained with model=mosam on ckpt={ckpt}."
        )
    if named["sha256"] != base["sha256"]:
        raise SystemExit(
            f"mosam_ckpt={mosam_ckpt} was trained on the SAM 2 base {named['path']} (sha256 "
            f"{named['sha256']}), but ckpt={ckpt} has sha256 {base['sha256']}: another base, so "
            f"its row would not compare with the others. Fix: pass that base as ckpt=, or a "
            f"MoSAM checkpoint trained on ckpt={ckpt}."
        )
    return mosam


def eval_overrides(args: argparse.Namespace, overrides: list[str]) -> list[str]:
    """What every job gets besides the model: the split, no pictures (unless asked), an
    official-format base built tracking with three candidates (unless set), then the
    command's own overrides."""
    base = []
    split_key = "data.split" if args.task == "tracking" else "data.test_split"
    if _value(overrides, split_key) is None:
        base.append(f"{split_key}={args.split}")
    if not any(o.lstrip("+~").startswith("plots") for o in overrides):
        base.append("plots.videos=0")  # pictures of one row are eval.py's job
    if _value(overrides, MULTIMASK) is None:
        base.append(f"++{MULTIMASK}=true")
    return base + overrides


def sam2_settings(ckpt: str | Path, jobs: list[str]) -> dict[str, Any]:
    """The SAM 2 a job builds for `ckpt`: `{variant, overrides}` from a checkpoint of this
    project, else from the eval config composed with `jobs` (its overrides)."""
    raw = load_checkpoint_file(resolve_weights(ckpt), mmap=True)
    if "hyper_parameters" in raw:
        sam2 = raw["hyper_parameters"]["sam2"]
        return {"variant": sam2["variant"], "overrides": dict(sam2.get("overrides") or {})}
    cfg = compose_config("eval", [o for o in jobs if not o.startswith("hydra.")])
    sam2 = OmegaConf.to_container(cfg.model.sam2, resolve=False)
    return {"variant": sam2["variant"], "overrides": dict(sam2.get("overrides") or {})}


def tracks_with_candidates(sam2: dict[str, Any]) -> bool:
    cfg = load_model_config(sam2["variant"], sam2["overrides"])
    return bool(cfg.get("multimask_output_for_tracking", False))


def check_candidates(ckpt: str, sam2: dict[str, Any], rules: Sequence[str]) -> None:
    """Refuse, before any job, rules that choose among three candidate masks on a base that
    tracks with one (eval.py would refuse them one job at a time)."""
    needing = [r for r in rules if build_tracker({"name": r}).needs_candidates]
    if needing and not tracks_with_candidates(sam2):
        raise SystemExit(
            f"ckpt={ckpt} ({sam2['variant']}) tracks with one mask "
            f"(multimask_output_for_tracking false in its settings), and "
            f"{', '.join(label(r) for r in needing)} choose among SAM 2's three candidates. "
            f"Fix: a base that tracks with three (fine-tuned with {MULTIMASK}=true), or leave "
            f"those rules out of --rules."
        )


# ------------------------------------------------------------------------------ runs
def commands(args: argparse.Namespace, jobs: list[str]) -> list[list[str]]:
    """The `eval.py` invocations: one multirun over the rules on the base, one MoSAM run."""
    runs = []
    if args.rules:
        runs.append([
            sys.executable, str(EVAL), "-m", *jobs, f"ckpt={args.ckpt}",
            f"tracker={','.join(args.rules)}",
            f"hydra.sweep.dir={args.out}", "hydra.sweep.subdir=${tracker.name}",
        ])  # fmt: skip
    for key, mosam in zip(mosam_keys(len(args.mosam_ckpts)), args.mosam_ckpts, strict=True):
        runs.append([
            sys.executable, str(EVAL), *jobs, f"ckpt={mosam}", f"hydra.run.dir={args.out / key}",
        ])  # fmt: skip
    return runs


def infer_command(variant: str, rules: Sequence[str], mosam: bool, extra: str) -> list[str]:
    """`bench.infer`'s arguments for the rows: the base's size tracking with three
    candidates, the engine (SAM 2), each rule it can time and MoSAM (all parts), each one's
    time and peak memory; [] where it has no such size."""
    size = {v: k for k, v in infer.SIZES.items()}.get(variant)
    if size is None:
        return []
    timed = set(infer.rule_keys(size, multimask=True))
    keys = ["engine", *(f"rule:{r}" for r in rules if f"rule:{r}" in timed)]
    keys += ["mosam"] if mosam else []
    return [
        "--sizes", size, "--modes", "end-to-end", "--multimask",
        "--variants", ",".join(keys), "--memory-variants", ",".join(keys),
        *shlex.split(extra),
    ]  # fmt: skip


def run_timing(out: Path, arguments: list[str]) -> dict[str, Any] | None:
    """`bench.infer`'s JSON for `arguments`, run here once and kept in `<out>/infer.json`
    (reused while the arguments are the same)."""
    path = out / INFER_FILE
    if path.is_file():
        kept = json.loads(path.read_text())
        if kept.get("argv") == arguments:
            print(f"timing: {path} (bench.infer {' '.join(arguments)})", flush=True)
            return kept
    command = [sys.executable, "-m", "mosam_train.bench.infer", *arguments]
    print("$", " ".join(command[1:]), flush=True)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO)
    last = ""
    for line in proc.stdout:  # echoed as it comes: the benchmark takes minutes
        print(line, end="", flush=True)
        last = line if line.strip() else last
    if proc.wait() != 0:
        raise SystemExit(f"bench.infer failed (see above); the evaluations are in {out}")
    result = json.loads(last)
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return result


def read_timing(path: str | Path) -> dict[str, Any]:
    """A file holding `bench.infer`'s JSON (its output as printed: the last line counts)."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"--timing {path}: no such file. Fix: run, none, or a bench.infer JSON.")
    text = path.read_text().strip()
    try:
        timing = json.loads(text if text.startswith("{\n") else text.splitlines()[-1])
        measured(timing)
    except (json.JSONDecodeError, IndexError, KeyError, ValueError, AttributeError) as e:
        raise SystemExit(
            f"--timing {path}: not the JSON of one bench.infer run of one size end to end "
            f"({e!r}). Fix: save the output of python -m mosam_train.bench.infer --sizes SIZE "
            f"--modes end-to-end --multimask ... to that file."
        ) from None
    return timing


def run_keys(args: argparse.Namespace) -> list[str]:
    """The runs this command evaluates: its rules, then its MoSAM checkpoints."""
    return [*args.rules, *mosam_keys(len(args.mosam_ckpts))]


def kept_rows(args: argparse.Namespace) -> dict[str, Any]:
    """`--add`: the rows already in `--results` that this command does not evaluate again
    (all MoSAM runs are replaced when it evaluates MoSAM)."""
    if not args.add or not (args.results / RUNS_FILE).is_file():
        return {}
    kept = json.loads((args.results / RUNS_FILE).read_text())
    new = set(run_keys(args))
    return {
        k: v for k, v in kept.items() if k not in new and not (is_mosam(k) and args.mosam_ckpts)
    }


def collect(args: argparse.Namespace, timing: dict[str, Any] | None) -> None:
    """Copy each run's per-object (or per-sequence) CSV, what produced it (`runs.json`) and
    the timing into `args.results`, refusing runs that are not finished or do not share one
    base and split (with `--add`, also with the rows kept there)."""
    rows_file = PER_SEQUENCE if args.task == "tracking" else PER_OBJECT
    keys = run_keys(args)
    rows: dict[str, Any] = {}
    for key in keys:
        run = args.out / key
        metrics = run / "metrics.json"
        if not (metrics.is_file() and (run / rows_file).is_file()):
            raise SystemExit(f"{run}: no finished evaluation (metrics.json, {rows_file})")
        meta = json.loads(metrics.read_text())
        config = json.loads((run / "eval_config.json").read_text())
        rule = config["tracker"]["name"]
        if rule != ("sam2" if is_mosam(key) else key):
            raise SystemExit(
                f"{run}: evaluated with tracker={rule}, not this row's. Fix: a new --out, or "
                f"remove {run} to evaluate it again."
            )
        rows[key] = {
            "label": label(key),
            "task": args.task,
            "tracker": config["tracker"],
            "weights": json.loads((run / "eval_weights.json").read_text()),
            "data": meta.get("data"),
            "format": meta.get("format") or meta.get("benchmark"),
            "split": meta.get("split"),
            "num_objects": meta.get("num_objects") or meta.get("num_sequences"),
        }
    kept = kept_rows(args)
    check_rows({**kept, **rows}, args.out)
    args.results.mkdir(parents=True, exist_ok=True)
    runs_path = args.results / RUNS_FILE
    before = json.loads(runs_path.read_text()) if runs_path.is_file() else {}
    for key in set(before) - set(kept) - set(keys):
        (args.results / f"{key}.csv").unlink(missing_ok=True)  # a row this table no longer has
    for key in keys:
        shutil.copyfile(args.out / key / rows_file, args.results / f"{key}.csv")
    rows = {k: {**kept, **rows}[k] for k in order([*kept, *rows])}
    runs_path.write_text(json.dumps(rows, indent=2) + "\n")
    if timing is not None:
        (args.results / INFER_FILE).write_text(json.dumps(timing, indent=2) + "\n")
    elif (args.results / INFER_FILE).is_file():
        (args.results / INFER_FILE).unlink()  # not this run's: never shown beside it


def check_rows(rows: dict[str, Any], where: Path) -> None:
    """Every row on one base and one split: the rules' model file and MoSAM's frozen base
    have one sha256, and every row read the same data."""
    bases = {k: (r["weights"].get("sam2_base") or r["weights"])["sha256"] for k, r in rows.items()}
    splits = {k: (r.get("task", "vos"), r["data"], r["split"]) for k, r in rows.items()}
    for found, what in ((bases, "SAM 2 base (sha256)"), (splits, "task, data and split")):
        if len(set(found.values())) > 1:
            detail = "; ".join(f"{k}: {v}" for k, v in found.items())
            raise SystemExit(
                f"{where}: the rows differ in their {what} ({detail}). Fix: evaluate every row "
                f"on one base and split (a new --out or --results, or rerun the odd rows)."
            )


# ------------------------------------------------------------------------------ table
def measured(timing: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The size and the end-to-end run of `bench.infer`'s JSON, which must hold one size."""
    if len(timing["sizes"]) != 1:
        raise ValueError(f"it holds the sizes {', '.join(timing['sizes'])}, not one")
    ((size, modes),) = timing["sizes"].items()
    return size, modes["end to end"]


def cost_columns(timing: dict[str, Any], keys: Sequence[str]) -> dict[str, dict[str, str]]:
    """Per-frame time relative to SAM 2 (the engine) and the peak RSS at the longest
    measured video, per row, from `bench.infer`'s JSON."""
    names = {key: infer.ALL_PARTS if is_mosam(key) else infer.variant_name(
        "engine" if key == "sam2" else f"rule:{key}") for key in keys}  # fmt: skip
    _, run = measured(timing)
    time = {
        label(k): f"{run['rows'][n]['x_engine']:.2f}" for k, n in names.items() if n in run["rows"]
    }
    memory = {}
    for k, n in names.items():
        curve = timing.get("memory_mib", {}).get(n)
        if curve:
            longest = max(curve, key=int)
            memory[label(k)] = f"{curve[longest]['peak_mib']:.0f}"
    return {TIME_COLUMN: time, MEMORY_COLUMN: memory}


def timing_note(timing: dict[str, Any]) -> str:
    """Which run and machine the cost columns come from."""
    size, run = measured(timing)
    m = timing.get("machine") or {}
    where = (
        f"{m.get('cpu', '?')} ({m.get('cores', '?')} cores, {m.get('threads', '?')} torch "
        f"thread(s), torch {m.get('torch', '?')}, {m.get('platform', '?')}), commit "
        f"{m.get('commit') or 'unknown'}"
    )
    note = (
        f"{TIME_COLUMN}: `python -m mosam_train.bench.infer {' '.join(timing.get('argv', []))}` "
        f"on {where}: random weights of {size}"
        f"{' tracking with three candidates' if timing.get('multimask') else ''}, "
        f"{timing['objects']} objects, {run['frames']} frames, median of {timing['repeats']} "
        f"interleaved repeats, CPU; MoSAM with all parts (Farneback flow)."
    )
    lengths = {n for curve in timing.get("memory_mib", {}).values() for n in curve}
    if lengths:
        note += (
            f" {MEMORY_COLUMN}: peak RSS of a fresh process over "
            f"{max(lengths, key=int)} frames ({size}, CPU)."
        )
    return note


def rebuild_command(results: Path, keys: Sequence[str]) -> str:
    """The `metrics.table` command that rebuilds the score columns from the committed CSVs."""
    globs = {
        label(k): f"{results / MOSAM}_*.csv" if is_mosam(k) else f"{results / k}.csv" for k in keys
    }
    rows = " ".join(shlex.quote(f"{name}={glob}") for name, glob in globs.items())
    return f"python -m mosam_train.metrics.table {rows}"


def report(results: Path) -> str:
    """The table of the files in `results`, with where its cost columns come from."""
    runs_file = results / RUNS_FILE
    if not runs_file.is_file():
        raise SystemExit(
            f"{results}: no {RUNS_FILE}; run the comparison first (without --table-only)"
        )
    rows = json.loads(runs_file.read_text())
    check_rows(rows, results)
    keys = list(rows)
    timing_file = results / INFER_FILE
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() else None
    extra = cost_columns(timing, keys) if timing else None
    grouped: dict[str, list[Path]] = {}
    for k in keys:
        grouped.setdefault(label(k), []).append(results / f"{k}.csv")
    first = next(iter(rows.values()))
    if first.get("task", "vos") == "tracking":
        body = tracking_table(grouped, extra)
        what = f"every sequence from its first box, {first['num_objects']} sequences"
    else:
        body = table({name: [read_run(p) for p in paths] for name, paths in grouped.items()}, extra)
        what = f"every object of every video, {first['num_objects']} objects"
    seeds = sum(map(is_mosam, keys))
    lines = [
        body,
        "",
        f"{first['format']} {first['split']} ({first['data']}), {what}; "
        + (f"MoSAM: mean ± std over {seeds} training seeds; " if seeds > 1 else "")
        + f"model files and rules: {runs_file}.",
        timing_note(timing) if timing else "No cost columns: no bench.infer run in this directory.",
        f"Score columns alone: {rebuild_command(results, keys)}",
    ]
    return "\n".join(lines)


def saved_timing(path: str, variant: str) -> dict[str, Any]:
    """`--timing PATH`: its JSON, refused unless it measured the base's size."""
    timing = read_timing(path)
    size = measured(timing)[0]
    if infer.SIZES.get(size) != variant:
        raise SystemExit(
            f"--timing {path} measured {size}, but the base is {variant}. Fix: --timing run, "
            f"or a bench.infer run of that size."
        )
    return timing


def main(argv: Sequence[str] | None = None) -> None:
    args, overrides = parse_args(argv)
    if not args.table_only:
        jobs = eval_overrides(args, overrides)
        for mosam in args.mosam_ckpts:
            check_same_base(args.ckpt, mosam)
        sam2 = sam2_settings(args.ckpt, [*jobs, f"ckpt={args.ckpt}"])
        check_candidates(args.ckpt, sam2, args.rules)
        for mosam in args.mosam_ckpts:
            if not tracks_with_candidates(sam2_settings(mosam, jobs)):
                print(
                    f"note: mosam_ckpt={mosam} tracks with one mask and the base rows with "
                    f"three (its training settings); MoSAM's row keeps SAM 2's first mask.",
                    flush=True,
                )
        timing = None
        if args.timing not in ("run", "none"):
            timing = saved_timing(args.timing, sam2["variant"])
        for command in commands(args, jobs):
            print("$", " ".join(command[1:]), flush=True)
            if subprocess.run(command).returncode != 0:
                raise SystemExit(f"eval.py failed (see above); runs so far are in {args.out}")
        if args.timing == "run":
            table_keys = [*kept_rows(args), *run_keys(args)]  # --add: every row of the table
            arguments = infer_command(
                sam2["variant"],
                [k for k in order(table_keys) if not is_mosam(k)],
                any(map(is_mosam, table_keys)),
                args.infer_args,
            )
            if arguments:
                timing = run_timing(args.out, arguments)
            else:
                print(
                    f"timing: bench.infer measures {', '.join(infer.SIZES.values())}, not "
                    f"{sam2['variant']}: no cost columns",
                    flush=True,
                )
        collect(args, timing)
    print(report(args.results))


if __name__ == "__main__":
    main()
