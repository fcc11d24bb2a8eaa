"""The peer-tracker comparison's command: every rule on one multimask base and MoSAM (several
seeds, one row) on that base, one table from the committed CSVs, rows added to a committed
table, and the box-tracking table (here small synthetic videos and a random micro SAM 2:
this checks the command, not the trackers)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch

from mosam_train.bench import trackers
from mosam_train.data.synthetic_tracking import ensure_synthetic_tracking
from mosam_train.lit.module import MoSAMModule

MICRO = {"variant": "sam2.1_micro", "image_size": 128}
SMALL_DATA = ["data.synthetic=false", "data.num_workers=0", "data.val_max_videos=1"]


def mosam_checkpoint(base: Path, path: Path, seed: int = 0) -> Path:
    """A MoSAM checkpoint (untrained parts, initialised from `seed`) on the frozen base
    `base`, tracking with three candidates, as a training run saves it (what
    `on_save_checkpoint` keeps and names)."""
    torch.manual_seed(seed)
    module = MoSAMModule(
        sam2={
            **MICRO,
            "weights": str(base),
            "overrides": {trackers.MULTIMASK.split(".")[-1]: True},
        },
        mgp={"sparse": True, "dense": False, "history": 3},
        stms={"stride": 1, "candidates": 8, "top_k": 3},
        freeze_sam2=True,
    )
    ckpt = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": L.__version__,
    }
    module.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return path


def table_rows(output: str) -> dict[str, list[str]]:
    """The printed table's header and its rows by model name."""
    table = [ln for ln in output.splitlines() if ln.startswith("|")]
    split = lambda line: [c.strip() for c in line.strip("|").split("|")]  # noqa: E731
    return {"": split(table[0]), **{split(r)[0]: split(r) for r in table[2:]}}


def run(argv: list[str]) -> str:
    """The command's output, run in this process (its eval.py and bench.infer jobs in
    their own, one-threaded as the benchmark wants)."""
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as env, contextlib.redirect_stdout(out):
        env.setenv("OMP_NUM_THREADS", "1")
        env.setenv("MKL_NUM_THREADS", "1")
        trackers.main(argv)
    return out.getvalue()


@pytest.fixture(scope="module")
def compared(small_synthetic, micro_weights, tmp_path_factory):
    """The command run twice on the same directories (the second continues the first)."""
    tmp = tmp_path_factory.mktemp("trackers")
    seeds = [mosam_checkpoint(micro_weights, tmp / f"mosam{s}.ckpt", seed=s) for s in (0, 1)]
    out, results = tmp / "runs", tmp / "results"
    args = [
        f"ckpt={micro_weights}", f"mosam_ckpt={seeds[0]},{seeds[1]}",
        "sam2=micro", "data=synthetic", f"data.root={small_synthetic}", "data.synthetic=false",
        "data.num_workers=0", "data.val_max_videos=1", "--split", "val",
        "--out", str(out), "--results", str(results),
        # a short benchmark; the peak memory of SAM 2's row only (a process per row)
        "--infer-args=--frames 4 --repeats 1 --memory-frames 8 --memory-variants engine",
    ]  # fmt: skip
    first = run(args)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/per_object.csv")}
    stamps[out / trackers.INFER_FILE] = (out / trackers.INFER_FILE).stat().st_mtime_ns
    second = run(args)
    return first, second, out, results, stamps


def test_every_row_is_evaluated_on_the_same_base_and_split(compared, micro_weights):
    _, _, out, results, _ = compared
    assert sorted(p.name for p in results.glob("*.csv")) == [
        "dam4sam.csv", "mosam_1.csv", "mosam_2.csv", "sam2.csv", "sam2long.csv", "samurai.csv",
    ]  # fmt: skip
    runs = json.loads((results / trackers.RUNS_FILE).read_text())
    assert [r["tracker"]["name"] for r in runs.values()] == [
        "sam2", "samurai", "sam2long", "dam4sam", "sam2", "sam2",
    ]  # fmt: skip
    assert runs["sam2long"]["tracker"]["pathways"] == 3  # the rule's own defaults
    sha = runs["sam2"]["weights"]["sha256"]
    assert runs["mosam_1"]["weights"]["sam2_base"]["sha256"] == sha
    assert runs["mosam_2"]["weights"]["sam2_base"]["sha256"] == sha
    assert runs["mosam_1"]["weights"]["sha256"] != runs["mosam_2"]["weights"]["sha256"]
    assert {r["split"] for r in runs.values()} == {"val"}
    config = json.loads((out / "samurai" / "eval_config.json").read_text())
    assert config["model"]["sam2"]["overrides"]["multimask_output_for_tracking"] is True
    # multi-object videos: every object of every video has its row, in every row's CSV
    with (results / "sam2.csv").open() as f:
        objects = [(r["video"], r["object_id"]) for r in csv.DictReader(f)]
    assert len(objects) == 2 and len({v for v, _ in objects}) == 1  # its first video
    with (results / "dam4sam.csv").open() as f:
        assert [(r["video"], r["object_id"]) for r in csv.DictReader(f)] == objects


def test_the_table_has_every_row_the_diagnostics_and_the_costs(compared):
    first, _, _, results, _ = compared
    table = [ln for ln in first.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[:4] == ["model", "runs", "J&F", "95% CI"]
    assert table_rows(first)["MoSAM"][1] == "2"  # its two seeds, one row
    assert "mean ± std over 2 training seeds" in first
    assert header[-6:] == [
        "J visible", "FP absent %", "latency", "never %",
        trackers.TIME_COLUMN, trackers.MEMORY_COLUMN,
    ]  # fmt: skip
    assert set(header[4:-6]) <= {"occlusion", "exit/re-entry", "distractor", "plain"}
    rows = {
        r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")] for r in table[2:]
    }
    assert list(rows) == ["SAM 2", "SAMURAI", "SAM2Long", "DAM4SAM", "MoSAM"]
    assert rows["SAM 2"][header.index(trackers.TIME_COLUMN)] == "1.00"
    assert all(float(r[header.index(trackers.TIME_COLUMN)]) > 0 for r in rows.values())
    memory = {k: r[header.index(trackers.MEMORY_COLUMN)] for k, r in rows.items()}
    assert float(memory["SAM 2"]) > 0 and memory["SAMURAI"] == memory["MoSAM"] == ""
    assert "bench.infer --sizes micro --modes end-to-end --multimask" in first
    assert "python -m mosam_train.metrics.table 'SAM 2=" in first
    assert f"'MoSAM={results}/mosam_*.csv'" in first
    # the committed files alone give the same table
    assert trackers.report(results).splitlines()[: len(table)] == table


def test_a_rerun_continues_without_evaluating_or_timing_again(compared):
    first, second, _, _, stamps = compared
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert "repeat 1/1 done" in first and "repeat 1/1 done" not in second
    table = lambda out: [ln for ln in out.splitlines() if ln.startswith("| ")]  # noqa: E731
    assert table(second) == table(first)


def test_a_mosam_checkpoint_on_another_base_is_refused_before_any_run(
    micro, micro_weights, tmp_path
):
    other = micro(seed=1, path=tmp_path / "other.pt")
    mosam = mosam_checkpoint(other, tmp_path / "mosam.ckpt")
    with pytest.raises(SystemExit, match=r"trained on the SAM 2 base .*other\.pt.*another base"):
        trackers.main(
            [f"ckpt={micro_weights}", f"mosam_ckpt={mosam}", "--out", str(tmp_path / "o")]
        )
    assert not (tmp_path / "o").exists()


def test_rules_that_need_three_candidates_are_refused_on_a_one_mask_base(micro_weights, tmp_path):
    with pytest.raises(SystemExit, match=r"tracks with one mask.*SAMURAI, SAM2Long, DAM4SAM"):
        trackers.main([
            f"ckpt={micro_weights}", f"++{trackers.MULTIMASK}=false", "--out", str(tmp_path),
        ])  # fmt: skip


def test_arguments_a_row_cannot_take_are_refused(micro_weights, capsys):
    for argv, message in (
        (["ckpt=x.pt", "tracker.delay=0"], "published defaults"),
        (["ckpt=x.pt", "--rules", "sam2,kalman"], "unknown rule.*kalman.*registered: "),
        (["data=synthetic_long"], "ckpt=PATH"),
        (["ckpt=x.pt", "task=tracking", "data=tracking/got10k"], "LaSOT-layout"),
        (["ckpt=x.pt", "--rules", ""], "no row to evaluate"),
    ):
        with pytest.raises(SystemExit):
            trackers.parse_args(argv)
        assert re.search(message, capsys.readouterr().err), argv
    args, overrides = trackers.parse_args(["ckpt=b.pt", "data=synthetic_long"])
    assert args.out == Path("logs/trackers/synthetic_long_test")
    assert args.results == Path("docs/results/trackers/synthetic_long_test")
    jobs = trackers.eval_overrides(args, overrides)
    assert {"data.test_split=test", f"++{trackers.MULTIMASK}=true"} <= set(jobs)


def test_a_saved_timing_of_another_size_is_refused_before_any_run(micro_weights, tmp_path):
    saved = tmp_path / "infer.txt"
    saved.write_text('table\n{"sizes": {"tiny": {"end to end": {"rows": {}, "frames": 16}}}}\n')
    with pytest.raises(SystemExit, match=r"measured tiny, but the base is sam2\.1_micro"):
        trackers.main(
            [f"ckpt={micro_weights}", "--timing", str(saved), "--out", str(tmp_path / "o")]
        )
    assert not (tmp_path / "o").exists()


def test_a_shipped_base_is_found_by_name(micro_weights, tmp_path, monkeypatch):
    """`ckpt=shipped:NAME` (the shipped multimask base): the checks read the package's file,
    so a MoSAM checkpoint trained on that file is accepted as on the same base."""
    from mosam_train.checkpoint_files import sha256_of
    from mosam_train.models.shipped import SHIPPED, ShippedWeights

    entry = ShippedWeights(
        "test_base", micro_weights.name, "sam2.1_micro", sha256_of(micro_weights), 4, True, "-"
    )
    monkeypatch.setitem(SHIPPED, "test_base", entry)
    monkeypatch.setattr(ShippedWeights, "path", lambda self: micro_weights)
    mosam = mosam_checkpoint(micro_weights, tmp_path / "mosam.ckpt")
    named = trackers.check_same_base("shipped:test_base", mosam)
    assert named["sam2_base"]["sha256"] == sha256_of(micro_weights)
    settings = trackers.sam2_settings("shipped:test_base", ["sam2=micro"])
    assert settings["variant"] == "sam2.1_micro"


def test_add_evaluates_only_the_new_rows_and_keeps_the_committed_ones(
    compared, small_synthetic, micro_weights, tmp_path
):
    _, _, _, results, _ = compared
    kept = tmp_path / "results"
    shutil.copytree(results, kept)
    before = {p.name: p.read_bytes() for p in kept.glob("*.csv")}
    mosam = mosam_checkpoint(micro_weights, tmp_path / "mosam.ckpt", seed=2)
    out = run([
        f"ckpt={micro_weights}", f"mosam_ckpt={mosam}", "--rules", "", "--add",
        "sam2=micro", "data=synthetic", f"data.root={small_synthetic}",
        "--split", "val", "--out", str(tmp_path / "runs"), "--results", str(kept),
        "--timing", "none", *SMALL_DATA,
    ])  # fmt: skip
    assert not (tmp_path / "runs" / "sam2").exists()  # no rule evaluated again
    rows = table_rows(out)
    assert list(rows)[1:] == ["SAM 2", "SAMURAI", "SAM2Long", "DAM4SAM", "MoSAM"]
    assert rows["MoSAM"][1] == "1"  # the MoSAM runs of the table were replaced
    assert rows["SAM 2"] == table_rows(compared[0])["SAM 2"][: len(rows["SAM 2"])]
    after = {p.name: p.read_bytes() for p in kept.glob("*.csv")}
    assert sorted(after) == sorted(set(before) - {"mosam_2.csv"})
    assert all(after[k] == before[k] for k in after if not k.startswith("mosam"))
    assert not (kept / trackers.INFER_FILE).exists()  # no cost columns from another run


def test_box_tracking_rows_make_a_lasot_table(micro_weights, tmp_path):
    root = ensure_synthetic_tracking(tmp_path / "lasot", num_sequences=2, num_frames=16)
    seeds = [mosam_checkpoint(micro_weights, tmp_path / f"m{s}.ckpt", seed=s) for s in (0, 1)]
    results = tmp_path / "results"
    out = run([
        "task=tracking", "data=tracking/synthetic_lasot", f"data.root={root}",
        "data.synthetic=false", f"ckpt={micro_weights}", f"mosam_ckpt={seeds[0]},{seeds[1]}",
        "sam2=micro", "--rules", "sam2,samurai", "--out", str(tmp_path / "runs"),
        "--results", str(results), "--timing", "none",
    ])  # fmt: skip
    rows = table_rows(out)
    assert rows[""][:6] == [
        "model", "runs", "success AUC", "95% CI", "precision", "norm. precision",
    ]  # fmt: skip
    assert {"occlusion AUC", "exit/re-entry AUC"} <= set(rows[""])
    assert list(rows)[1:] == ["SAM 2", "SAMURAI", "MoSAM"] and rows["MoSAM"][1] == "2"
    runs = json.loads((results / trackers.RUNS_FILE).read_text())
    assert {r["task"] for r in runs.values()} == {"tracking"}
    assert {r["num_objects"] for r in runs.values()} == {2}  # sequences
    # SAM 2's score is the evaluation's own (the mean over sequences is the toolkits' figure)
    metrics = json.loads((tmp_path / "runs" / "sam2" / "metrics.json").read_text())
    assert float(rows["SAM 2"][2]) == pytest.approx(metrics["success_auc"], abs=0.05)
    assert "every sequence from its first box, 2 sequences" in out
    assert (
        trackers.report(results).splitlines()[:5]
        == [ln for ln in out.splitlines() if ln.startswith("|")][:5]
    )
