"""The dataset check CLI: its JSON lines match the ground truth a layout was written from,
and a corrupted copy has every planted problem listed (with its path), none stopping it."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from layouts import Truth
from layouts.davis import write_davis
from layouts.lvos import write_lvos
from layouts.mose import write_mose
from layouts.sav import write_sav_train, write_sav_val
from layouts.ytvos import write_ytvos
from omegaconf import OmegaConf, open_dict
from PIL import Image

from mosam_train.data.check import CONFIG_DIR, check_split, run_check
from mosam_train.data.synthetic_long import ensure_synthetic_long


def assert_lines_match(lines: list[dict], truth: Truth) -> None:
    """Every video's JSON line says exactly what the writer made."""
    by_video = {ln["video"]: ln for ln in lines if "video" in ln}
    assert sorted(by_video) == sorted(truth)
    for name, gt in truth.items():
        ln = by_video[name]
        assert ln["problems"] == [], (name, ln["problems"])
        assert ln["num_frames"] == gt.num_frames, name
        assert ln["annotated_frames"] == gt.annotated_frames, name
        assert ln["object_ids"] == gt.object_ids, name
        assert ln["first_appearance"] == {str(k): v for k, v in gt.first_appearance.items()}
        expected = {
            str(oid): [gt.pixel_counts[oid][t] for t in gt.annotated_frames]
            for oid in gt.object_ids
        }
        assert ln["pixel_counts"] == expected, name


def check(fmt: str, root: Path, split: str, **kw) -> list[dict]:
    return [ln for ln in check_split(fmt, root, split, **kw) if "video" in ln]


def problems_of(lines: list[dict]) -> list[dict]:
    return [p for ln in lines for p in ln["problems"]]


def test_davis_lines_match_the_ground_truth(tmp_path):
    truth = write_davis(tmp_path, "val", num_videos=3)
    assert_lines_match(check("davis", tmp_path, "val"), truth)


def test_davis_corrupted_copy_lists_every_problem(tmp_path):
    root = tmp_path / "DAVIS"
    write_davis(root, "val", num_videos=5)
    jpg = root / "JPEGImages" / "480p"
    ann = root / "Annotations" / "480p"
    planted = {
        # truncated JPEG
        jpg / "seq0" / "00002.jpg": lambda p: p.write_bytes(p.read_bytes()[:60]),
        # palette PNG saved as RGB
        ann / "seq1" / "00001.png": lambda p: Image.open(p).convert("RGB").save(p),
        # a label the first frame does not have
        ann / "seq2" / "00003.png": lambda p: Image.fromarray(
            np.where(np.array(Image.open(p)) == 1, 9, np.array(Image.open(p))).astype(np.uint8)
        ).save(p),
        # mask of the wrong size
        ann / "seq3" / "00004.png": lambda p: Image.fromarray(np.zeros((10, 10), np.uint8)).save(p),
        # the annotation folder is missing altogether (the reader cannot open the video)
        ann / "seq4": shutil.rmtree,
    }
    for path, plant in planted.items():
        plant(path)
    lines = check("davis", root, "val")
    found = problems_of(lines)
    assert len(found) == len(planted)
    assert {Path(p["path"]) for p in found} == set(planted)
    assert {ln["video"] for ln in lines} == {f"seq{v}" for v in range(5)}
    bad_label = next(p for p in found if p["path"].endswith("seq2/00003.png"))
    assert "[9]" in bad_label["message"] and "Fix" in bad_label["message"]


def test_run_check_prints_lines_summary_and_exit_status(tmp_path):
    root = tmp_path / "DAVIS"
    truth = write_davis(root, "val", num_videos=2)
    cfg = OmegaConf.create(
        {"frames": "all", "output": str(tmp_path / "out.jsonl"),
         "data": {"format": "davis", "root": str(root), "split": "val",
                  "reader": {"resolution": "480p"}}}
    )  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    assert run_check(cfg, out, err) == 0
    lines = [json.loads(s) for s in out.getvalue().splitlines()]
    assert_lines_match(lines[:-1], truth)
    assert lines[-1]["summary"]["videos"] == 2 and lines[-1]["summary"]["problems"] == 0
    assert (tmp_path / "out.jsonl").read_text() == out.getvalue()  # the file copy
    (root / "JPEGImages" / "480p" / "seq1" / "00000.jpg").write_bytes(b"not a jpeg")
    assert run_check(cfg, io.StringIO(), err := io.StringIO()) == 1
    assert "seq1/00000.jpg" in err.getvalue()


def test_cli_entry_point(tmp_path):
    root = tmp_path / "DAVIS"
    write_davis(root, "val", num_videos=1)
    cmd = [sys.executable, "-m", "mosam_train.data.check", "data=davis", f"data.root={root}", "data.split=val"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(s) for s in done.stdout.splitlines()]
    assert lines[0]["video"] == "seq0" and "summary" in lines[-1]
    (root / "ImageSets" / "2017" / "val.txt").unlink()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "val.txt" in done.stderr


LAYOUTS = {
    # name: (format, split, writer, reader options)
    "sav_train": ("sav", "sav_train", lambda r: write_sav_train(r, num_videos=3), {}),
    "sav_val": ("sav", "sav_val", lambda r: write_sav_val(r, "sav_val", num_videos=2), {}),
    "ytvos_train": ("ytvos", "train", lambda r: write_ytvos(r, "train"), {}),
    "ytvos_valid": ("ytvos", "valid", lambda r: write_ytvos(r, "valid"), {}),
    "mose_train": ("mose", "train", lambda r: write_mose(r, "train"), {}),
    "mose_valid": ("mose", "valid", lambda r: write_mose(r, "valid"), {}),
    "lvos_v2_train": ("lvos", "train", lambda r: write_lvos(r, version="v2"), {"version": "v2"}),
    "lvos_v1_valid": (
        "lvos",
        "valid",
        lambda r: write_lvos(r, version="v1", split="valid"),
        {"version": "v1"},
    ),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_lines_match_the_ground_truth_of_every_layout(tmp_path, layout):
    fmt, split, write, reader = LAYOUTS[layout]
    truth = write(tmp_path)
    assert_lines_match(check(fmt, tmp_path, split, **reader), truth)


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3])


def _rgb_png(p: Path) -> None:
    Image.open(p).convert("RGB").save(p)


def _set_label(p: Path, value: int) -> None:
    lbl = np.array(Image.open(p))
    lbl[:2, :2] = value
    im = Image.fromarray(lbl, mode="P")
    im.putpalette(Image.open(p).getpalette())
    im.save(p)


def _resize_rle(p: Path) -> None:
    meta = json.loads(p.read_text())
    entry = next(e for e in meta["masklet"] if e is not None and e[0] is not None)
    entry[0] = {"size": [entry[0]["size"][0] + 8, entry[0]["size"][1]], "counts": entry[0]["counts"]}  # fmt: skip
    p.write_text(json.dumps(meta))


def test_corrupted_sav_copy_lists_every_planted_problem(tmp_path):
    train = tmp_path / "train"
    write_sav_train(train, num_videos=3)
    mp4s = sorted(train.rglob("*.mp4"))
    planted = {
        mp4s[0]: _truncate,  # truncated mp4
        mp4s[1].with_name(mp4s[1].stem + "_manual.json"): _resize_rle,  # RLE size != video
        mp4s[2].with_name(mp4s[2].stem + "_manual.json"): Path.unlink,  # missing json
    }
    for path, plant in planted.items():
        plant(path)
    found = problems_of(check("sav", train, "sav_train"))
    assert {Path(p["path"]) for p in found} == set(planted), found

    val = tmp_path / "val"
    write_sav_val(val, "sav_val", num_videos=2)
    jpgs = sorted((val / "sav_val" / "JPEGImages_24fps").rglob("*.jpg"))
    pngs = sorted((val / "sav_val" / "Annotations_6fps").rglob("*.png"))
    planted = {jpgs[1]: _truncate, pngs[-1]: _rgb_png}
    for path, plant in planted.items():
        plant(path)
    found = problems_of(check("sav", val, "sav_val"))
    assert {Path(p["path"]) for p in found} == set(planted), found


def test_corrupted_ytvos_mose_lvos_copies_list_every_planted_problem(tmp_path):
    root = tmp_path / "ytvos"
    write_ytvos(root, "train")
    ann = sorted((root / "train" / "Annotations").iterdir())
    unknown_label = sorted(ann[0].glob("*.png"))[1]
    _set_label(unknown_label, 7)  # a label meta.json does not list
    missing_png = sorted(ann[1].glob("*.png"))[-1]
    missing_png.unlink()  # a JPEG without its PNG (count mismatch)
    bad_jpg = sorted((root / "train" / "JPEGImages" / ann[2].name).glob("*.jpg"))[0]
    _truncate(bad_jpg)
    found = problems_of(check("ytvos", root, "train"))
    paths = {Path(p["path"]) for p in found}
    assert len(found) == 3 and {unknown_label, bad_jpg} <= paths, found
    assert missing_png in paths or missing_png.parent in paths, found

    root = tmp_path / "mose"
    write_mose(root, "train")
    videos = sorted((root / "train" / "JPEGImages").iterdir())
    for f in videos[0].iterdir():
        f.unlink()  # an empty video
    bad_png = sorted((root / "train" / "Annotations" / videos[1].name).glob("*.png"))[2]
    bad_png.write_bytes(bad_png.read_bytes()[:40])  # truncated PNG
    found = problems_of(check("mose", root, "train"))
    assert {Path(p["path"]) for p in found} == {videos[0], bad_png}, found

    root = tmp_path / "lvos"
    write_lvos(root, version="v2")
    jpg_dir = sorted((root / "v2" / "train" / "JPEGImages").iterdir())[1]
    shutil.rmtree(jpg_dir)  # a meta entry without its frames
    found = problems_of(check("lvos", root, "train", version="v2"))
    assert [Path(p["path"]) for p in found] == [jpg_dir], found


def compose_check(tmp_path: Path, overrides: list[str]):
    """configs/check.yaml as `python -m mosam_train.data.check <overrides>` composes it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("check", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):  # resolve ${hydra:...} as the running app does
        cfg.hydra.runtime.output_dir = str(tmp_path)
        cfg.hydra.runtime.cwd = str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    return cfg


def shipped(group: str) -> list[str]:
    folder = CONFIG_DIR / "data" / group
    return sorted(p.relative_to(CONFIG_DIR / "data").with_suffix("").as_posix()
                  for p in folder.glob("*.yaml"))  # fmt: skip


# data config: (split the fixture holds, writer of that split at a root)
SHIPPED = {
    "davis": ("val", lambda r: write_davis(r, "val", num_videos=2)),
    "lvos": ("train", lambda r: write_lvos(r, version="v2", num_videos=2)),
    "mose": ("valid", lambda r: write_mose(r, "valid", num_videos=2)),
    "sav": ("sav_val", lambda r: write_sav_val(r, "sav_val", num_videos=2)),
    "ytvos": ("train", lambda r: write_ytvos(r, "train", num_videos=2)),
}


def test_every_shipped_data_config_is_covered():
    assert set(shipped("")) == {*SHIPPED, "synthetic", "synthetic_long", "mix"}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_data_configs_check_their_layout(tmp_path, name):
    """Each config exactly as shipped (its own reader options, or none) checks its layout."""
    split, write = SHIPPED[name]
    truth = write(tmp_path / "data")
    cfg = compose_check(tmp_path, [f"data={name}", f"data.root={tmp_path / 'data'}", f"data.split={split}"])  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    assert run_check(cfg, out, err) == 0, err.getvalue()
    lines = [json.loads(s) for s in out.getvalue().splitlines()]
    assert_lines_match(lines[:-1], truth)
    assert lines[-1]["summary"]["videos"] == len(truth)


def test_shipped_synthetic_config_checks_the_synthetic_set(tmp_path, small_synthetic):
    cfg = compose_check(tmp_path, ["data=synthetic", f"data.root={small_synthetic}", "data.split=val"])  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    assert run_check(cfg, out, err) == 0, err.getvalue()
    names = (small_synthetic / "ImageSets" / "2017" / "val.txt").read_text().split()
    lines = [json.loads(s) for s in out.getvalue().splitlines()]
    assert [ln["video"] for ln in lines[:-1]] == names and len(names) == 8
    assert all(ln["num_frames"] == 32 and not ln["problems"] for ln in lines[:-1])


def test_shipped_synthetic_long_config_checks_the_procedural_train_split(tmp_path):
    root = ensure_synthetic_long(
        tmp_path / "long", num_train=2, num_val=1, num_test=1, train_frames=60,
        min_frames=60, max_frames=60, progress=False, workers=1,
    )  # fmt: skip
    cfg = compose_check(tmp_path, ["data=synthetic_long", f"data.root={root}", "data.split=train"])  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    assert run_check(cfg, out, err) == 0, err.getvalue()
    lines = [json.loads(s) for s in out.getvalue().splitlines()]
    assert [ln["video"] for ln in lines[:-1]] == ["train_000000", "train_000001"]
    assert all(ln["num_frames"] == 60 and not ln["problems"] for ln in lines[:-1])


def test_shipped_mix_config_checks_each_mixed_source(tmp_path):
    roots = {k: tmp_path / k for k in ("sav", "ytvos", "mose")}
    truths = {
        "sav": write_sav_train(roots["sav"], num_videos=2),
        "ytvos": write_ytvos(roots["ytvos"], "train", num_videos=2),
        "mose": write_mose(roots["mose"], "train", num_videos=2),
    }
    roots_set = [f"data.mix.{k}.root={r}" for k, r in roots.items()]
    cfg = compose_check(tmp_path, ["data=mix", f"data.root={roots['sav']}", *roots_set])
    out, err = io.StringIO(), io.StringIO()
    assert run_check(cfg, out, err) == 0, err.getvalue()
    lines = [json.loads(s) for s in out.getvalue().splitlines()]
    assert [ln["source"] for ln in lines[:-1]] == ["sav"] * 2 + ["ytvos"] * 2 + ["mose"] * 2
    for source, truth in truths.items():
        assert_lines_match([ln for ln in lines if ln.get("source") == source], truth)
    assert lines[-1]["summary"]["videos"] == 6
    assert "sav sav_train (data.mix.sav)" in err.getvalue()  # one verdict per source


@pytest.mark.parametrize("name", shipped("tracking"))
def test_tracking_configs_are_refused_naming_the_config(tmp_path, name):
    cfg = compose_check(tmp_path, [f"data={name}"])
    with pytest.raises(ValueError, match=f"data={name} is a box-tracking benchmark") as e:
        run_check(cfg, io.StringIO(), io.StringIO())
    assert "Fix:" in str(e.value)
