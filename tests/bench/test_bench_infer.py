"""The inference benchmark runs end to end (tiny mode: this checks the command and the shape
of its JSON line, not speed)."""

from __future__ import annotations

import json

import pytest

from mosam_train.bench import infer as bench
from mosam_train.trackers import build_tracker, tracker_names


def test_bench_infer_tiny_prints_tables_and_one_json_line(capsys):
    bench.main(["--tiny", "--profile"])
    out = capsys.readouterr().out
    assert "x engine" in out and "cost by component" in out and "peak RSS" in out
    result = json.loads(out.strip().splitlines()[-1])
    run = result["sizes"]["micro"]["end to end"]
    rows = run["rows"]
    rules = [
        f"engine, tracker={r}"
        for r in tracker_names()
        if r not in ("sam2", "oracle") and not build_tracker({"name": r}).needs_candidates
    ]  # the micro base tracks with one mask: rules choosing among three are left out
    assert list(rows) == ["SAM2VideoPredictor", bench.ENGINE, *rules, *bench.MOSAM_VARIANTS]
    assert rows[bench.ENGINE]["x_engine"] == 1.0
    assert all(r["s_per_frame"] > 0 for r in rows.values())
    # flow has its own column, and only variants with the dense branch compute it; the
    # model's wait for it (it runs in a worker thread) is what "flow excluded" removes
    flow = rows[bench.ALL_PARTS]
    assert flow["flow_s_per_frame"] > 0 and flow["flow_wait_s_per_frame"] > 0
    assert flow["no_flow_s_per_frame"] == pytest.approx(  # one repeat: one median
        flow["s_per_frame"] - flow["flow_wait_s_per_frame"]
    )
    assert rows[bench.NO_FLOW]["flow_s_per_frame"] == 0
    profile = run["profile_ms_per_frame"]
    assert set(profile) == {bench.ENGINE, bench.ALL_PARTS}
    assert "MoSAM: keypoints" in profile[bench.ALL_PARTS] and profile[bench.ENGINE]["total"] > 0
    assert profile[bench.ALL_PARTS][bench.FLOW_OWN] > 0
    memory = result["memory_mib"]
    assert set(memory) == {bench.ENGINE, bench.ALL_PARTS}
    for curve in memory.values():
        assert list(curve) == ["8", "16"]
        assert all(c["peak_mib"] >= c["before_mib"] > 0 for c in curve.values())


def test_bench_infer_variants_filter_keeps_the_engine_and_refuses_unknown_keys(capsys):
    bench.main(["--tiny", "--memory-frames", "", "--variants", "mosam-no-flow,predictor"])
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["sizes"]["micro"]
    assert list(rows["end to end"]["rows"]) == ["SAM2VideoPredictor", bench.ENGINE, bench.NO_FLOW]
    with pytest.raises(SystemExit, match=r"unknown key.*mosam-fast"):
        bench.main(["--tiny", "--variants", "mosam-fast"])
    with pytest.raises(SystemExit, match=r"--modes: 'fast'"):
        bench.main(["--tiny", "--modes", "fast"])


def test_multimask_lets_the_rules_that_choose_among_three_candidates_run_on_micro():
    one, three = bench.rule_keys("micro"), bench.rule_keys("micro", multimask=True)
    needing = {f"rule:{r}" for r in ("samurai", "sam2long", "dam4sam")}
    assert not needing & set(one) and needing <= set(three)
    assert bench.random_sam2("micro", multimask=True).multimask_output_for_tracking
    with pytest.raises(SystemExit, match=r"--memory-variants: unknown key.*rule:samurai"):
        bench.main(["--tiny", "--memory-variants", "engine,rule:samurai"])


def test_micro_wide_runs_at_128_px_with_its_own_memory_curve(capsys):
    """`--sizes micro_wide` (the shipped bases' size): end to end at 128 px, every rule with
    `--multimask`, and the memory curve measured on that size."""
    bench.main([
        "--sizes", "micro_wide", "--multimask", "--frames", "4", "--repeats", "1",
        "--variants", "engine,rule:samurai", "--memory-frames", "8",
        "--memory-variants", "engine,rule:samurai",
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert "micro_wide (128 px), end to end" in out and "micro_wide (128 px): peak RSS" in out
    result = json.loads(out.strip().splitlines()[-1])
    rows = result["sizes"]["micro_wide"]["end to end"]["rows"]
    assert list(rows) == [bench.ENGINE, "engine, tracker=samurai"]
    memory = result["memory_mib"]
    assert set(memory) == {bench.ENGINE, "engine, tracker=samurai"}
    assert all(c["8"]["peak_mib"] >= c["8"]["before_mib"] > 0 for c in memory.values())
