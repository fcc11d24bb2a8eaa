"""The oracle table's command: eval.py under each `tracker=oracle` setting, then the table
and the gate (here on two small synthetic videos: this checks the command, not the bound)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mosam_train.bench import oracles


def test_the_default_grid_is_every_setting_once_with_the_data_as_a_parameter():
    args, overrides = oracles.parse_args(["ckpt=base.pt", "data=synthetic_long"])
    assert args.out == Path("logs/oracles/synthetic_long")
    truth, recency, prompt = oracles.commands(args, overrides)
    for grid in (truth, recency):
        assert grid[2] == "-m" and "data=synthetic_long" in grid
        assert {"tracker.stride=1,4", "tracker.slots=rank", "data.test_split=null"} <= set(grid)
    # the ground-truth oracles also over pointer rules and thresholds; recency is SAM 2's
    assert {"tracker.score=iou,visible_iou", "tracker.pointers=sam2,kept"} <= set(truth)
    assert "tracker.min_score=null,0.3" in truth
    assert "tracker.score=recency" in recency and not any("pointers" in a for a in recency)
    assert "data=synthetic_long" in prompt and "tracker.score=prompt" in prompt
    assert f"hydra.run.dir={args.out}/prompt" in prompt
    for bad in (
        ["--pointers", "all"],
        ["--min-scores", "1.5"],
        ["--strides", "0"],
        ["--orders", "newest"],
        ["--orders", "recency", "--min-scores", "none"],  # nothing says which are good
        ["--pointers", "window"],  # and no threshold says which pointers to leave out
    ):
        with pytest.raises(SystemExit):
            oracles.parse_args(bad)
    # recency among the good frames: its own grid, over the thresholds only
    args, overrides = oracles.parse_args(["data=synthetic_long", "--orders", "score,recency"])
    by_score, by_recency = oracles.commands(args, overrides)[:2]
    assert "tracker.min_score=null,0.3" in by_score and "tracker.order=recency" not in by_score
    assert {"tracker.min_score=0.3", "tracker.order=recency"} <= set(by_recency)
    assert f"hydra.sweep.subdir={oracles.BY_RECENCY_SUBDIR}" in by_recency
    _, held_out = oracles.parse_args(["data=synthetic_long", "data.test_split=test"])
    assert all("data.test_split=null" not in c for c in oracles.commands(args, held_out))


def test_the_command_evaluates_each_setting_and_prints_the_table_and_the_gate(
    run_script, small_synthetic, micro_weights, tmp_path, capsys
):
    out = tmp_path / "oracles"
    proc = run_script(
        "-m", "mosam_train.bench.oracles", f"ckpt={micro_weights}", "sam2=micro",
        "data=synthetic", f"data.root={small_synthetic}", "data.synthetic=false",
        "data.num_workers=0", "data.val_max_videos=2",
        "--scores", "visible_iou,recency", "--strides", "1", "--pointers", "kept",
        "--min-scores", "none,0.5", "--orders", "score,recency", "--out", str(out),
        one_thread=True,
    )  # fmt: skip
    runs = sorted(p.parent.name for p in out.glob("*/metrics.json"))
    assert runs == [
        "recency-rank-stride1",
        "visible_iou-rank-stride1-ptrkept-min0.5",
        "visible_iou-rank-stride1-ptrkept-min0.5-by_recency",
        "visible_iou-rank-stride1-ptrkept-minNone",
    ]
    metrics = out / "visible_iou-rank-stride1-ptrkept-min0.5" / "metrics.json"
    assert json.loads(metrics.read_text())["tracker"] == {
        "name": "oracle", "score": "visible_iou", "stride": 1, "candidates": 12,
        "slots": "rank", "top_k": 6, "keep_previous": True, "min_score": 0.5, "pointers": "kept",
        "order": "score",
    }  # fmt: skip
    lines = proc.stdout.splitlines()
    rows = [line for line in lines if line.startswith("| ") and "Δ=1" in line]
    assert [r.split(" | ")[0] for r in rows] == [
        "| visibility-aware IoU, Δ=1, slots by rank, pointers of kept frames",
        "| visibility-aware IoU, Δ=1, slots by rank, pointers of kept frames, frames < 0.5 left out",
        "| visibility-aware IoU, Δ=1, slots by rank, pointers of kept frames, frames < 0.5 left "
        "out, the most recent of the rest",
        "| recency, Δ=1, slots by rank (= SAM 2)",
    ]
    assert "occlusion + exit_reentry (pooled)" in proc.stdout
    assert lines[-1].startswith("gate on occlusion + exit_reentry (pooled): best oracle ")
    # the table alone, from the runs on disk
    oracles.main(["--table-only", "--out", str(out)])
    assert capsys.readouterr().out.splitlines()[-1] == lines[-1]


def test_a_setting_with_another_candidate_count_says_so_in_its_label():
    base = {"score": "iou", "stride": 1, "slots": "rank", "pointers": "kept", "min_score": 0.3}
    assert "n=" not in oracles.OracleRun(base, []).label
    longer = oracles.OracleRun({**base, "candidates": 40, "order": "recency"}, [])
    assert longer.label == (
        "true IoU, Δ=1, slots by rank, n=40, pointers of kept frames, frames < 0.3 left out, "
        "the most recent of the rest"
    )


def test_the_window_pointer_rule_says_so_in_its_label():
    base = {"score": "iou", "stride": 1, "slots": "rank", "pointers": "window", "min_score": 0.3}
    assert oracles.OracleRun(base, []).label == (
        "true IoU, Δ=1, slots by rank, SAM 2's pointers less those left out, frames < 0.3 left out"
    )
