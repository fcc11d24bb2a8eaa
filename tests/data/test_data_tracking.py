"""LaSOT and GOT-10k readers on hand-written layouts, their error messages, and the
synthetic LaSOT-layout set."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mosam_train.data.formats.tracking import read_tracking
from mosam_train.data.synthetic import make_video
from mosam_train.data.synthetic_tracking import (
    ensure_synthetic_tracking,
    mask_box,
    sequence_name,
    target_track,
)
from mosam_train.errors import DataError
from mosam_train.inference.sources import RecordFrames


def write_frames(folder: Path, n: int, size=(24, 32), stem="{:08d}", start=1) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(n):
        img = np.full((*size, 3), 10 * t, np.uint8)
        Image.fromarray(img).save(folder / f"{stem.format(t + start)}.jpg")


def write_lasot_seq(root: Path, name: str, boxes, occ, oov, frames=None) -> Path:
    folder = root / name.rsplit("-", 1)[0] / name
    write_frames(folder / "img", len(boxes) if frames is None else frames)
    (folder / "groundtruth.txt").write_text("".join(",".join(map(str, b)) + "\n" for b in boxes))
    (folder / "full_occlusion.txt").write_text(",".join(map(str, occ)))
    (folder / "out_of_view.txt").write_text(",".join(map(str, oov)))
    return folder


BOXES = [(2, 3, 10, 8), (3, 3, 10, 8), (0, 0, 0, 0), (5, 4, 9, 9)]


@pytest.fixture
def lasot(tmp_path) -> Path:
    root = tmp_path / "LaSOT"
    write_lasot_seq(root, "cat-1", BOXES, [0, 0, 1, 0], [0, 0, 0, 0])
    write_lasot_seq(root, "cat-2", BOXES[:2], [0, 0], [0, 1])
    write_lasot_seq(root, "dog-1", BOXES[:3], [0, 0, 0], [0, 0, 0])
    (root / "testing_set.txt").write_text("cat-1\ndog-1\n")
    return root


def test_lasot_reader_reads_boxes_flags_and_frames(lasot):
    seqs = read_tracking("lasot", lasot, "test")
    assert [s.name for s in seqs] == ["cat-1", "dog-1"]
    s = seqs[0]
    assert s.category == "cat" and s.num_frames == 4 and (s.height, s.width) == (24, 32)
    np.testing.assert_array_equal(s.gt, BOXES)
    np.testing.assert_array_equal(s.init_box, BOXES[0])
    np.testing.assert_array_equal(s.absent, [False, False, True, False])
    assert s.frame_name(3) == "00000004" and s.load_frame(3)[0, 0, 0] == 30
    # streamed into the engine like any video
    frames = RecordFrames(s, 64)
    assert frames.num_frames == 4 and tuple(frames.image(2).shape) == (3, 64, 64)
    every = read_tracking("lasot", lasot, "all")
    assert [x.name for x in every] == ["cat-1", "cat-2", "dog-1"]
    np.testing.assert_array_equal(every[1].absent, [False, True])  # out of view counts
    assert [x.name for x in read_tracking("lasot", lasot, "all", subset=["dog-1"])] == ["dog-1"]


def test_lasot_uses_as_many_frames_as_boxes(tmp_path):
    write_lasot_seq(tmp_path, "a-1", BOXES[:2], [0, 0], [0, 0], frames=3)
    (s,) = read_tracking("lasot", tmp_path, "all")
    assert s.num_frames == 2


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda f: (f / "groundtruth.txt").write_text("1,2,3\n"), "expected 4 numbers"),
        (lambda f: (f / "groundtruth.txt").write_text("1,2,x,4\n"), "expected 4 numbers"),
        (lambda f: (f / "full_occlusion.txt").write_text("0,0"), "2 values for 4 frames"),
        (lambda f: (f / "out_of_view.txt").write_text("0,2,0,0"), "values other than 0/1"),
        (lambda f: (f / "out_of_view.txt").unlink(), "cannot read"),
        (lambda f: (f / "groundtruth.txt").write_text("1,2,0,4\n" * 4), "first-frame box"),
        (lambda f: (f / "groundtruth.txt").write_text("90,2,5,4\n" * 4), "outside the 32x24"),
        (lambda f: (f / "img" / "00000004.jpg").unlink(), "3 frames but"),
    ],
)
def test_lasot_errors_name_the_file_and_the_fix(lasot, break_it, message):
    folder = lasot / "cat" / "cat-1"
    break_it(folder)
    with pytest.raises(DataError, match=message) as e:
        read_tracking("lasot", lasot, "test")
    assert "cat-1" in str(e.value) and "Fix" in str(e.value)


def test_lasot_missing_split_list_explains(lasot):
    (lasot / "testing_set.txt").unlink()
    with pytest.raises(DataError, match=r"testing_set\.txt: missing.*data\.split=all"):
        read_tracking("lasot", lasot, "test")
    with pytest.raises(DataError, match="LaSOT root not found"):
        read_tracking("lasot", lasot / "nope", "test")


def write_got_seq(split_dir: Path, name: str, boxes, cover=None, frames=None) -> None:
    folder = split_dir / name
    write_frames(folder, frames or len(boxes))
    (folder / "groundtruth.txt").write_text("".join(",".join(map(str, b)) + "\n" for b in boxes))
    if cover is not None:
        (folder / "cover.label").write_text("".join(f"{c}\n" for c in cover))
        (folder / "absence.label").write_text("".join(f"{int(c == 0)}\n" for c in cover))


def test_got10k_reader_val_and_test(tmp_path):
    write_got_seq(tmp_path / "val", "GOT-10k_Val_000001", BOXES, cover=[8, 3, 0, 8])
    write_got_seq(tmp_path / "val", "GOT-10k_Val_000002", BOXES[:2], cover=[8, 8])
    (tmp_path / "val" / "list.txt").write_text("GOT-10k_Val_000002\nGOT-10k_Val_000001\n")
    write_got_seq(tmp_path / "test", "GOT-10k_Test_000001", BOXES[:1], frames=5)
    val = read_tracking("got10k", tmp_path, "val")
    assert [s.name for s in val] == ["GOT-10k_Val_000002", "GOT-10k_Val_000001"]
    s = val[1]
    assert s.has_gt and s.num_frames == 4 and s.frame_name(0) == "00000001"
    np.testing.assert_array_equal(s.cover, [8, 3, 0, 8])
    np.testing.assert_array_equal(s.absent, [False, False, True, False])
    (t,) = read_tracking("got10k", tmp_path, "test")  # no list.txt: the folders
    assert not t.has_gt and t.num_frames == 5
    np.testing.assert_array_equal(t.init_box, BOXES[0])


def test_got10k_errors(tmp_path):
    write_got_seq(tmp_path / "val", "a", BOXES[:3], cover=[8, 8, 8], frames=4)
    with pytest.raises(DataError, match="3 boxes for 4 frames"):
        read_tracking("got10k", tmp_path, "val")
    write_got_seq(tmp_path / "val2", "a", BOXES)
    with pytest.raises(DataError, match=r"cover\.label: cannot read"):
        read_tracking("got10k", tmp_path, "val2")
    with pytest.raises(DataError, match="split folder not found"):
        read_tracking("got10k", tmp_path, "train")


# -------------------------------------------------------------------------- synthetic


@pytest.fixture(scope="module")
def synthetic_lasot(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trk") / "synthetic_lasot"
    return ensure_synthetic_tracking(root, num_sequences=4, num_frames=16)


def test_synthetic_lasot_is_the_synthetic_videos_with_flags_from_the_masks(synthetic_lasot):
    seqs = read_tracking("lasot", synthetic_lasot, "test")
    assert [s.name for s in seqs] == [sequence_name(i)[1] for i in range(4)]
    assert [s.category for s in seqs] == ["occlusion", "exit_reentry", "distractor", "plain"]
    for i, s in enumerate(seqs):
        # the frames are those of the VOS set's val video i (same seed and stream)
        rng_a, rng_b = (np.random.default_rng([0, 1, i]) for _ in range(2))
        frames, _, _ = make_video(rng_a, 16, 120, 160, s.category if i < 3 else None)
        mine, masks, _, visible = target_track(rng_b, 16, 120, 160, s.category if i < 3 else None)
        assert all(np.array_equal(a, b) for a, b in zip(frames, mine, strict=True))
        # the box is the tight box of the visible mask; zero exactly where flagged absent
        np.testing.assert_array_equal(s.gt, [mask_box(m) for m in masks])
        np.testing.assert_array_equal(s.absent, visible == 0)
        np.testing.assert_array_equal(s.absent, (s.gt[:, 2] == 0))
        assert not s.absent[0]
        # written as the VOS set writes its frames (so the same bytes for the same video)
        jpeg = cv2.imencode(".jpg", frames[5][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
        np.testing.assert_array_equal(s.load_frame(5), cv2.imdecode(jpeg, 1)[..., ::-1])
        first = (synthetic_lasot / s.category / s.name / "first_box.txt").read_text()
        assert first.strip() == ",".join(str(int(v)) for v in s.gt[0])
    occ_dir = synthetic_lasot / "occlusion" / "occlusion-1"
    exit_dir = synthetic_lasot / "exit_reentry" / "exit_reentry-1"
    assert "1" in (occ_dir / "full_occlusion.txt").read_text()
    assert "1" in (exit_dir / "out_of_view.txt").read_text()
    assert "1" not in (exit_dir / "full_occlusion.txt").read_text()


def test_synthetic_lasot_is_reused_and_refuses_other_specs(synthetic_lasot):
    stamp = (synthetic_lasot / "meta.json").stat().st_mtime_ns
    ensure_synthetic_tracking(synthetic_lasot, num_sequences=4, num_frames=16)
    assert (synthetic_lasot / "meta.json").stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="--force"):
        ensure_synthetic_tracking(synthetic_lasot, num_sequences=5, num_frames=16)


def test_mask_box_is_pixel_inclusive():
    m = np.zeros((10, 12), bool)
    m[2:5, 3:9] = True
    assert mask_box(m) == (3, 2, 6, 3)
    assert mask_box(np.zeros((4, 4), bool)) == (0, 0, 0, 0)
