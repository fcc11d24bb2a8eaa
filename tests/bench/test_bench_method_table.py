"""The method-table driver: its config, its commands, and a rerun that continues."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mosam_train.bench import method_table as mt

CONFIG = """
runs: {runs}
results: {results}
seeds: [0, 1]
eval: [data=synthetic_long]
paired: [[mosam, control]]
tags: [occlusion]
rows:
  base: {{label: (a) base, ckpt: shipped:sam2_micro_long}}
  control: {{label: (b) control, train: [experiment=sam2_finetune_long]}}
  mosam: {{label: (c) MoSAM, train: [experiment=mosam_long, model.mgp=null]}}
  no_pixel: {{label: (d) pixel off, of: mosam, eval: ["parts_off=[pixel]"]}}
"""


def _table(tmp_path: Path) -> Path:
    path = tmp_path / "table.yaml"
    path.write_text(CONFIG.format(runs=tmp_path / "runs", results=tmp_path / "results"))
    return path


def test_the_shipped_config_reads_and_pairs_mosam_with_its_control():
    table = mt.read_table(mt.DEFAULT_CONFIG)
    keys = [r.key for r in table.rows]
    assert keys[:3] == ["base", "control", "mosam"] and table.seeds == [0, 1, 2]
    assert table.paired[0] == ("mosam", "control")  # the gate
    kinds = [(r.trained, r.ckpt is not None, r.of is not None) for r in table.rows]
    assert all(sum(k) == 1 for k in kinds)
    assert all(r.seeded for r in table.rows if r.of is not None)


def test_every_row_of_the_shipped_table_builds_its_model(save_checkpoint, tmp_path):
    """Each trained row's overrides compose and build the model its training starts from,
    and each row `of` a trained row sets its eval overrides on that row's checkpoint: a row
    that cannot run is found here, not an hour into its training."""
    from hydra.utils import instantiate

    from mosam_train.startup import compose_config
    from mosam_train.tasks.inference_model import compose_eval, inference_propagator

    table = mt.read_table(mt.DEFAULT_CONFIG)
    saved = {}
    for row in table.rows:
        if row.trained:
            cfg = compose_config("train", [f"paths.root_dir={tmp_path}", *row.train])
            module = instantiate(cfg.model, _convert_="all")
            saved[row.key] = save_checkpoint(module, tmp_path / f"{row.key}.ckpt")
        elif row.of is not None:
            cfg = compose_eval([*table.eval, *row.eval, f"ckpt={saved[row.of]}"])
            inference_propagator(cfg)
    assert {"mosam", "control", "no_mgp", "no_frame_head"} <= set(saved)


@pytest.mark.parametrize(
    "rows, message",
    [
        ("x: {label: X, train: [a=1], ckpt: c}", "row x needs one of .* not several"),
        ("x: {label: X}", "row x needs one of .* not none"),
        # `of` a row that is not trained, or below it, or with nothing of its own
        ("x: {label: X, ckpt: c}\n  y: {label: Y, of: x, eval: [a=1]}", "row y is of 'x'"),
        ("y: {label: Y, of: x, eval: [a=1]}\n  x: {label: X, train: [a=1]}", "row y is of 'x'"),
        ("x: {label: X, train: [a=1]}\n  y: {label: Y, of: x}", "gives eval overrides"),
    ],
)
def test_a_row_of_no_single_kind_is_refused(tmp_path, rows, message):
    path = tmp_path / "bad.yaml"
    path.write_text(f"runs: r\nresults: s\nseeds: [0]\nrows:\n  {rows}\n")
    with pytest.raises(SystemExit, match=message):
        mt.read_table(path)


def test_runs_train_evaluate_collect_and_a_rerun_continues(tmp_path, monkeypatch):
    table = mt.read_table(_table(tmp_path))
    calls = []

    def fake_run(command, cwd):
        """train.py writes a best checkpoint; eval.py a per-object CSV."""
        calls.append(command[1:])
        script = Path(command[1]).name
        where = Path(next(a for a in command if a.startswith("hydra.run.dir=")).split("=", 1)[1])
        if script == "train.py":
            (where / "checkpoints").mkdir(parents=True)
            (where / "checkpoints" / "step000400-jf40.00.ckpt").write_text("")
        else:
            where.mkdir(parents=True)
            (where / "per_object.csv").write_text(f"{where}\n")
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(mt.subprocess, "run", fake_run)
    mosam = next(r for r in table.rows if r.key == "mosam")
    mt.run_row(table, mosam, [0, 1])
    train, test = calls[0], calls[1]
    assert train[1:] == ["experiment=mosam_long", "model.mgp=null", "seed=0",
                         f"hydra.run.dir={tmp_path}/runs/mosam/seed0/train"]  # fmt: skip
    best = tmp_path / "runs/mosam/seed0/train/checkpoints/step000400-jf40.00.ckpt"
    assert test[1:] == ["data=synthetic_long", f"ckpt={best}",
                        f"hydra.run.dir={tmp_path}/runs/mosam/seed0/test"]  # fmt: skip
    assert len(calls) == 4 and sorted(p.name for p in (tmp_path / "results/mosam").iterdir()) == [
        "seed0.cpu.json", "seed0.csv", "seed1.cpu.json", "seed1.csv"]  # fmt: skip
    spent = json.loads((tmp_path / "results/mosam/seed0.cpu.json").read_text())
    assert set(spent) == {"train", "test"} and all(v["wall_s"] >= 0 for v in spent.values())
    mt.run_row(table, mosam, [0, 1])  # finished: nothing runs again
    assert len(calls) == 4
    # an interrupted training continues from its last.ckpt
    seed2 = tmp_path / "runs/mosam/seed2/train/checkpoints"
    seed2.mkdir(parents=True)
    (seed2 / "last.ckpt").write_text("")
    assert mt.train_command(mosam, 2, seed2.parent)[2:] == ["resume=" + str(seed2.parent)]
    # the base row: one evaluation, no seed
    mt.run_row(table, table.rows[0], [0, 1])
    assert calls[-1][1:3] == ["data=synthetic_long", "ckpt=shipped:sam2_micro_long"]
    assert (tmp_path / "results/base/run.csv").is_file()
    args = mt.table_arguments(table, table.rows)
    assert args[:2] == [f"(a) base={tmp_path}/results/base/*.csv",
                        f"(c) MoSAM={tmp_path}/results/mosam/*.csv"]  # fmt: skip
    assert args[2:] == ["--tags", "occlusion"]  # no control yet: no pair
    # CPU time over the committed results; a result from before the ledger, or whose
    # training was, is counted apart
    (tmp_path / "results/control").mkdir()
    (tmp_path / "results/control/seed0.csv").write_text("")
    (tmp_path / "results/control/seed1.csv").write_text("")
    test_only = {"test": {"cpu_s": 3600.0, "wall_s": 1.0}}
    (tmp_path / "results/control/seed1.cpu.json").write_text(json.dumps(test_only))
    hours, measured, unmeasured = mt.cpu_hours(table)
    assert (measured, unmeasured) == (3, 2) and 1.0 <= hours < 1.01


def test_a_row_of_a_trained_row_evaluates_its_checkpoints_with_its_own_overrides(
    tmp_path, monkeypatch
):
    table = mt.read_table(_table(tmp_path))
    no_pixel = table.rows[-1]
    calls = []

    def fake_run(command, cwd):
        calls.append(command[1:])
        where = Path(next(a for a in command if a.startswith("hydra.run.dir=")).split("=", 1)[1])
        where.mkdir(parents=True)
        (where / "per_object.csv").write_text("")
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(mt.subprocess, "run", fake_run)
    with pytest.raises(SystemExit, match=r"row no_pixel evaluates row mosam's seed1.*--rows mosam"):
        mt.run_row(table, no_pixel, [1])
    assert calls == []
    source = tmp_path / "runs/mosam/seed1/train"
    (source / "checkpoints").mkdir(parents=True)
    (source / "checkpoints" / "step001200-jf41.00.ckpt").write_text("")
    (source / mt.DONE).write_text("")
    mt.run_row(table, no_pixel, [1])
    assert len(calls) == 1 and calls[0][1:] == ["data=synthetic_long", "parts_off=[pixel]",
        f"ckpt={source}/checkpoints/step001200-jf41.00.ckpt",
        f"hydra.run.dir={tmp_path}/runs/no_pixel/seed1/test"]  # fmt: skip
    spent = json.loads((tmp_path / "results/no_pixel/seed1.cpu.json").read_text())
    assert set(spent) == {"test"}  # its training is the source row's
    assert mt.cpu_hours(table)[1:] == (1, 0)
    assert f"(d) pixel off={tmp_path}/results/no_pixel/*.csv" in mt.table_arguments(
        table, table.rows
    )


def test_a_runs_cpu_time_is_its_childrens_summed_over_resumes(tmp_path):
    ledger = tmp_path / "cpu.json"
    burn = [sys.executable, "-c", "sum(range(3 * 10**7))"]
    mt.run(burn, False, ledger, "train")
    first = json.loads(ledger.read_text())["train"]["cpu_s"]
    assert first > 0.1
    mt.run(burn, False, ledger, "train")  # a resume adds to it
    assert json.loads(ledger.read_text())["train"]["cpu_s"] > first + 0.1
    with pytest.raises(SystemExit, match="failed"):  # a failed run is counted too
        mt.run([sys.executable, "-c", "raise SystemExit(3)"], False, ledger, "test")
    assert set(json.loads(ledger.read_text())) == {"train", "test"}
