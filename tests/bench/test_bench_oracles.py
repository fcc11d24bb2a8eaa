"""The oracle table's command: eval.py under each `tracker=oracle` setting, then the table
and the gate (here on two small synthetic videos: this checks the command, not the bound)."""

from __future__ import annotations

import json
from pathlib import Path

from mosam_train.bench import oracles


def test_the_default_grid_is_every_setting_once_with_the_data_as_a_parameter():
    args, overrides = oracles.parse_args(["ckpt=base.pt", "data=synthetic_long"])
    assert args.out == Path("logs/oracles/synthetic_long")
    grid, prompt = oracles.commands(args, overrides)
    assert grid[2] == "-m" and "data=synthetic_long" in grid and "data=synthetic_long" in prompt
    assert {"tracker.score=iou,visible_iou,recency", "tracker.stride=1,2,4"} <= set(grid)
    assert "tracker.slots=rank,distance" in grid and "tracker.score=prompt" in prompt
    assert f"hydra.run.dir={args.out}/prompt" in prompt
    assert "data.test_split=null" in grid  # the val split, where settings are chosen
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
        "--scores", "visible_iou,recency", "--strides", "1", "--slots", "rank", "--out", str(out),
        one_thread=True,
    )  # fmt: skip
    runs = sorted(p.parent.name for p in out.glob("*/metrics.json"))
    assert runs == ["recency-rank-stride1", "visible_iou-rank-stride1"]
    tracker = json.loads((out / "visible_iou-rank-stride1" / "metrics.json").read_text())["tracker"]
    assert tracker == {
        "name": "oracle", "score": "visible_iou", "stride": 1, "candidates": 12,
        "slots": "rank", "top_k": 6,
    }  # fmt: skip
    lines = proc.stdout.splitlines()
    rows = [line for line in lines if line.startswith("| ") and "Δ=1" in line]
    assert [r.split(" | ")[0] for r in rows] == [
        "| visibility-aware IoU, Δ=1, slots by rank",
        "| recency, Δ=1, slots by rank (= SAM 2)",
    ]
    assert "occlusion + exit_reentry (pooled)" in proc.stdout
    assert lines[-1].startswith("gate on occlusion + exit_reentry (pooled): best oracle ")
    # the table alone, from the runs on disk
    oracles.main(["--table-only", "--out", str(out)])
    assert capsys.readouterr().out.splitlines()[-1] == lines[-1]
