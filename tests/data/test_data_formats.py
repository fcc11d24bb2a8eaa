"""The dataset-format registry: a format defined in this file and registered at run time is
read, evaluated from and written like a built-in one; unknown names and clashing
registrations are clear errors; built-in formats load their modules only when used."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from layouts.davis import write_davis
from layouts.sav import write_sav_val
from PIL import Image

from mosam_train.data import formats
from mosam_train.data.datamodule import VOSDataModule
from mosam_train.data.formats import (
    DatasetFormat,
    SubmissionLayout,
    get_format,
    read_split,
    register_format,
)
from mosam_train.data.formats.files import (
    FolderVideo,
    check_masks_have_frames,
    keep_subset,
    read_each,
    require_root,
)
from mosam_train.dataset_files import image_size, list_frames
from mosam_train.errors import DataError
from mosam_train.inference.engine import FrameResult
from mosam_train.inference.vos import FramePrediction
from mosam_train.inference.writers import make_writer

H, W = 8, 12


class ToyVideo(FolderVideo):
    """``<root>/<split>/<video>/`` holding JPEG frames and, for some of them, a palette PNG
    of object 1 under the same stem."""

    def __init__(self, folder: Path) -> None:
        self.name, self.image_dir = folder.name, folder
        frames = list_frames(folder)
        masks = list_frames(folder, (".png",))
        check_masks_have_frames(masks, frames, folder)
        self._index_files(frames, masks)
        self.height, self.width = image_size(self._image_paths[0])
        self.object_ids = (1,)

    def load_label(self, t: int) -> np.ndarray:
        return self.checked_label(t, "object 1. Fix: relabel the PNG.")


def read_toy(root, split, *, subset=None, errors=None) -> list[ToyVideo]:
    root = Path(root)
    require_root(root, "write the toy videos there")
    names = keep_subset(sorted(p.name for p in (root / split).iterdir() if p.is_dir()), subset)
    return read_each(names, lambda n: ToyVideo(root / split / n), errors)


TOY = DatasetFormat(
    name="toy_folders",
    reader=read_toy,
    submission=SubmissionLayout(frames="annotated", masks="palette", subdir="Masks", zip="always"),
    protocol="sav",
)


def write_toy(root: Path, split: str, names: list[str], annotated=(0, 2), frames: int = 3):
    rng = np.random.default_rng(0)
    for name in names:
        folder = root / split / name
        folder.mkdir(parents=True)
        for t in range(frames):
            rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            Image.fromarray(rgb).save(folder / f"{t:05d}.jpg")
            if t in annotated:
                label = np.zeros((H, W), np.uint8)
                label[2:6, 3 + t : 7 + t] = 1
                Image.fromarray(label, mode="P").save(folder / f"{t:05d}.png")


@pytest.fixture
def toy(monkeypatch) -> DatasetFormat:
    """TOY registered for this test only (the registry is restored afterwards)."""
    monkeypatch.setattr(formats.FORMATS, "registered", {})
    return register_format(TOY)


def test_a_format_registered_at_run_time_is_read_like_a_built_in_one(toy, tmp_path):
    write_toy(tmp_path, "val", ["b", "a"])
    records = read_split("toy_folders", tmp_path, "val")
    assert [r.name for r in records] == ["a", "b"]
    assert records[0].annotated_frames == (0, 2) and records[0].num_frames == 3
    assert records[0].load_masks(2)[0, 2:6, 5:9].all()
    assert all(r.protocol == "sav" for r in records)  # its entry's protocol, for scoring
    assert [r.name for r in read_split("toy_folders", tmp_path, "val", subset=["b"])] == ["b"]
    assert get_format("toy_folders") is TOY and "toy_folders" in formats.format_names()


def test_the_datamodule_evaluates_a_registered_format_from_its_test_source(toy, tmp_path):
    write_toy(tmp_path, "val", ["a"])
    write_toy(tmp_path, "test", ["c", "d"])
    dm = VOSDataModule(root=tmp_path, format="toy_folders", split="val", test_split="test")
    assert dm.test_source == {
        "format": "toy_folders",
        "root": str(tmp_path),
        "split": "test",
        "reader": {},
        "subset": None,
    }
    assert dm.val_source["split"] == "val"
    dm.setup("test")
    assert [r.name for r in dm.test_records] == ["c", "d"]


def test_the_test_source_is_data_val_when_it_names_another_source(tmp_path):
    val = {"format": "davis", "root": "/elsewhere", "reader": {"resolution": "480p"}}
    dm = VOSDataModule(root=tmp_path, format="ytvos", val=val, test_split="valid")
    assert dm.test_source["format"] == "davis" and dm.test_source["split"] == "valid"
    dm = VOSDataModule(root=tmp_path, format="ytvos", val={**val, "split": "val"})
    assert dm.test_source["split"] == dm.val_source["split"] == "val"  # its own split wins
    assert dm.test_source["root"] == "/elsewhere"


def prediction(t: int, object_ids: tuple[int, ...]) -> FramePrediction:
    logits = torch.full((len(object_ids), H, W), -10.0)
    logits[:, :, : W // 2] = 10.0
    return FramePrediction(FrameResult(t, list(object_ids), logits, torch.ones(1)), object_ids)


def test_a_registered_format_gets_the_writer_its_layout_declares(toy, tmp_path):
    write_toy(tmp_path / "data", "val", ["a"])
    (record,) = read_split("toy_folders", tmp_path / "data", "val")
    out = tmp_path / "out"
    writer = make_writer("toy_folders", out, tmp_path / "submission.zip", ground_truth=True)
    assert writer.layout == "toy_folders"
    video = writer.video(record)
    for t in range(record.num_frames):
        video.write(prediction(t, record.object_ids))
    video.close()
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == ["Masks/a/00000.png", "Masks/a/00002.png"]  # annotated frames only
    with Image.open(out / "Masks/a/00002.png") as im:
        assert im.mode == "P" and np.array(im)[0].tolist() == [1] * (W // 2) + [0] * (W // 2)
    names = zipfile.ZipFile(writer.finish([record])).namelist()  # zip="always"
    assert [n for n in names if not n.endswith("/")] == files


def test_unknown_format_names_the_known_ones(toy, tmp_path):
    for call in (
        lambda: get_format("coco"),
        lambda: read_split("coco", tmp_path, "val"),
        lambda: make_writer("coco", tmp_path, None),
    ):
        with pytest.raises(ValueError, match=r"'coco'.*davis.*toy_folders.*register_format"):
            call()


def test_a_name_is_registered_once(toy):
    assert register_format(TOY) is TOY  # the same entry again: nothing changes
    with pytest.raises(ValueError, match="'davis' is already known"):
        register_format(DatasetFormat("davis", read_toy))
    with pytest.raises(ValueError, match="'toy_folders' is already known"):
        register_format(DatasetFormat("toy_folders", read_toy))


def test_a_layout_with_an_unknown_choice_is_refused():
    with pytest.raises(ValueError, match=r"zip='sometimes'.*without_ground_truth"):
        SubmissionLayout(zip="sometimes")


def test_built_in_formats_score_with_their_entrys_protocol(tmp_path):
    write_davis(tmp_path / "davis", "val", num_videos=1)
    write_sav_val(tmp_path / "sav", "sav_val", num_videos=1)
    assert read_split("davis", tmp_path / "davis", "val")[0].protocol == "appearance"
    assert read_split("sav", tmp_path / "sav", "sav_val")[0].protocol == "sav"


def test_missing_root_and_orphan_pngs_are_named_the_same_way_everywhere(toy, tmp_path):
    with pytest.raises(DataError, match=r"Dataset root not found: .*nope\. Fix: write the toy"):
        read_split("toy_folders", tmp_path / "nope", "val")
    write_toy(tmp_path, "val", ["a"])
    (tmp_path / "val" / "a" / "00002.jpg").unlink()
    with pytest.raises(DataError, match=r"00002\.png: annotation has no matching frame") as e:
        read_split("toy_folders", tmp_path, "val")
    assert e.value.path == tmp_path / "val" / "a" / "00002.png"
    assert "Fix: add the frames or remove the stray PNGs" in str(e.value)


def test_a_format_module_is_imported_only_when_used():
    code = (
        "import sys\n"
        "from mosam_train.data.formats import get_format\n"
        "get_format('davis')\n"
        "print(sorted(m for m in sys.modules if m.startswith('mosam_train.data.formats.')))\n"
        "print('av' in sys.modules, 'decord' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "mosam_train.data.formats.davis" in out[0]
    assert all(f"mosam_train.data.formats.{m}'" not in out[0] for m in ("sav", "mp4", "ytvos"))
    assert out[1] == "False False"
