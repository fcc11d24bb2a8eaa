"""A dataset format and a tracker rule defined here, registered at run time, go through the
dataset check, eval and predict like the built-in ones: no project file names them."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mosam_train import tasks
from mosam_train.data import formats
from mosam_train.data.check import run_check
from mosam_train.data.formats import DatasetFormat, SubmissionLayout, register_format
from mosam_train.data.formats.files import (
    FolderVideo,
    check_masks_have_frames,
    keep_subset,
    read_each,
    require_root,
)
from mosam_train.dataset_files import image_size, list_frames, read_label
from mosam_train.inference.rules import TrackerRule
from mosam_train.trackers import TRACKERS, register_tracker

VIDEOS = ("val_0000", "val_0001")


# ---------------------------------------------------------------------- the toy format
class FlatVideo(FolderVideo):
    """``<root>/<split>/<video>/``: frames as ``<t>.jpg`` and masks as ``<t>.png`` side by
    side; the object ids are those of the first mask."""

    def __init__(self, folder: Path) -> None:
        self.name, self.image_dir = folder.name, folder
        frames, masks = list_frames(folder), list_frames(folder, (".png",))
        check_masks_have_frames(masks, frames, folder)
        self._index_files(frames, masks)
        self.height, self.width = image_size(self._image_paths[0])
        first = read_label(self.mask_path(self.annotated_frames[0]))
        self.object_ids = tuple(int(v) for v in np.unique(first) if v not in (0, 255))

    def load_label(self, t: int) -> np.ndarray:
        return self.checked_label(t, "ids of the first mask. Fix: relabel the PNG.")


def read_flat(root, split, *, subset=None, errors=None) -> list[FlatVideo]:
    root = Path(root)
    require_root(root, "write the flat videos there")
    names = keep_subset(sorted(p.name for p in (root / split).iterdir() if p.is_dir()), subset)
    return read_each(names, lambda n: FlatVideo(root / split / n), errors)


FLAT = DatasetFormat(
    name="test_flat",
    reader=read_flat,
    submission=SubmissionLayout(frames="annotated", masks="per_object", subdir="Out", zip="always"),
)


# ---------------------------------------------------------------------- the toy rule
class EveryThird(TrackerRule):
    """Tracked frames enter memory only every third frame; the bank counts them per object."""

    def initial_state(self, num_objects, device):
        return {"remembered": torch.zeros(num_objects, dtype=torch.long, device=device)}

    def remember(self, bank, frame_idx, entry, out, *, prompted, flow=None):
        if prompted or frame_idx % 3 == 0:
            super().remember(bank, frame_idx, entry, out, prompted=prompted, flow=flow)
            bank.state["remembered"] += 1


@pytest.fixture
def variants(monkeypatch):
    """Both registered for this test only."""
    monkeypatch.setattr(formats.FORMATS, "registered", {})
    monkeypatch.setattr(TRACKERS, "registered", {})
    register_format(FLAT)
    register_tracker("test_every_third", EveryThird)
    kept: list[tuple[int, bool]] = []  # (frame, prompted) the rule let into memory
    real = EveryThird.remember

    def remember(self, bank, frame_idx, entry, out, *, prompted, flow=None):
        before = len(bank.non_cond) + len(bank.cond)
        real(self, bank, frame_idx, entry, out, prompted=prompted, flow=flow)
        if len(bank.non_cond) + len(bank.cond) > before:
            kept.append((frame_idx, prompted))

    monkeypatch.setattr(EveryThird, "remember", remember)
    return kept


@pytest.fixture
def flat_root(small_synthetic, tmp_path) -> Path:
    """Two val videos of the synthetic set rewritten in the flat layout."""
    root = tmp_path / "flat"
    for name in VIDEOS:
        folder = root / "val" / name
        folder.mkdir(parents=True)
        for jpg in (small_synthetic / "JPEGImages" / "480p" / name).glob("*.jpg"):
            shutil.copy(jpg, folder / jpg.name)
        for png in (small_synthetic / "Annotations" / "480p" / name).glob("*.png"):
            shutil.copy(png, folder / png.name)
    return root


def flat_data(root: Path) -> list[str]:
    return ["data=davis", "data.format=test_flat", f"data.root={root}", "~data.reader"]


def test_the_dataset_check_reads_a_registered_format(variants, flat_root, compose_config, tmp_path):
    cfg = compose_config("check", *flat_data(flat_root), "data.split=val", out=tmp_path / "c")
    out = io.StringIO()
    assert run_check(cfg, out=out, err=io.StringIO()) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["video"] for line in lines[:-1]] == list(VIDEOS)
    assert lines[-1]["summary"]["problems"] == 0 and lines[-1]["summary"]["frames"] == 64


def test_eval_writes_the_registered_layout_under_the_registered_rule(
    variants, flat_root, micro_weights, compose_config, tmp_path
):
    out = tmp_path / "eval"
    cfg = compose_config(
        "eval", *flat_data(flat_root), f"ckpt={micro_weights}", "sam2=micro", "plots.videos=0",
        "tracker.name=test_every_third", out=out,
    )  # fmt: skip
    result = tasks.evaluate(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["format"] == "test_flat" and metrics["tracker"] == {"name": "test_every_third"}
    assert result["num_videos"] == 2 and 0 <= result["JF"] <= 100
    # the format's declared layout: per-object PNGs of the annotated frames under Out/, zipped
    pngs = sorted((out / "predictions" / "Out" / VIDEOS[0]).rglob("*.png"))
    assert pngs and all(p.parent.name.isdigit() and len(p.parent.name) == 3 for p in pngs)
    assert (out / "submission.zip").is_file()
    # the rule's memory: prompted frames, then tracked frames only every third
    tracked = [t for t, prompted in variants if not prompted]
    assert tracked and all(t % 3 == 0 for t in tracked) and len(tracked) < 2 * 32 / 2


def test_predict_runs_the_registered_rule(
    variants, flat_root, micro_weights, compose_config, tmp_path
):
    folder = flat_root / "val" / VIDEOS[0]
    mask = np.array(Image.open(folder / "00000.png"))
    ys, xs = np.nonzero(mask == mask[mask > 0].min())
    box = f"[{xs.min()},{ys.min()},{xs.max() - xs.min() + 1},{ys.max() - ys.min() + 1}]"
    frames = tmp_path / "frames"
    frames.mkdir()
    for jpg in sorted(folder.glob("*.jpg"))[:7]:
        shutil.copy(jpg, frames / jpg.name)
    out = tmp_path / "predict" / "out"
    cfg = compose_config(
        "predict", f"video={frames}", f"box={box}", f"ckpt={micro_weights}", "sam2=micro",
        "tracker.name=test_every_third", out=out,
    )  # fmt: skip
    assert tasks.predict(cfg)["num_frames"] == 7
    assert len(list((out / "masks").glob("*.png"))) == 7
    assert variants == [(0, True), (3, False), (6, False)]  # every third tracked frame
