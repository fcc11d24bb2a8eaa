"""`eval.py task=tracking` end to end: LaSOT-layout results, per-sequence rows, plots and
metrics that equal the scores of the written files; a crash halfway and a rerun that
completes it; the first-box baseline; GOT-10k val scores and the test submission."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from mosam_train import tasks
from mosam_train.data.formats.tracking import read_boxes, read_tracking
from mosam_train.data.synthetic_tracking import ensure_synthetic_tracking
from mosam_train.inference import tracking as trk
from mosam_train.metrics.tracking import (
    aggregate_lasot,
    box_iou,
    score_got10k_sequence,
    score_lasot_sequence,
)

REPO = Path(__file__).resolve().parents[1]
FRAMES = 16


@pytest.fixture(scope="module")
def tiny_lasot(tmp_path_factory) -> Path:
    """3 synthetic sequences (occlusion, exit_reentry, distractor) of 16 frames."""
    root = tmp_path_factory.mktemp("trk") / "synthetic_lasot"
    return ensure_synthetic_tracking(root, num_sequences=3, num_frames=FRAMES)


@pytest.fixture(scope="module")
def random_micro_weights(micro, tmp_path_factory) -> Path:
    """Micro weights as initialised (masks mostly empty: boxes of absent objects)."""
    return micro(object_score_bias=None, path=tmp_path_factory.mktemp("w") / "micro.pt")


@pytest.fixture(scope="module")
def reference(run_script, tiny_lasot, random_micro_weights, tmp_path_factory) -> Path:
    """One uninterrupted run of the entry point with random-init micro weights, on the
    first 2 sequences."""
    out = tmp_path_factory.mktemp("eval_tracking")
    run_script(
        "eval.py", "task=tracking", "data=tracking/synthetic_lasot",
        f"data.root={tiny_lasot}", "data.synthetic=false", f"ckpt={random_micro_weights}",
        "sam2=micro", "data.max_sequences=2", f"hydra.run.dir={out}",
    )  # fmt: skip
    return out


def job_config(reference: Path, out: Path, **changes):
    """The reference run's config, in-process (no Hydra app), writing to `out`."""
    cfg = OmegaConf.load(reference / ".hydra" / "config.yaml")
    cfg.paths.root_dir = str(REPO)
    cfg.paths.output_dir = str(out)
    return OmegaConf.merge(cfg, changes)


def rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "per_sequence.csv").open() as f:
        return {r["sequence"]: r for r in csv.DictReader(f)}


def results(out: Path) -> dict[str, bytes]:
    files = (out / "predictions").rglob("*.txt")
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in files if "_time" not in p.name}


@pytest.mark.slow
def test_lasot_layout_outputs_and_scores(reference, tiny_lasot):
    seqs = read_tracking("lasot", tiny_lasot, "test")[:2]
    names = [s.name for s in seqs]
    assert sorted(results(reference)) == sorted(f"predictions/{n}.txt" for n in names)
    scores = []
    for s in seqs:
        lines = (reference / "predictions" / f"{s.name}.txt").read_text().splitlines()
        assert len(lines) == FRAMES and all(len(ln.split(",")) == 4 for ln in lines)
        scores.append(
            score_lasot_sequence(
                read_boxes(reference / "predictions" / f"{s.name}.txt"), s.gt, s.absent
            )
        )
        row = rows(reference)[s.name]
        assert float(row["success_auc"]) == pytest.approx(100 * scores[-1].success_auc, abs=1e-4)
        assert float(row["precision"]) == pytest.approx(100 * scores[-1].precision, abs=1e-4)
        assert int(row["absent_frames"]) == int(s.absent.sum()) and row["class"] == s.category
    m = json.loads((reference / "metrics.json").read_text())
    agg = aggregate_lasot(scores)
    for key in ("success_auc", "precision", "norm_precision"):
        assert m[key] == pytest.approx(100 * agg[key])
    assert m["score"] == m["success_auc"] and m["num_sequences"] == 2 and m["gt_available"]
    assert len(m["curves"]["success_curve"]) == 21 and len(m["thresholds"]["precision"]) == 51
    plots = sorted(p.name for p in (reference / "plots").iterdir())
    assert plots == ["norm_precision_plot.png", "precision_plot.png", "success_plot.png"]


@pytest.mark.slow
def test_a_crash_halfway_then_a_rerun_gives_the_uninterrupted_result(
    reference, monkeypatch, tmp_path
):
    cfg = job_config(reference, tmp_path)
    real = trk.run_sequence
    calls: list[str] = []

    def crash_in_second(tracker, seq, bench, root, on_frame=None):
        calls.append(seq.name)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real(tracker, seq, bench, root, on_frame)

    monkeypatch.setattr(trk, "run_sequence", crash_in_second)
    with pytest.raises(RuntimeError, match="simulated crash"):
        tasks.evaluate_tracking(cfg)
    assert list(rows(tmp_path)) == calls[:1] and not (tmp_path / "metrics.json").exists()

    resumed: list[str] = []

    def count(tracker, seq, *args, **kwargs):
        resumed.append(seq.name)
        return real(tracker, seq, *args, **kwargs)

    monkeypatch.setattr(trk, "run_sequence", count)
    tasks.evaluate_tracking(cfg)
    assert resumed == calls[1:] + [n for n in rows(reference) if n not in calls]
    assert results(tmp_path) == results(reference)
    ref, new = (json.loads((d / "metrics.json").read_text()) for d in (reference, tmp_path))
    assert new["curves"] == ref["curves"] and new["score"] == ref["score"]
    for name, row in rows(reference).items():  # same rows but the speed
        assert {k: v for k, v in rows(tmp_path)[name].items() if k != "fps"} == {
            k: v for k, v in row.items() if k != "fps"
        }
    # a second rerun runs nothing
    resumed.clear()
    tasks.evaluate_tracking(cfg)
    assert resumed == []
    # results of another evaluation are never mixed in
    with pytest.raises(ValueError, match="holds results of another model"):
        tasks.evaluate_tracking(OmegaConf.merge(cfg, {"baseline": "first_box", "ckpt": None}))


def test_first_box_baseline_scores_the_first_box_overlaps(compose_config, tiny_lasot, tmp_path):
    cfg = compose_config(
        "eval", "task=tracking", "data=tracking/synthetic_lasot", f"data.root={tiny_lasot}",
        "data.synthetic=false", "baseline=first_box", out=tmp_path,
    )  # fmt: skip
    out = tasks.evaluate_tracking(cfg)
    succ, prec = [], []
    for s in read_tracking("lasot", tiny_lasot, "test"):
        ious = box_iou(np.tile(s.gt[0], (FRAMES, 1)), s.gt)
        ious[s.absent] = -1
        succ.append(np.mean([(ious > t).mean() for t in np.linspace(0, 1, 21)]))
        centre = s.gt[:, :2] + (s.gt[:, 2:] - 1) / 2
        dist = np.hypot(*(centre - centre[0]).T)
        prec.append(np.mean((dist <= 20) & ~s.absent))
        written = read_boxes(tmp_path / "predictions" / f"{s.name}.txt")
        np.testing.assert_array_equal(written, np.tile(s.gt[0], (FRAMES, 1)))
    assert out["success_auc"] == pytest.approx(100 * np.mean(succ))
    assert out["precision"] == pytest.approx(100 * np.mean(prec))


def test_tracking_needs_a_tracking_data_config(compose_config, tmp_path):
    cfg = compose_config("eval", "task=tracking", "data=davis", "baseline=first_box", out=tmp_path)
    with pytest.raises(ValueError, match="data=tracking/synthetic_lasot"):
        tasks.evaluate_tracking(cfg)


def got10k_layout(root: Path, lasot: Path) -> None:
    """The synthetic sequences as GOT-10k val (full ground truth) and test (first box)."""
    for split in ("val", "test"):
        names = []
        for i, s in enumerate(read_tracking("lasot", lasot, "test")):
            name = f"GOT-10k_{split.title()}_{i + 1:06d}"
            names.append(name)
            folder = root / split / name
            folder.mkdir(parents=True)
            for t, p in enumerate(s.frame_paths):
                (folder / f"{t + 1:08d}.jpg").write_bytes(p.read_bytes())
            gt = s.gt if split == "val" else s.gt[:1]
            (folder / "groundtruth.txt").write_text(trk.format_boxes(gt))
            cover = np.where(s.absent, 0, 8)
            (folder / "cover.label").write_text("".join(f"{c}\n" for c in cover))
        (root / split / "list.txt").write_text("\n".join(names) + "\n")


def test_got10k_val_scores_and_test_submission(compose_config, tiny_lasot, tmp_path):
    got = tmp_path / "GOT-10k"
    got10k_layout(got, tiny_lasot)
    options = ("data=tracking/got10k", f"data.root={got}", "baseline=first_box")
    out = tasks.evaluate_tracking(
        compose_config("eval", "task=tracking", *options, out=tmp_path / "val")
    )
    pooled = []
    for s in read_tracking("got10k", got, "val"):
        folder = tmp_path / "val" / "predictions" / s.name
        assert sorted(p.name for p in folder.iterdir()) == [
            f"{s.name}_001.txt",
            f"{s.name}_time.txt",
        ]
        assert len((folder / f"{s.name}_time.txt").read_text().split()) == FRAMES
        g = score_got10k_sequence(np.tile(s.gt[0], (FRAMES, 1)), s.gt, s.cover, (160, 120))
        assert len(g.ious) == FRAMES - 1 - int(s.absent[1:].sum())  # not frame 0, not cover 0
        pooled.append(g.ious)
    ious = np.concatenate(pooled)
    assert out["ao"] == pytest.approx(100 * ious.mean())
    assert out["sr50"] == pytest.approx(100 * (ious > 0.5).mean())
    assert out["sr75"] == pytest.approx(100 * (ious > 0.75).mean())
    assert (tmp_path / "val" / "plots" / "success_plot.png").is_file()

    test_out = tmp_path / "test"
    out = tasks.evaluate_tracking(
        compose_config("eval", "task=tracking", *options, "data.split=test", out=test_out)
    )
    assert not out["gt_available"] and np.isnan(out["score"])
    names = [f"GOT-10k_Test_{i:06d}" for i in (1, 2, 3)]
    with zipfile.ZipFile(test_out / "submission.zip") as zf:
        assert sorted(zf.namelist()) == sorted(
            f"{n}/{n}_{kind}.txt" for n in names for kind in ("001", "time")
        )
    m = json.loads((test_out / "metrics.json").read_text())
    assert m["gt_available"] is False and m["submission"] == "submission.zip"
