"""LVOS v1 / v2 reader: every mask against the writer's ground truth, first appearances,
and the errors that name the file when the meta file and the folders disagree."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from layouts.lvos import ATTRIBUTES, stem, valid_folder, video_name, write_lvos
from PIL import Image

from mosam_train.data.formats import read_split
from mosam_train.data.formats.lvos import LvosVideo, read_lvos
from mosam_train.data.video import VideoRecord
from mosam_train.errors import DataError


def _check_against_truth(videos, truth) -> None:
    assert [v.name for v in videos] == sorted(truth)
    for v in videos:
        gt = truth[v.name]
        assert v.num_frames == gt.num_frames
        assert list(v.annotated_frames) == gt.annotated_frames
        assert list(v.object_ids) == gt.object_ids
        assert (v.height, v.width) == (gt.height, gt.width)
        assert v.first_appearance() == gt.first_appearance
        frame = v.load_frame(v.num_frames - 1)
        assert frame.shape == (gt.height, gt.width, 3) and frame.dtype == np.uint8
        for t in v.annotated_frames:
            masks = v.load_masks(t)
            assert masks.shape == (len(gt.object_ids), gt.height, gt.width)
            assert masks.dtype == bool
            for k, oid in enumerate(v.object_ids):
                assert masks[k].sum() == gt.pixel_counts[oid][t], (v.name, oid, t)
            assert not v.load_void(t).any()


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("split", ["train", "valid"])
def test_reads_every_mask_back(tmp_path, version, split):
    truth = write_lvos(tmp_path, version=version, split=split, num_videos=4)
    videos = read_lvos(tmp_path, split, version=version)
    _check_against_truth(videos, truth)
    assert all(isinstance(v, LvosVideo) and v.frame_step == 5 for v in videos)


def test_late_object_long_absence_and_noncontiguous_ids(tmp_path):
    write_lvos(tmp_path, split="valid", num_videos=2)
    v0, v1 = read_lvos(tmp_path, "val")
    assert v0.object_ids == (2, 5) and v1.object_ids == (1, 7)
    present = np.stack([v0.load_masks(t).any(axis=(1, 2)) for t in range(v0.num_frames)])
    assert present[:, 0].tolist() == [True] * 4 + [False] * 5 + [True] * 3  # gone, then back
    assert present[:, 1].tolist() == [False] * 3 + [True] * 9  # appears mid-video
    # the meta-derived answer is the one a scan of the masks gives
    assert v0.first_appearance() == VideoRecord.first_appearance(v0) == {2: 0, 5: 3}
    assert v1.first_appearance() == VideoRecord.first_appearance(v1) == {1: 0, 7: 6}


def test_leading_unannotated_frames_are_left_out(tmp_path):
    write_lvos(tmp_path, split="train", num_videos=2)
    v1 = read_lvos(tmp_path, "train", subset=[video_name(1)])[0]
    # two JPEGs (00000001, 00000006) precede the first PNG
    assert v1.frame_name(0) == stem(2) == "00000011"
    assert v1.frame_index("00000056") == 9 and v1.num_frames == 10
    img = v1.frame_path(0)
    assert img.name == "00000011.jpg" and v1.mask_path(0).name == "00000011.png"
    with Image.open(img) as im:
        assert np.array_equal(v1.load_frame(0), np.array(im.convert("RGB")))


def test_split_folder_and_version_aliases(tmp_path):
    write_lvos(tmp_path, version="v1", split="valid", num_videos=2)
    write_lvos(tmp_path, version="v2", split="valid", num_videos=3)
    assert (tmp_path / "v1" / "valid").is_dir() and (tmp_path / "v2" / "val").is_dir()
    for version, n in (("v1", 2), ("v2", 3), (1, 2), ("V2", 3)):
        for split in ("val", "valid"):
            assert len(read_lvos(tmp_path, split, version=version)) == n
    # root may also be the version folder itself
    assert len(read_lvos(tmp_path / "v1", "valid", version="v1")) == 2
    with pytest.raises(ValueError, match="unknown LVOS version"):
        read_lvos(tmp_path, "val", version="v3")


def test_registered_reader_and_tags_from_attributes(tmp_path):
    write_lvos(tmp_path, version="v2", split="valid", num_videos=3)
    videos = read_split("lvos", tmp_path, "val", version="v2")
    assert [v.tags for v in videos] == [tuple(ATTRIBUTES[i]) for i in range(3)]


def test_frame_step_follows_names_or_option(tmp_path):
    write_lvos(tmp_path, split="train", num_videos=1, stride=1)
    (v,) = read_lvos(tmp_path, "train")
    assert v.frame_step == 1 and v.frame_name(3) == "00000004"
    assert read_lvos(tmp_path, "train", frame_step=5)[0].frame_step == 5


def test_meta_numbers_as_strings(tmp_path):
    truth = write_lvos(tmp_path, split="train", num_videos=2)
    meta_path = tmp_path / "v2" / "train" / "train_meta.json"
    meta = json.loads(meta_path.read_text())
    for entry in meta["videos"].values():
        for obj in entry["objects"].values():
            obj["frame_range"]["start"] = f"{obj['frame_range']['start']:08d}"
    meta_path.write_text(json.dumps(meta))
    _check_against_truth(read_lvos(tmp_path, "train"), truth)


def test_folder_without_meta_entry_names_meta_file(tmp_path):
    write_lvos(tmp_path, split="train", num_videos=3)
    sdir = tmp_path / "v2" / "train"
    meta_path = sdir / "train_meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["videos"][video_name(1)]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"train_meta\.json: no entry for video 'lv000001'") as e:
        read_lvos(tmp_path, "train")
    assert e.value.path == meta_path
    errors: list[DataError] = []
    videos = read_lvos(tmp_path, "train", errors=errors)
    assert [v.name for v in videos] == [video_name(0), video_name(2)]
    assert len(errors) == 1 and errors[0].path == meta_path


def test_meta_entry_without_folder_names_folder(tmp_path):
    write_lvos(tmp_path, split="valid", num_videos=2)
    sdir = tmp_path / "v2" / "val"
    shutil.rmtree(sdir / "JPEGImages" / video_name(0))
    with pytest.raises(DataError, match="lists the video") as e:
        read_lvos(tmp_path, "val")
    assert e.value.path == sdir / "JPEGImages" / video_name(0)
    shutil.rmtree(sdir / "Annotations" / video_name(1))
    errors: list[DataError] = []
    assert read_lvos(tmp_path, "val", errors=errors) == []
    assert [err.path for err in errors] == [
        sdir / "JPEGImages" / video_name(0),
        sdir / "Annotations" / video_name(1),
    ]


def test_meta_start_on_missing_frame_names_meta_file(tmp_path):
    write_lvos(tmp_path, split="train", num_videos=1)
    meta_path = tmp_path / "v2" / "train" / "train_meta.json"
    meta = json.loads(meta_path.read_text())
    meta["videos"][video_name(0)]["objects"]["5"]["frame_range"]["start"] = 17  # no such file
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"object 5 .* starts at frame 17.* no frame") as e:
        read_lvos(tmp_path, "train")
    assert e.value.path == meta_path


def test_meta_start_where_object_is_absent(tmp_path):
    write_lvos(tmp_path, split="train", num_videos=1)
    meta_path = tmp_path / "v2" / "train" / "train_meta.json"
    meta = json.loads(meta_path.read_text())
    meta["videos"][video_name(0)]["objects"]["5"]["frame_range"]["start"] = 1  # visible from 16
    meta_path.write_text(json.dumps(meta))
    (v,) = read_lvos(tmp_path, "train")  # construction reads no PNG
    with pytest.raises(DataError, match="object 5 is absent") as e:
        v.first_appearance()
    assert e.value.path.name == "00000001.png"
    (v,) = read_lvos(tmp_path, "train", trust_meta=False)
    assert v.first_appearance() == {2: 0, 5: 3}


def test_png_label_not_in_meta_names_png(tmp_path):
    write_lvos(tmp_path, split="train", num_videos=1)
    png = tmp_path / "v2" / "train" / "Annotations" / video_name(0) / stem(4)
    png = png.with_suffix(".png")
    with Image.open(png) as im:
        lbl, pal = np.array(im), im.getpalette()
    lbl[0, :3] = 9
    out = Image.fromarray(lbl)
    out.putpalette(pal)
    out.save(png)
    (v,) = read_lvos(tmp_path, "train")
    v.load_masks(3)
    with pytest.raises(DataError, match=r"00000021\.png: label\(s\) \[9\]") as e:
        v.load_masks(4)
    assert e.value.path == png


def test_png_without_jpeg_names_png(tmp_path):
    write_lvos(tmp_path, split="train", num_videos=1)
    (tmp_path / "v2" / "train" / "JPEGImages" / video_name(0) / f"{stem(5)}.jpg").unlink()
    with pytest.raises(DataError, match=r"00000026\.png: annotation has no matching frame"):
        read_lvos(tmp_path, "train")


def test_subset_list_file_and_unknown_name(tmp_path):
    write_lvos(tmp_path, split="train", num_videos=4)
    names = [video_name(3), video_name(1)]
    assert [v.name for v in read_lvos(tmp_path, "train", subset=names)] == sorted(names)
    listing = tmp_path / "subset.txt"
    listing.write_text(f"# two videos\n{video_name(2)}\n{video_name(0)}\n")
    got = read_lvos(tmp_path, "train", subset=listing)
    assert [v.name for v in got] == [video_name(0), video_name(2)]
    with pytest.raises(DataError, match="not in the split"):
        read_lvos(tmp_path, "train", subset=["nope"])


def test_missing_root_split_and_meta_say_what_to_do(tmp_path):
    with pytest.raises(DataError, match=r"github\.com/LingyiHongfd/LVOS") as e:
        read_lvos(tmp_path / "LVOS", "train")
    assert e.value.path == tmp_path / "LVOS"
    write_lvos(tmp_path, version="v1", split="train", num_videos=1)
    with pytest.raises(DataError, match=r"split 'val' not found .*splits here: \['train'\]"):
        read_lvos(tmp_path, "val", version="v1")
    with pytest.raises(DataError, match=r"LVOS v2 folder not found"):
        read_lvos(tmp_path, "train", version="v2")
    (tmp_path / "v1" / "train" / "train_meta.json").unlink()
    with pytest.raises(DataError, match=r"meta file not found.*meta jsons") as e:
        read_lvos(tmp_path, "train", version="v1")
    assert e.value.path.name == "train_meta.json"


def test_meta_next_to_split_folder_is_found(tmp_path):
    truth = write_lvos(tmp_path, version="v1", split="valid", num_videos=2)
    sdir = tmp_path / "v1" / valid_folder("v1")
    (sdir / "valid_meta.json").rename(tmp_path / "v1" / "valid_meta.json")
    _check_against_truth(read_lvos(tmp_path, "valid", version="v1"), truth)


def test_rgb_annotation_is_an_error_naming_it(tmp_path):
    write_lvos(tmp_path, split="train", num_videos=1)
    png = tmp_path / "v2" / "train" / "Annotations" / video_name(0) / f"{stem(2)}.png"
    with Image.open(png) as im:
        im.convert("RGB").save(png)
    (v,) = read_lvos(tmp_path, "train")
    with pytest.raises(DataError, match=r"00000011\.png: annotation has PIL mode 'RGB'"):
        v.load_masks(2)
