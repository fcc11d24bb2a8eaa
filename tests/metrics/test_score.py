"""The scoring CLI on small folders written here, with hand-computed J and F."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mosam_train.metrics.score import main

H, W = 480, 854  # golden values of REFERENCE.md section 4 are at this size


def palette_png(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(label.astype(np.uint8))  # "L"
    im.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])  # -> "P"
    im.save(path)


def grey_png(path: Path, mask: np.ndarray, value: int = 255) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * value).save(path)  # "L", 0/255


def label(*boxes: tuple[int, int, int, int, int], h: int = H, w: int = W) -> np.ndarray:
    out = np.zeros((h, w), np.uint8)
    for value, r0, r1, c0, c1 in boxes:
        out[r0:r1, c0:c1] = value
    return out


def write_davis(root: Path) -> tuple[Path, Path]:
    """A DAVIS 2017 root (Annotations/480p, ImageSets/2017/val.txt) and predictions.

    a (5 frames, scored 1..3): object 1 predicted 10 px too low (J = 18000/22000 = 9/11,
      F = 0.35667, the golden shift case), object 2 perfect (J = F = 1).
    b (4 frames, scored 1..2): object 1 perfect, plus the 100x50 void (255) region next to
      it predicted as object 1. Void is background, as in the official tool: J = 20000 /
      25000 = 0.8; the prediction's boundary is the box's 600 pixels plus the blob's 300,
      more than 8 px apart, so precision = 2/3, recall = 1, F = 0.8.
    c: in the GT folder but not in val.txt, and broken: must not be read.
    """
    gt, pred = root / "DAVIS" / "Annotations" / "480p", root / "pred"
    obj1, obj2 = (1, 100, 200, 100, 300), (2, 300, 400, 500, 700)
    for t in range(5):
        palette_png(gt / "a" / f"{t:05d}.png", label(obj1, obj2))
        # first and last frames are not scored: their predictions are never read
        if 1 <= t <= 3:
            palette_png(pred / "a" / f"{t:05d}.png", label((1, 110, 210, 100, 300), obj2))
    void = (255, 300, 350, 400, 500)
    for t in range(4):
        palette_png(gt / "b" / f"{t:05d}.png", label(obj1, void))
        palette_png(pred / "b" / f"{t:05d}.png", label(obj1, (1, 300, 350, 400, 500)))
    (gt / "c").mkdir()
    sets = root / "DAVIS" / "ImageSets" / "2017"
    sets.mkdir(parents=True)
    (sets / "val.txt").write_text("a\nb\n")
    return root / "DAVIS", pred


def run_cli(capsys, *args: str | Path) -> tuple[int, dict | None, str]:
    """`main` in this process (a subprocess pays seconds of imports per call)."""
    rc = main([str(a) for a in args])
    stdout, stderr = capsys.readouterr()
    lines = stdout.strip().splitlines()
    return rc, json.loads(lines[-1]) if rc == 0 else None, stderr


@pytest.fixture(scope="module")
def davis(tmp_path_factory) -> tuple[Path, Path]:
    return write_davis(tmp_path_factory.mktemp("davis"))


J_A1, F_A1 = 9 / 11, 0.35667


def test_cli_davis_root_matches_hand_computed_values(davis, tmp_path):
    """As users run it: a subprocess whose last stdout line is the JSON result."""
    gt_root, pred = davis
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mosam_train.metrics.score",
            gt_root,
            pred,
            "--csv",
            tmp_path / "rows.csv",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out, err = json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr
    # pooled over the three objects, not over the two videos
    assert out["J"] == pytest.approx(100 * (J_A1 + 1 + 0.8) / 3, abs=1e-9)
    assert out["F"] == pytest.approx(100 * (F_A1 + 1 + 0.8) / 3, abs=1e-3)
    assert out["JF"] == pytest.approx((out["J"] + out["F"]) / 2, abs=1e-12)
    assert out["J"] != pytest.approx(100 * ((J_A1 + 1) / 2 + 0.8) / 2, abs=0.1)
    assert (out["objects"], out["videos"]) == (3, 2)
    assert out["J_recall"] == pytest.approx(100.0)  # every frame's J > 0.5
    assert out["F_recall"] == pytest.approx(100 * 2 / 3)  # a/1 has F 0.357 everywhere
    assert out["J_decay"] == pytest.approx(0.0)
    assert "val.txt" in err  # the official default split was used
    rows = list(csv.DictReader((tmp_path / "rows.csv").open()))
    assert [(r["video"], r["object_id"], r["num_frames"]) for r in rows] == [
        ("a", "1", "3"),
        ("a", "2", "3"),
        ("b", "1", "2"),
    ]
    assert float(rows[0]["j_mean"]) == pytest.approx(J_A1, abs=1e-12)
    assert float(rows[0]["F"]) == pytest.approx(100 * F_A1, abs=1e-3)
    assert float(rows[2]["j_mean"]) == pytest.approx(0.8) and float(rows[2]["f_mean"]) == 0.8


def test_cli_plain_folder_and_split_file(davis, tmp_path, capsys):
    gt_root, pred = davis
    split = write_list(tmp_path, "b")
    rc, out, _ = run_cli(capsys, gt_root / "Annotations" / "480p", pred, "--split-file", split)
    assert rc == 0 and out["J"] == pytest.approx(80.0) and out["F"] == pytest.approx(80.0)


def test_cli_resume_reads_finished_videos(davis, tmp_path, capsys):
    gt_root, pred = davis
    rows = tmp_path / "rows.csv"
    _, first, _ = run_cli(capsys, gt_root, pred, "--csv", rows)
    # as if a crash cut b's row short, and a's predictions were gone: a resumed run takes
    # a from the CSV and scores only b again
    lines = rows.read_text().splitlines()
    rows.write_text("\n".join(lines[:3]) + "\n" + lines[3][:10])
    moved = tmp_path / "pred"
    shutil.copytree(pred / "b", moved / "b")
    rc, out, err = run_cli(capsys, gt_root, moved, "--csv", rows, "--resume")
    assert rc == 0, err
    assert out["J"] == first["J"] and out["F"] == first["F"] and out["objects"] == 3
    assert len(list(csv.DictReader(rows.open()))) == 3
    # without --resume, a is scored again and its predictions are missing
    rc, _, err = run_cli(capsys, gt_root, moved, "--csv", rows)
    assert rc == 1 and f"{moved / 'a'}: no predictions for video 'a'" in err


def test_cli_errors_name_the_file_and_the_fix(davis, tmp_path, capsys):
    gt_root, pred = davis
    bad = tmp_path / "pred"
    shutil.copytree(pred, bad)
    (bad / "a" / "00002.png").unlink()  # a scored frame
    rc, out, err = run_cli(capsys, gt_root, bad, "--split-file", write_list(tmp_path, "a"))
    assert rc == 1 and out is None
    assert str(bad / "a" / "00002.png") in err and "Fix" in err
    # a label the first GT frame does not have (the official tool exits with status 0)
    palette_png(bad / "b" / "00001.png", label((1, 100, 200, 100, 300), (3, 0, 10, 0, 10)))
    rc, _, err = run_cli(capsys, gt_root, bad, "--split-file", write_list(tmp_path, "b"))
    assert rc == 1 and str(bad / "b" / "00001.png") in err and "[3]" in err and "Fix" in err
    # a video without predictions
    rc, _, err = run_cli(capsys, gt_root, tmp_path / "empty_pred_root_missing")
    assert rc == 1 and "Fix" in err


def write_list(folder: Path, *names: str) -> Path:
    path = folder / f"split_{'_'.join(names)}.txt"
    path.write_text("\n".join(names) + "\n")
    return path


def test_cli_sav_layout(tmp_path, capsys):
    """SA-V layout at 48x64 (boundary radius 1), annotated frames 0, 4, ..., 16; scored
    4, 8, 12. GT: 0/1 palette PNGs; predictions: 0/255 grey PNGs.

    000: GT box on every frame; predicted on 4 and 8, missed on 12: J = F = 2/3.
    001: overlaps 000; GT empty on 4, predicted empty there, so not scored before 8; on 8
         perfect, on 12 a far-away box: J = F = (1 + 0) / 2 = 1/2 (DAVIS rules: 2/3).
    002: GT only on the skipped frames 0 and 16: left out (SA-V's evaluator asserts).
    """
    gt, pred = tmp_path / "Annotations_6fps", tmp_path / "pred"
    h, w = 48, 64
    a = label((1, 10, 20, 10, 30), h=h, w=w) > 0
    b = label((1, 15, 25, 20, 40), h=h, w=w) > 0
    far = label((1, 35, 45, 45, 60), h=h, w=w) > 0
    empty = np.zeros((h, w), bool)
    for f in range(0, 20, 4):
        name = f"{f:05d}.png"
        palette_png(gt / "sav_1" / "000" / name, a.astype(np.uint8))
        palette_png(gt / "sav_1" / "001" / name, (b if f >= 8 else empty).astype(np.uint8))
        palette_png(gt / "sav_1" / "002" / name, (a if f in (0, 16) else empty).astype(np.uint8))
        grey_png(pred / "sav_1" / "000" / name, a if f in (4, 8) else empty)
        grey_png(pred / "sav_1" / "001" / name, {8: b, 12: far}.get(f, empty))
        grey_png(pred / "sav_1" / "002" / name, a if f == 8 else empty)
    rc, out, err = run_cli(
        capsys, tmp_path, pred, "--layout", "sav", "--csv", tmp_path / "rows.csv"
    )
    assert rc == 0, err
    assert out["objects"] == 2 and out["videos"] == 1 and out["protocol"] == "sav"
    assert out["J"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)
    assert out["F"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)
    assert "002: left out" in err
    rows = {r["object_id"]: r for r in csv.DictReader((tmp_path / "rows.csv").open())}
    assert set(rows) == {"0", "1"} and rows["1"]["num_frames"] == "2"
    # a label map where a per-object mask is expected is an error naming the file
    palette_png(
        pred / "sav_1" / "001" / "00008.png", label((1, 0, 5, 0, 5), (2, 6, 9, 0, 5), h=h, w=w)
    )
    rc, _, err = run_cli(capsys, tmp_path, pred, "--layout", "sav")
    assert rc == 1 and "001/00008.png" in err and "binary" in err


def test_cli_decay_on_a_long_video(tmp_path, capsys):
    """302 GT frames, 300 scored; J = 1 on the first 75 scored frames, then the object is
    missed: decay = 75/76 (see test_protocols), where the official tool gives NaN."""
    h, w = 16, 16
    obj = label((1, 4, 12, 4, 12), h=h, w=w)
    for t in range(302):
        palette_png(tmp_path / "gt" / "long" / f"{t:05d}.png", obj)
        palette_png(tmp_path / "pred" / "long" / f"{t:05d}.png", obj if t <= 75 else obj * 0)
    rc, out, err = run_cli(capsys, tmp_path / "gt", tmp_path / "pred")
    assert rc == 0, err
    assert out["J"] == pytest.approx(25.0)
    assert out["J_decay"] == pytest.approx(100 * 75 / 76)
    assert out["F_decay"] == pytest.approx(100 * 75 / 76)


def test_cli_tags_diagnostics_and_an_older_csv(davis, tmp_path, capsys):
    gt_root, pred = davis
    root = tmp_path / "DAVIS"
    shutil.copytree(gt_root, root)
    tags = {"a": {"2": ["occlusion"]}, "b": ["distractor"]}  # per object, and per video
    (root / "tags.json").write_text(json.dumps(tags))
    rows = tmp_path / "rows.csv"
    rc, out, err = run_cli(capsys, root, pred, "--csv", rows)
    assert rc == 0, err
    assert out["tag/occlusion/num_objects"] == 1 and out["tag/occlusion/JF"] == 100.0
    assert out["tag/distractor/J"] == pytest.approx(80.0)
    # every object is visible on every scored frame: J visible is J, nothing else measured
    assert out["J_visible"] == pytest.approx(out["J"]) and out["FP_absent"] is None
    assert out["num_events"] == 0 and out["latency_mean"] is None
    assert out["JF_ci_low"] <= out["JF"] <= out["JF_ci_high"]
    assert "J visible" in err and "never re-detected" in err
    written = list(csv.DictReader(rows.open()))
    assert [r["tags"] for r in written] == ["", "occlusion", "distractor"]
    # a CSV written before the diagnostics: --resume scores every video again, says why
    old = [c for c in written[0] if c not in ("j_visible", "fp_absent", "latencies")]
    with rows.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(written)
    rc, again, err = run_cli(capsys, root, pred, "--csv", rows, "--resume")
    assert rc == 0 and "lacks the columns" in err and "scoring every video again" in err
    assert again["JF"] == out["JF"] and list(csv.DictReader(rows.open())) == written
