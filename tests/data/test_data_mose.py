"""MOSE reader: records against the written truth (disappearance, first-frame-only
valid), meta json ignored, and the errors of bad inputs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from layouts import Truth
from layouts.mose import mose_name, write_mose
from PIL import Image

from mosam_train.data.formats import read_split
from mosam_train.data.formats.davis import PaletteVideo
from mosam_train.data.formats.mose import MoseVideo, read_mose
from mosam_train.errors import DataError
from mosam_train.palette import voc_palette


def _check(records: list[MoseVideo], truth: Truth) -> None:
    """Every record field and every mask's pixel count as the writer made them."""
    assert [r.name for r in records] == sorted(truth)
    for r in records:
        t = truth[r.name]
        assert r.num_frames == t.num_frames and r.frame_step == 1
        assert list(r.annotated_frames) == t.annotated_frames
        assert list(r.object_ids) == t.object_ids
        assert (r.height, r.width) == (t.height, t.width)
        assert r.first_appearance() == t.first_appearance
        for f in r.annotated_frames:
            m = r.load_masks(f)
            assert m.dtype == bool and m.shape == (len(t.object_ids), t.height, t.width)
            counts = {oid: int(m[k].sum()) for k, oid in enumerate(r.object_ids)}
            assert counts == {oid: t.pixel_counts[oid][f] for oid in t.object_ids}


def _write_png(path, label: np.ndarray) -> None:
    png = Image.fromarray(label.astype(np.uint8))
    png.putpalette(list(voc_palette()))
    png.save(path)


def test_train_matches_truth(tmp_path):
    truth = write_mose(tmp_path, "train", num_videos=3)
    records = read_mose(tmp_path, "train")
    _check(records, truth)
    by_name = {r.name: r for r in records}
    v0, v1 = by_name[mose_name(0)], by_name[mose_name(1)]
    assert isinstance(v0, MoseVideo) and isinstance(v0, PaletteVideo)
    assert len(v0.name) == 8 and int(v0.name, 16) >= 0
    assert v0.frame_name(4) == "00004" and v0.tags == ()
    assert v0.source == str(tmp_path / "train" / "JPEGImages" / v0.name)
    # object 2 disappears (all-False masks) and reappears
    present = [bool(v0.load_masks(t)[1].any()) for t in range(v0.num_frames)]
    assert present == [True, True, False, False, True, True]
    assert v1.object_ids == (1, 2, 3) and not v1.load_masks(4)[0].any()
    # overlapping objects: each pixel belongs to one object, the mask equals the PNG
    label = np.array(Image.open(v1.mask_path(2)))
    masks = v1.load_masks(2)
    assert masks.sum(0).max() == 1
    for k, oid in enumerate(v1.object_ids):
        np.testing.assert_array_equal(masks[k], label == oid)
    frame = v0.load_frame(2)
    assert frame.shape == (32, 48, 3) and frame.dtype == np.uint8
    assert [r.name for r in read_split("mose", tmp_path, "train")] == sorted(truth)


def test_valid_first_frame_only(tmp_path):
    truth = write_mose(tmp_path, "valid", num_videos=3)
    records = read_mose(tmp_path, "valid")
    _check(records, truth)
    for r in records:
        assert r.annotated_frames == (0,) and r.num_frames > 1
        assert r.load_void(1) is None
        with pytest.raises(KeyError):
            r.load_masks(1)
    with pytest.raises(DataError, match=r"00001\.png: missing.*5 of 6 frames"):
        read_mose(tmp_path, "valid", dense=True)


@pytest.mark.parametrize("meta", ["ytvos", "flat", "broken"])
def test_meta_json_is_ignored(tmp_path, meta):
    truth = write_mose(tmp_path, "train", num_videos=2, meta=meta)
    assert (tmp_path / "meta_train.json").is_file()
    _check(read_mose(tmp_path, "train"), truth)


def test_subset_and_errors_list(tmp_path):
    write_mose(tmp_path, "train", num_videos=3)
    a, b, c = sorted(mose_name(i) for i in range(3))
    assert [r.name for r in read_mose(tmp_path, "train", subset=[c, a])] == [a, c]
    (tmp_path / "keep.txt").write_text(f"{b}\n")
    assert [r.name for r in read_mose(tmp_path, "train", subset=tmp_path / "keep.txt")] == [b]
    with pytest.raises(DataError, match="not in the split"):
        read_mose(tmp_path, "train", subset=["deadbeef"])
    # frames without annotations, and annotations without frames
    shutil.rmtree(tmp_path / "train" / "Annotations" / b)
    (tmp_path / "train" / "Annotations" / "ffffffff").mkdir()
    with pytest.raises(DataError, match=r"annotation folder of video"):
        read_mose(tmp_path, "train")
    errors: list[DataError] = []
    assert [r.name for r in read_mose(tmp_path, "train", errors=errors)] == [a, c]
    assert [e.path for e in errors] == [
        tmp_path / "train" / "Annotations" / b,
        tmp_path / "train" / "JPEGImages" / "ffffffff",
    ]


def test_later_label_not_in_first_frame(tmp_path):
    write_mose(tmp_path, "train", num_videos=1)
    (v,) = read_mose(tmp_path, "train")
    label = np.array(Image.open(v.mask_path(3)))
    label[:2, :2] = 4
    _write_png(v.mask_path(3), label)
    with pytest.raises(
        DataError, match=r"00003\.png: label\(s\) \[4\] are not in the first"
    ) as err:
        v.load_masks(3)
    assert err.value.path == v.mask_path(3)
    v.load_masks(2)


def test_rgb_png_and_truncated_jpeg(tmp_path):
    write_mose(tmp_path, "train", num_videos=1)
    (v,) = read_mose(tmp_path, "train")
    Image.new("RGB", (48, 32), (128, 0, 0)).save(v.mask_path(2))
    with pytest.raises(DataError, match=r"00002\.png: annotation has PIL mode 'RGB'"):
        v.load_masks(2)
    Image.new("RGB", (48, 32), (128, 0, 0)).save(v.mask_path(0))
    with pytest.raises(DataError, match=r"00000\.png: annotation has PIL mode 'RGB'"):
        read_mose(tmp_path, "train")  # the first PNG defines the objects: read up front
    jpg = v.frame_path(1)
    jpg.write_bytes(jpg.read_bytes()[:60])
    with pytest.raises(DataError, match=r"00001\.jpg: cannot read image") as err:
        v.load_frame(1)
    assert err.value.path == jpg


def test_missing_root_and_split(tmp_path):
    with pytest.raises(DataError, match=r"henghuiding\.github\.io/MOSE") as err:
        read_mose(tmp_path / "nope", "train")
    assert err.value.path == tmp_path / "nope"
    write_mose(tmp_path, "valid", num_videos=1)
    with pytest.raises(DataError, match=r"train/JPEGImages: not found \(splits here: \['valid'\]"):
        read_mose(tmp_path, "train")
    # the JPEGImages/<split> arrangement some repositories use gets a precise hint
    (tmp_path / "JPEGImages" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match=r"JPEGImages/train arrangement; move"):
        read_mose(tmp_path, "train")
