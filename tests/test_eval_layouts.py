"""eval.py on each benchmark layout (datasets written by tests/layouts): the submission files,
file by file, metrics where ground truth exists, and a crash halfway that a rerun completes
to exactly the files and numbers of an uninterrupted run.

`baseline=copy_first` needs no checkpoint and its output is known by hand: every object keeps
the mask it was prompted with (its first-appearance GT mask) from that frame on; where two
such masks overlap, the smaller id wins (equal logits).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from layouts.davis import write_davis
from layouts.lvos import write_lvos
from layouts.mose import mose_name, write_mose
from layouts.sav import write_sav_val
from layouts.ytvos import write_ytvos
from omegaconf import OmegaConf
from PIL import Image

from mosam_train import tasks
from mosam_train.metrics.jf import ROW_FIELDS
from mosam_train.palette import voc_palette
from mosam_train.tasks import vos_evaluation
from mosam_train.tasks.results import ResultsDir
from mosam_train.tasks.vos_evaluation import ROWS_FILE

REPO = Path(__file__).resolve().parents[1]
LAYOUTS = ("davis", "sav", "ytvos", "mose", "lvos")


def overrides(name: str, root: Path) -> list[str]:
    """What a user passes to evaluate each layout (the split its data config names)."""
    return {
        "davis": ["data=davis", f"data.root={root}"],  # val
        "sav": ["data=sav", f"data.root={root}"],  # sav_val
        "ytvos": ["data=ytvos", f"data.root={root}", "data.val=null", "data.test_split=valid"],
        "mose": ["data=mose", f"data.root={root}", "data.val=null", "data.test_split=valid"],
        "lvos": ["data=lvos", f"data.root={root}"],  # v2 val
    }[name]


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("layouts")
    out = {name: base / name for name in LAYOUTS}
    write_davis(out["davis"], "val")
    # tags of every object of seq0, and of seq2's object 4 alone (it leaves and comes back)
    tags = {"seq0": ["occlusion"], "seq2": {"4": ["exit_reentry"]}}
    (out["davis"] / "tags.json").write_text(json.dumps(tags))
    write_sav_val(out["sav"], "sav_val")
    write_ytvos(out["ytvos"], "valid")
    # The last video's object is listed on its first 3 of 4 frames only: the fourth frame is
    # not part of a submission (without this every frame would be).
    meta_path = out["ytvos"] / "valid" / "meta.json"
    meta = json.loads(meta_path.read_text())
    last = sorted(meta["videos"])[-1]
    frames = meta["videos"][last]["objects"]["1"]["frames"]
    meta["videos"][last]["objects"]["1"]["frames"] = frames[:-1]
    meta_path.write_text(json.dumps(meta))
    write_mose(out["mose"], "valid")
    write_lvos(out["lvos"], version="v2", split="val")
    return out


@pytest.fixture(scope="module")
def evaluated(roots, tmp_path_factory):
    """Runs eval.py once per layout (on first use) and returns its output directory."""
    done: dict[str, Path] = {}

    def run(name: str) -> Path:
        if name not in done:
            out = tmp_path_factory.mktemp(f"eval_{name}")
            proc = subprocess.run(
                [
                    sys.executable,
                    "eval.py",
                    "baseline=copy_first",
                    *overrides(name, roots[name]),
                    f"hydra.run.dir={out}",
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
            done[name] = out
        return done[name]

    return run


def png(path: Path) -> np.ndarray:
    """A prediction: an indexed PNG's raw values."""
    with Image.open(path) as im:
        assert im.mode == "P", path
        return np.array(im)


def gt_png(path: Path) -> np.ndarray:
    """A ground-truth PNG's raw values (SA-V's are palette or grey)."""
    with Image.open(path) as im:
        return np.array(im)


def palette_of(path: Path) -> list[int]:
    with Image.open(path) as im:
        return im.getpalette()


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))


def zip_files(path: Path) -> list[str]:
    return sorted(n for n in zipfile.ZipFile(path).namelist() if not n.endswith("/"))


def paint(masks: dict[int, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Label map of overlapping masks where the smaller id wins."""
    out = np.zeros(shape, np.uint8)
    for oid in sorted(masks, reverse=True):
        out[masks[oid]] = oid
    return out


def path_shape(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size[1], im.size[0]


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_davis_palette_pngs_every_frame_and_metrics(evaluated, roots):
    out = evaluated("davis")
    pred, gt = out / "predictions", roots["davis"] / "Annotations" / "480p"
    assert tree(pred) == [f"seq{v}/{t:05d}.png" for v in range(3) for t in range(5)]
    for v in range(3):
        first = gt_png(gt / f"seq{v}" / "00000.png")
        first = np.where(first == 255, 0, first)  # void is not an object
        for t in range(5):
            assert np.array_equal(png(pred / f"seq{v}" / f"{t:05d}.png"), first)
    assert palette_of(pred / "seq0" / "00003.png") == list(voc_palette())
    m = metrics(out)
    assert m["gt_available"] and m["num_videos"] == 3 and m["num_objects"] == 5
    assert m["split"] == "val" and m["layout"] == "davis" and m["submission"] is None
    rows = {
        (r["video"], r["object_id"]): r for r in csv.DictReader((out / "per_object.csv").open())
    }
    assert len(rows) == 5
    # seq1: a 6x5 box moving 3 px a frame; frame 0's box overlaps it on frame 1 only
    # (2 columns: 12 / (30 + 30 - 12)); scored frames 1-3
    assert float(rows[("seq1", "3")]["j_mean"]) == pytest.approx(0.25 / 3)
    assert float(rows[("seq1", "3")]["j_visible"]) == pytest.approx(0.25 / 3)  # always visible
    assert not (out / "submission.zip").exists()
    # seq2's object 4 is absent on scored frames 1-2, where its first-frame mask is repeated
    # (a false positive on both), and re-emerges on frame 3 away from it (never re-detected)
    gone = rows[("seq2", "4")]
    assert (gone["tags"], gone["fp_absent"], gone["latencies"]) == ("exit_reentry", "1.0", "")
    assert gone["never_redetected"] == "1" and rows[("seq2", "1")]["tags"] == ""
    assert rows[("seq0", "2")]["tags"] == "occlusion"
    assert m["tag/occlusion/num_objects"] == 2 and m["tag/exit_reentry/num_objects"] == 1
    assert m["tag/exit_reentry/FP_absent"] == 100.0 and m["never_redetected"] == 100.0
    assert m["num_events"] == 1 and m["JF_ci_low"] <= m["JF"] <= m["JF_ci_high"]


@pytest.mark.slow
def test_sav_binary_pngs_per_object_on_annotated_frames(evaluated, roots):
    out = evaluated("sav")
    pred, gt = out / "predictions", roots["sav"] / "sav_val" / "Annotations_6fps"
    assert tree(pred) == tree(gt)  # same videos, object folders 000..002, frames 0, 4, 8
    assert tree(pred)[:3] == [f"sav_100000/000/{t:05d}.png" for t in (0, 4, 8)]
    for path in tree(gt):
        video, obj, _ = path.split("/")
        first = gt_png(gt / video / obj / "00000.png") > 0
        values = png(pred / path)
        assert set(np.unique(values).tolist()) <= {0, 1}
        assert np.array_equal(values, first.astype(np.uint8)), path
    # object 1 lies inside object 0: both keep those pixels (no label map in between)
    both = (png(pred / "sav_100000/000/00004.png") == 1) & (
        png(pred / "sav_100000/001/00004.png") == 1
    )
    assert both.sum() > 0
    m = metrics(out)
    rows = {(r["video"], r["object_id"]) for r in csv.DictReader((out / "per_object.csv").open())}
    assert m["gt_available"] and m["num_objects"] == len(rows) and m["split"] == "sav_val"
    assert {(f"sav_10000{v}", str(o)) for v in (0, 1) for o in (0, 2)} <= rows


@pytest.mark.slow
def test_ytvos_valid_meta_frames_under_annotations_zip_and_no_scores(evaluated, roots):
    out = evaluated("ytvos")
    split = roots["ytvos"] / "valid"
    meta = json.loads((split / "meta.json").read_text())["videos"]
    pred = out / "predictions"
    expected_files = []
    for video, entry in sorted(meta.items()):
        objects = {int(k): v["frames"] for k, v in entry["objects"].items()}
        first = {oid: min(frames) for oid, frames in objects.items()}
        masks = {
            oid: png(split / "Annotations" / video / f"{s}.png") == oid for oid, s in first.items()
        }
        for stem in sorted({s for frames in objects.values() for s in frames}):
            expected_files.append(f"Annotations/{video}/{stem}.png")
            started = {oid: m for oid, m in masks.items() if int(first[oid]) <= int(stem)}
            want = paint(started, next(iter(masks.values())).shape)
            assert np.array_equal(png(pred / "Annotations" / video / f"{stem}.png"), want)
    assert tree(pred) == sorted(expected_files)
    last = sorted(meta)[-1]
    assert not (pred / "Annotations" / last / "00025.png").exists()  # JPEG, but not listed
    assert (split / "JPEGImages" / last / "00025.jpg").exists()
    assert zip_files(out / "submission.zip") == sorted(expected_files)
    m = metrics(out)
    assert m["gt_available"] is False and m["num_videos"] == 3 and "J" not in m
    assert m["submission"] == "submission.zip" and m["predictions"] == "predictions"
    assert not (out / "per_object.csv").exists()
    assert sorted((out / "done_videos.txt").read_text().split()) == sorted(meta)


@pytest.mark.slow
def test_mose_valid_every_frame_and_zip_with_videos_at_the_root(evaluated, roots):
    out = evaluated("mose")
    split, pred = roots["mose"] / "valid", out / "predictions"
    expected = []
    for i, n in enumerate((6, 5, 4)):
        video = mose_name(i)
        first = gt_png(split / "Annotations" / video / "00000.png")  # objects 2 and 3 overlap
        for t in range(n):
            expected.append(f"{video}/{t:05d}.png")
            assert np.array_equal(png(pred / video / f"{t:05d}.png"), first)
    assert tree(pred) == sorted(expected)
    names = zipfile.ZipFile(out / "submission.zip").namelist()
    assert zip_files(out / "submission.zip") == sorted(expected)
    assert {n.split("/")[0] for n in names} == {mose_name(i) for i in range(3)}
    assert metrics(out)["gt_available"] is False
    assert not (out / "per_object.csv").exists()


@pytest.mark.slow
def test_lvos_val_every_frame_from_the_first_annotation_and_metrics(evaluated, roots):
    out = evaluated("lvos")
    split, pred = roots["lvos"] / "v2" / "val", out / "predictions"
    meta = json.loads((split / "val_meta.json").read_text())["videos"]
    gt = split / "Annotations"
    assert tree(pred) == tree(gt)  # every annotated frame; the two leading JPEGs of lv000001 not
    assert not (pred / "lv000001" / "00000001.png").exists()
    for video, entry in meta.items():
        start = {int(k): v["frame_range"]["start"] for k, v in entry["objects"].items()}
        masks = {oid: gt_png(gt / video / f"{s:08d}.png") == oid for oid, s in start.items()}
        for path in sorted((gt / video).glob("*.png")):
            started = {oid: m for oid, m in masks.items() if start[oid] <= int(path.stem)}
            want = paint(started, path_shape(path))
            assert np.array_equal(png(pred / video / path.name), want), path
    first_gt = sorted((gt / "lv000000").glob("*.png"))[0]
    assert palette_of(pred / "lv000000" / first_gt.name) == palette_of(first_gt)
    m = metrics(out)
    assert m["gt_available"] and m["num_objects"] == 5 and m["split"] == "val"


# --------------------------------------------------------------------------- crash, resume


def snapshot(out: Path) -> dict[str, bytes]:
    """Every result file's bytes."""
    pred = (out / "predictions").rglob("*")
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in pred if p.is_file()}
    for name in ("per_object.csv", "submission.zip"):
        if (out / name).exists():
            files[name] = (out / name).read_bytes()
    files["metrics.json"] = (out / "metrics.json").read_bytes()
    return files


@pytest.mark.slow
@pytest.mark.parametrize("name", LAYOUTS)
def test_a_crash_halfway_then_a_rerun_gives_the_uninterrupted_result(
    name, evaluated, monkeypatch, tmp_path
):
    reference = evaluated(name)
    # the same job in-process (no Hydra app): its composed config, into a new directory
    cfg = OmegaConf.load(reference / ".hydra" / "config.yaml")
    cfg.paths.root_dir = str(REPO)
    cfg.paths.output_dir = str(tmp_path)
    real = vos_evaluation.run_record
    calls: list[str] = []

    def crash_in_second_video(propagator, record, image_size, on_frame, **kwargs):
        calls.append(record.name)
        if len(calls) < 2:
            return real(propagator, record, image_size, on_frame=on_frame, **kwargs)
        seen = []

        def write_then_crash(frame):
            on_frame(frame)
            seen.append(frame.frame_idx)
            if len(seen) == 2:
                raise RuntimeError("simulated crash")

        return real(propagator, record, image_size, on_frame=write_then_crash, **kwargs)

    monkeypatch.setattr(vos_evaluation, "run_record", crash_in_second_video)
    with pytest.raises(RuntimeError, match="simulated crash"):
        tasks.evaluate(cfg)
    assert (tmp_path / "done_videos.txt").read_text().split() == calls[:1]
    assert not (tmp_path / "metrics.json").exists()
    assert not (tmp_path / "submission.zip").exists()
    assert any((tmp_path / "predictions").rglob("*.png"))  # the second video's first frames

    resumed: list[str] = []

    def count(propagator, record, *args, **kwargs):
        resumed.append(record.name)
        return real(propagator, record, *args, **kwargs)

    monkeypatch.setattr(vos_evaluation, "run_record", count)
    tasks.evaluate(cfg)
    assert calls[0] not in resumed and resumed[0] == calls[1]  # done videos are skipped
    assert snapshot(tmp_path) == snapshot(reference)

    # Results of another evaluation are never mixed in.
    other = OmegaConf.merge(cfg, {"data": {"val_max_videos": 1}})
    with pytest.raises(ValueError, match="holds results of another evaluation"):
        tasks.evaluate(other)


def test_rows_written_with_other_columns_are_not_continued(tmp_path):
    """A per_object.csv from a version with other columns: appending today's rows under its
    header would misalign them, so the rerun is refused."""
    (tmp_path / ROWS_FILE).write_text("video,object_id,j_mean\nv,1,0.5\n")
    results = ResultsDir(tmp_path, ROWS_FILE, ROW_FIELDS, key="video")
    with pytest.raises(ValueError, match=r"per_object\.csv has the columns .*Fix: evaluate"):
        results.guard(OmegaConf.create({"baseline": "copy_first"}))


def test_training_only_settings_do_not_stop_a_rerun(tmp_path):
    """How a model trains (optimiser, loss, prompt simulation, what trains, augmentation) is
    no part of an evaluation: a rerun whose config changes or adds such a setting continues
    the directory; one that changes what is evaluated does not."""
    first = OmegaConf.create(
        {
            "baseline": "copy_first",
            "model": {"sam2": {"variant": "a"}, "optim": {"lr": 1.0}},
            "data": {"val_max_videos": 2, "augment": {"hflip_p": 0.5}},
        }
    )
    ResultsDir(tmp_path, ROWS_FILE, ROW_FIELDS, key="video").guard(first)
    later = OmegaConf.merge(
        first,
        {
            "model": {"optim": {"lr": 2.0}, "trainable": ["sam2."]},
            "data": {"augment": {"hflip_p": 0.0}},
        },
    )
    ResultsDir(tmp_path, ROWS_FILE, ROW_FIELDS, key="video").guard(later)
    for change in ({"model": {"sam2": {"variant": "b"}}}, {"data": {"val_max_videos": 3}}):
        other = OmegaConf.merge(later, change)
        with pytest.raises(ValueError, match="holds results of another evaluation"):
            ResultsDir(tmp_path, ROWS_FILE, ROW_FIELDS, key="video").guard(other)
