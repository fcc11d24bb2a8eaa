"""Submission writers, file by file: names, frames, palette/binary values, zip members."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mosam_train.data.video import VideoRecord
from mosam_train.inference.engine import FrameResult
from mosam_train.inference.vos import FramePrediction
from mosam_train.inference.writers import BINARY_PALETTE, make_writer, write_zip
from mosam_train.palette import voc_palette

H, W = 2, 6
NO_OBJ = -1024.0


class Fake(VideoRecord):
    """A video with chosen frame names, objects and annotated frames (no pixels needed)."""

    def __init__(
        self,
        name: str,
        stems: list[str],
        object_ids: tuple[int, ...],
        annotated: tuple[int, ...] = (0,),
        submission: tuple[int, ...] | None = None,
        mask_file: Path | None = None,
    ) -> None:
        self.name, self.stems = name, stems
        self.num_frames, self.height, self.width = len(stems), H, W
        self.object_ids, self.annotated_frames = object_ids, annotated
        self._submission, self._mask_file = submission, mask_file

    def frame_name(self, t: int) -> str:
        return self.stems[t]

    def load_frame(self, t: int) -> np.ndarray:
        return np.zeros((H, W, 3), np.uint8)

    def load_masks(self, t: int) -> np.ndarray:
        return np.zeros((len(self.object_ids), H, W), bool)

    def mask_path(self, t: int) -> Path:
        if self._mask_file is None:
            raise KeyError(t)
        return self._mask_file


class YtFake(Fake):
    """With YouTube-VOS's list of the frames a submission must hold."""

    def submission_frames(self) -> tuple[int, ...]:
        return self._submission


def frame(t: int, ids: list[int], rows: list[list[float]]) -> FramePrediction:
    """Logits of object k are constant per column: rows[k] (W values) on both rows."""
    logits = torch.tensor(rows, dtype=torch.float32)[:, None, :].expand(len(ids), H, W)
    return FramePrediction(FrameResult(t, ids, logits.clone(), torch.ones(len(ids))), ids)


def read(path: Path) -> tuple[str, np.ndarray, list[int]]:
    with Image.open(path) as im:
        return im.mode, np.array(im), im.getpalette()


def rel(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def run_video(writer, record: Fake, frames: list[FramePrediction]) -> None:
    video = writer.video(record)
    for f in frames:
        video.write(f)
    video.close()


# Two objects 1 and 3. Columns: 0-1 only object 1; 2 both, 3 higher; 3 both, equal (tie);
# 4 both, 1 higher; 5 neither above 0.
ROWS = [[5.0, 5.0, 2.0, 4.0, 9.0, -1.0], [-5.0, -5.0, 8.0, 4.0, 1.0, -0.5]]
LABELS = [1, 1, 3, 1, 1, 0]


def test_davis_writes_every_frame_as_non_overlapping_palette_png(tmp_path):
    root = tmp_path / "predictions"
    writer = make_writer("davis", root, tmp_path / "submission.zip", ground_truth=True)
    record = Fake("seq", ["00000", "00001", "00002"], (1, 3))
    run_video(writer, record, [frame(t, [1, 3], ROWS) for t in range(3)])
    assert rel(root) == ["seq/00000.png", "seq/00001.png", "seq/00002.png"]
    for t in range(3):
        mode, values, palette = read(root / "seq" / f"0000{t}.png")
        assert mode == "P" and palette == list(voc_palette())
        assert values.tolist() == [LABELS, LABELS]
    assert writer.finish([record]) is None  # a split with ground truth: no zip
    assert not (tmp_path / "submission.zip").exists()


def test_davis_without_ground_truth_zips_video_folders_at_the_root(tmp_path):
    root = tmp_path / "predictions"
    writer = make_writer("davis", root, tmp_path / "submission.zip", ground_truth=False)
    record = Fake("seq", ["00000", "00001"], (1, 3))
    run_video(writer, record, [frame(t, [1, 3], ROWS) for t in range(2)])
    zf = zipfile.ZipFile(writer.finish([record]))
    files = [n for n in zf.namelist() if not n.endswith("/")]
    assert files == ["seq/00000.png", "seq/00001.png"]
    assert zf.read("seq/00001.png") == (root / "seq" / "00001.png").read_bytes()


def test_frames_before_the_first_prompt_are_written_as_background(tmp_path):
    root = tmp_path / "p"
    writer = make_writer("davis", root, None)
    record = Fake("late", ["00000", "00001", "00002"], (1, 3))
    run_video(writer, record, [frame(t, [1, 3], ROWS) for t in (1, 2)])  # engine starts at 1
    assert rel(root) == ["late/00000.png", "late/00001.png", "late/00002.png"]
    assert read(root / "late" / "00000.png")[1].tolist() == [[0] * W] * H
    assert read(root / "late" / "00001.png")[1].tolist() == [LABELS, LABELS]


def test_mose_zip_holds_every_frame_with_video_folders_at_the_root(tmp_path):
    root = tmp_path / "predictions"
    writer = make_writer("mose", root, tmp_path / "submission.zip", ground_truth=False)
    records = [Fake("b862b5fe", ["00000", "00001"], (1,)), Fake("1a2b3c4d", ["00000"], (2,))]
    run_video(writer, records[0], [frame(t, [1], [[1.0] * W]) for t in range(2)])
    run_video(writer, records[1], [frame(0, [2], [[-1.0, 1.0] * 3])])
    assert rel(root) == ["1a2b3c4d/00000.png", "b862b5fe/00000.png", "b862b5fe/00001.png"]
    assert read(root / "1a2b3c4d" / "00000.png")[1].tolist() == [[0, 2] * 3] * H
    zf = zipfile.ZipFile(writer.finish(records))
    assert zf.namelist() == [
        "1a2b3c4d/",
        "1a2b3c4d/00000.png",
        "b862b5fe/",
        "b862b5fe/00000.png",
        "b862b5fe/00001.png",
    ]
    assert zf.read("b862b5fe/00000.png") == (root / "b862b5fe" / "00000.png").read_bytes()


def test_ytvos_writes_only_meta_frames_under_annotations_and_zips_that_folder(tmp_path):
    root = tmp_path / "predictions"
    writer = make_writer("ytvos", root, tmp_path / "submission.zip", ground_truth=False)
    stems = [f"{s:05d}" for s in range(10, 40, 5)]  # 00010 .. 00035, 6 frames
    # meta.json frames: object 1 on 00010-00025, object 2 on 00020-00030 -> frames 0..4
    record = YtFake("3f2a1c0b5e", stems, (1, 2), annotated=(0, 2), submission=(0, 1, 2, 3, 4))
    frames = []
    for t in range(6):
        obj2 = [NO_OBJ] * W if t < 2 else [-1.0, -1.0, -1.0, 3.0, 3.0, 3.0]  # starts at t=2
        frames.append(frame(t, [1, 2], [[2.0, 2.0, 2.0, 2.0, -1.0, -1.0], obj2]))
    run_video(writer, record, frames)
    names = [f"Annotations/3f2a1c0b5e/{s}.png" for s in stems[:5]]
    assert rel(root) == names  # not 00035: no object is listed there
    assert read(root / names[1])[1].tolist() == [[1, 1, 1, 1, 0, 0]] * H  # 2 not there yet
    assert read(root / names[2])[1].tolist() == [[1, 1, 1, 2, 2, 2]] * H
    zf = zipfile.ZipFile(writer.finish([record]))
    assert [n for n in zf.namelist() if not n.endswith("/")] == names
    assert {n.split("/")[0] for n in zf.namelist()} == {"Annotations"}


def test_ytvos_layout_refuses_records_without_meta_frames(tmp_path):
    writer = make_writer("ytvos", tmp_path, None)
    with pytest.raises(TypeError, match=r"data\.format=ytvos"):
        writer.video(Fake("x", ["00000"], (1,)))


def test_lvos_writes_every_frame_with_its_names_and_the_dataset_palette(tmp_path):
    gt = tmp_path / "gt.png"
    own = [(7 * i) % 256 for i in range(768)]
    png = Image.fromarray(np.zeros((H, W), np.uint8))
    png.putpalette(own)
    png.save(gt)
    root = tmp_path / "predictions"
    writer = make_writer("lvos", root, tmp_path / "submission.zip", ground_truth=True)
    stems = ["00000001", "00000006", "00000011"]
    record = Fake("lv000000", stems, (2, 5), annotated=(0, 1, 2), mask_file=gt)
    run_video(writer, record, [frame(t, [2, 5], ROWS) for t in range(3)])
    assert rel(root) == [f"lv000000/{s}.png" for s in stems]
    mode, values, palette = read(root / "lv000000" / "00000006.png")
    assert mode == "P" and palette == own
    assert values.tolist() == [[2, 2, 5, 2, 2, 0]] * H
    assert writer.finish([record]) is None


def test_sav_writes_binary_pngs_per_object_on_annotated_frames_keeping_overlaps(tmp_path):
    root = tmp_path / "predictions"
    writer = make_writer("sav", root, tmp_path / "submission.zip", ground_truth=True)
    stems = [f"{t:05d}" for t in range(9)]
    record = Fake("sav_100000", stems, (0, 1, 1000), annotated=(0, 4, 8))
    rows = [
        [3.0, 3.0, 3.0, 3.0, -1.0, -1.0],  # object 0 (folder 000), e.g. a person
        [-1.0, 5.0, 5.0, -1.0, -1.0, -1.0],  # object 1, inside object 0
        [-1.0, -1.0, -1.0, -1.0, -1.0, 0.5],  # object 1000 (auto masklet id)
    ]
    run_video(writer, record, [frame(t, [0, 1, 1000], rows) for t in range(9)])
    expected = [f"sav_100000/{o}/{s}.png" for o in ("000", "001", "1000") for s in stems[::4]]
    assert rel(root) == sorted(expected)
    for folder, want in (
        ("000", [1, 1, 1, 1, 0, 0]),
        ("001", [0, 1, 1, 0, 0, 0]),  # overlap kept: no label map in between
        ("1000", [0, 0, 0, 0, 0, 1]),
    ):
        mode, values, palette = read(root / "sav_100000" / folder / "00004.png")
        assert mode == "P" and palette == list(BINARY_PALETTE)
        assert values.tolist() == [want] * H
    assert writer.finish([record]) is None


def test_sav_objects_that_start_later_are_empty_until_then(tmp_path):
    writer = make_writer("sav", tmp_path, None)
    record = Fake("v", ["00000", "00001"], (0, 1), annotated=(0, 1))
    frames = [frame(t, [0, 1], [[1.0] * W, [NO_OBJ if t == 0 else 1.0] * W]) for t in range(2)]
    run_video(writer, record, frames)
    assert read(tmp_path / "v" / "001" / "00000.png")[1].tolist() == [[0] * W] * H
    assert read(tmp_path / "v" / "001" / "00001.png")[1].tolist() == [[1] * W] * H


def test_unknown_format_is_an_error_naming_the_layouts():
    with pytest.raises(ValueError, match=r"'coco'.*davis"):
        make_writer("coco", "out", None)


def test_zip_is_reproducible_and_a_missing_file_is_named(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("first")
    b.write_text("second")
    z1 = write_zip(tmp_path / "one.zip", [(b, "v/b.txt"), (a, "v/a.txt")])
    z2 = write_zip(tmp_path / "two.zip", [(a, "v/a.txt"), (b, "v/b.txt")])
    assert z1.read_bytes() == z2.read_bytes()
    assert zipfile.ZipFile(z1).namelist() == ["v/", "v/a.txt", "v/b.txt"]
    with pytest.raises(FileNotFoundError, match=r"gone\.png"):
        write_zip(tmp_path / "three.zip", [(tmp_path / "gone.png", "v/gone.png")])
    assert not (tmp_path / "three.zip").exists()
