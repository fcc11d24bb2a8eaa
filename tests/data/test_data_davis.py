"""DAVIS 2017 reader: layout rules and the messages of its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mosam_train.data.formats.davis import DavisVideo, read_davis
from mosam_train.errors import DataError
from mosam_train.metrics.jf import score_record
from mosam_train.palette import voc_palette


def _label(h: int = 8, w: int = 10, **boxes: tuple[int, int, int, int]) -> np.ndarray:
    """8x10 label map; each keyword is a box (value, y0, y1, x0), 3 pixels wide."""
    lbl = np.zeros((h, w), np.uint8)
    for value, y0, y1, x0 in boxes.values():
        lbl[y0:y1, x0 : x0 + 3] = value
    return lbl


def test_reads_synthetic_set_back(small_synthetic):
    videos = read_davis(small_synthetic, "val")
    assert [v.name for v in videos] == [f"val_{i:04d}" for i in range(8)]
    v = videos[1]
    assert v.num_frames == 32 and v.annotated_frames == tuple(range(32))
    assert (v.height, v.width) == (120, 160)
    assert v.tags == ("exit_reentry",) and videos[3].tags == ()
    assert v.load_frame(5).shape == (120, 160, 3) and v.load_frame(5).dtype == np.uint8
    masks = v.load_masks(0)
    assert masks.shape == (len(v.object_ids), 120, 160) and masks.dtype == bool
    assert masks.reshape(len(v.object_ids), -1).any(1).all()  # every object in frame 0
    assert set(v.first_appearance()) == set(v.object_ids)
    with Image.open(v.mask_path(0)) as im:
        assert im.mode == "P" and im.getpalette()[:12] == list(voc_palette()[:12])


def test_noncontiguous_ids_and_void(tmp_path, davis_writer):
    first = _label(a=(2, 0, 3, 0), b=(5, 4, 7, 5), void=(255, 4, 7, 0))
    later = _label(a=(5, 0, 3, 0), void=(255, 5, 8, 6))
    davis_writer.sequence(tmp_path, "seq", [first, later])
    davis_writer.split(tmp_path, "val", ["seq"])
    (v,) = read_davis(tmp_path, "val")
    assert v.object_ids == (2, 5)  # not 1..K, and 255 is not an object
    m = v.load_masks(0)
    assert np.array_equal(m[0], first == 2) and np.array_equal(m[1], first == 5)
    assert np.array_equal(v.load_void(0), first == 255)
    assert not v.load_masks(1)[0].any() and v.load_masks(1)[1].sum() == 9
    assert v.load_void(1).sum() == 9


def test_later_label_not_in_first_frame_names_png(tmp_path, davis_writer):
    davis_writer.sequence(tmp_path, "seq", [_label(a=(1, 0, 3, 0)), _label(a=(7, 0, 3, 0))])
    davis_writer.split(tmp_path, "val", ["seq"])
    (v,) = read_davis(tmp_path, "val")
    with pytest.raises(DataError, match=r"00001\.png.*\[7\]") as err:
        v.load_masks(1)
    assert err.value.path.name == "00001.png"


def test_corrupt_jpeg_names_file(tmp_path, davis_writer):
    davis_writer.sequence(tmp_path, "seq", [_label(a=(1, 0, 3, 0))] * 3)
    davis_writer.split(tmp_path, "val", ["seq"])
    bad = tmp_path / "JPEGImages" / "480p" / "seq" / "00001.jpg"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated
    (v,) = read_davis(tmp_path, "val")
    v.load_frame(0)
    with pytest.raises(DataError, match=r"seq/00001\.jpg: cannot read image"):
        v.load_frame(1)


def test_missing_root_says_how_to_get_data(tmp_path):
    with pytest.raises(DataError) as err:
        read_davis(tmp_path / "nope", "train")
    msg = str(err.value)
    assert "python -m mosam_train.data.synthetic" in msg and str(tmp_path / "nope") in msg
    assert "davischallenge.org" in msg


def test_missing_split_lists_available(tmp_path, davis_writer):
    davis_writer.sequence(tmp_path, "seq", [_label(a=(1, 0, 3, 0))])
    davis_writer.split(tmp_path, "val", ["seq"])
    with pytest.raises(DataError, match=r"train\.txt: split file not found \(available: \['val'\]"):
        read_davis(tmp_path, "train")


def test_first_frame_only_split_allowed_when_not_dense(tmp_path, davis_writer):
    davis_writer.sequence(tmp_path, "seq", [_label(a=(1, 0, 3, 0)), None, None])
    davis_writer.split(tmp_path, "test-dev", ["seq"])
    davis_writer.split(tmp_path, "val", ["seq"])
    (v,) = read_davis(tmp_path, "test-dev")  # test* splits: sparse annotation allowed
    assert v.num_frames == 3 and v.annotated_frames == (0,)
    assert v.load_void(2) is None
    with pytest.raises(DataError, match=r"00001\.png: missing.*2 of 3 frames"):
        read_davis(tmp_path, "val")  # other splits are annotated on every frame
    assert read_davis(tmp_path, "val", dense=False)[0].annotated_frames == (0,)


def test_png_without_frame_is_a_mismatch(tmp_path, davis_writer):
    davis_writer.sequence(tmp_path, "seq", [_label(a=(1, 0, 3, 0))] * 2)
    davis_writer.split(tmp_path, "val", ["seq"])
    (tmp_path / "JPEGImages" / "480p" / "seq" / "00001.jpg").unlink()
    with pytest.raises(DataError, match=r"00001\.png: annotation has no matching frame"):
        read_davis(tmp_path, "val")


def test_mask_size_must_match_frame(tmp_path, davis_writer):
    davis_writer.sequence(tmp_path, "seq", [_label(a=(1, 0, 3, 0)), _label(a=(1, 0, 3, 0))])
    davis_writer.split(tmp_path, "val", ["seq"])
    small = Image.fromarray(np.ones((4, 5), np.uint8))
    small.putpalette(list(voc_palette()))
    small.save(tmp_path / "Annotations" / "480p" / "seq" / "00001.png")
    (v,) = read_davis(tmp_path, "val")
    with pytest.raises(DataError, match=r"00001\.png: mask is 4x5 but the frames are 8x10"):
        v.load_masks(1)


def test_rgb_mask_is_rejected(tmp_path, davis_writer):
    davis_writer.sequence(tmp_path, "seq", [_label(a=(1, 0, 3, 0))])
    davis_writer.split(tmp_path, "val", ["seq"])
    Image.new("RGB", (10, 8), (128, 0, 0)).save(tmp_path / "Annotations/480p/seq/00000.png")
    with pytest.raises(DataError, match="mode 'RGB'"):
        read_davis(tmp_path, "val")


def test_stems_and_tags(tmp_path, davis_writer):
    stems = ["00005", "00010", "00100"]
    davis_writer.sequence(tmp_path, "seq", [_label(a=(3, 0, 3, 0))] * 3, stems=stems)
    davis_writer.split(tmp_path, "val", ["seq"])
    (tmp_path / "tags.json").write_text(json.dumps({"seq": ["occlusion"]}))
    (v,) = read_davis(tmp_path, "val")
    assert isinstance(v, DavisVideo)
    assert v.frame_stems == tuple(stems) and v.frame_index("00100") == 2
    assert v.frame_path(2).name == "00100.jpg" and v.tags == ("occlusion",)
    (tmp_path / "tags.json").write_text("[1, 2]")
    with pytest.raises(DataError, match=r"tags\.json: cannot parse"):
        read_davis(tmp_path, "val")


def test_tags_per_object(tmp_path, davis_writer):
    davis_writer.sequence(tmp_path, "two", [_label(a=(1, 0, 3, 0), b=(2, 4, 7, 5))] * 3)
    davis_writer.sequence(tmp_path, "one", [_label(a=(3, 0, 3, 0))] * 3)
    davis_writer.split(tmp_path, "val", ["two", "one"])
    tags = {"two": {"2": ["occlusion", "fast_motion"], "1": []}, "one": ["distractor"]}
    (tmp_path / "tags.json").write_text(json.dumps(tags))
    two, one = read_davis(tmp_path, "val")
    assert two.object_tags == {1: (), 2: ("occlusion", "fast_motion")}
    assert two.tags == ("occlusion", "fast_motion")  # the union, for what reads video tags
    assert one.object_tags is None and one.tags == ("distractor",)  # the list form: shared
    rows = score_record(two, {t: two.load_masks(t) for t in range(3)})
    assert [(r.object_id, r.tags) for r in rows] == [(1, ()), (2, ("occlusion", "fast_motion"))]
    assert score_record(one, {t: one.load_masks(t) for t in range(3)})[0].tags == ("distractor",)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ({"two": {"x": ["occlusion"]}}, "object ids"),
        ({"two": {"1": "occlusion"}}, "object ids"),
        ({"two": "occlusion"}, "list of strings"),
        ({"two": {"7": ["occlusion"]}}, r"tags object\(s\) \[7\].*objects \[1, 2\]"),
    ],
)
def test_malformed_tags_name_the_file_and_the_fix(tmp_path, davis_writer, content, match):
    davis_writer.sequence(tmp_path, "two", [_label(a=(1, 0, 3, 0), b=(2, 4, 7, 5))] * 3)
    davis_writer.split(tmp_path, "val", ["two"])
    (tmp_path / "tags.json").write_text(json.dumps(content))
    with pytest.raises(DataError, match=match) as err:
        read_davis(tmp_path, "val")
    assert str(err.value).startswith(str(tmp_path / "tags.json")) and "Fix:" in str(err.value)
