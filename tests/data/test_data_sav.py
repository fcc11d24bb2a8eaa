"""SA-V reader, checked mask by mask against the layouts the writers in `layouts.sav` made."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from layouts.sav import (
    AUTO_ID_OFFSET,
    read_index,
    train_videos,
    val_videos,
    write_sav_train,
    write_sav_val,
)
from PIL import Image

from mosam_train.data.formats import mp4, read_split
from mosam_train.data.formats.mp4 import available_backends
from mosam_train.data.formats.sav import SavFramesVideo, SavTrainVideo, read_sav
from mosam_train.errors import DataError

BACKENDS = [
    pytest.param(b, marks=pytest.mark.skipif(b not in available_backends(), reason=f"no {b}"))
    for b in mp4.BACKENDS
]
V0, V1, V2 = "sav_000000", "sav_000001", "sav_000002"


@pytest.fixture(scope="module")
def train(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("sav") / "SA-V"
    return root, write_sav_train(root, num_videos=3)


@pytest.fixture(scope="module")
def val(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("sav") / "SA-V"
    return root, write_sav_val(root, "sav_val", num_videos=2)


@pytest.fixture
def fresh(tmp_path) -> tuple[Path, dict]:
    """A train split this test may break."""
    root = tmp_path / "SA-V"
    return root, write_sav_train(root, num_videos=3)


def by_name(records) -> dict:
    return {r.name: r for r in records}


def manual_json(root: Path, name: str) -> Path:
    return next((root / "sav_train").glob(f"*/{name}_manual.json"))


def check_against_truth(records, truth, expected_masks) -> None:
    assert [r.name for r in records] == sorted(truth)
    for r in records:
        t = truth[r.name]
        assert r.num_frames == t.num_frames
        assert list(r.annotated_frames) == t.annotated_frames
        assert list(r.object_ids) == t.object_ids
        assert (r.height, r.width) == (t.height, t.width)
        assert r.frame_step == 1
        assert r.first_appearance() == t.first_appearance
        for f in r.annotated_frames:
            masks = r.load_masks(f)
            assert masks.dtype == bool and masks.shape == (len(t.object_ids), t.height, t.width)
            np.testing.assert_array_equal(masks, expected_masks(r.name, f))
            for oid, m in zip(r.object_ids, masks, strict=True):
                assert int(m.sum()) == t.pixel_counts[oid][f], (r.name, oid, f)


# ---------------------------------------------------------------------------------------
# train


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_masks_and_frames_match_truth(train, backend):
    root, truth = train
    records = read_sav(root, "sav_train", backend=backend)
    specs = {v.name: v for v in train_videos(3)}
    check_against_truth(records, truth, lambda n, f: specs[n].masks(f))
    for r in records:
        assert isinstance(r, SavTrainVideo) and r.source.endswith(f"{r.name}.mp4")
        frames = r.load_frames(range(r.num_frames))  # every frame, not only annotated ones
        assert frames.shape == (r.num_frames, r.height, r.width, 3)
        assert [read_index(x) for x in frames] == list(range(r.num_frames))
        for t in (r.num_frames - 1, 0, 5):
            assert read_index(r.load_frame(t)) == t
            assert r.frame_name(t) == f"{t:05d}"


def test_null_means_not_annotated_and_empty_rle_means_absent(train):
    root, _ = train
    rec = by_name(read_sav(root, "sav_train"))
    v0, v1 = rec[V0], rec[V1]
    # one object null on frame 12 (sam2 drops such entries): not annotated
    assert v0.num_frames == 13 and v0.annotated_frames == (0, 4, 8)
    with pytest.raises(KeyError):
        v0.load_masks(12)
    assert read_index(v0.load_frame(12)) == 12  # the frame itself is still there
    # object 2: empty RLE on frame 4 (absent: annotated, all False), present again on 8
    k = v0.object_ids.index(2)
    assert [v0.load_masks(t)[k].any() for t in (0, 4, 8)] == [True, False, True]
    # object 3 first appears on frame 8
    assert v0.first_appearance()[3] == 8 and not v0.load_masks(4)[v0.object_ids.index(3)].any()
    # the whole entry of frame 4 is null
    assert v1.annotated_frames == (0, 8)


def test_overlapping_masks_are_independent(train):
    root, _ = train
    v0 = by_name(read_sav(root, "sav_train"))[V0]
    masks = v0.load_masks(0)
    whole, part = masks[v0.object_ids.index(0)], masks[v0.object_ids.index(1)]
    assert part.any() and (whole & part).sum() == part.sum()  # the part lies inside
    assert whole.sum() > part.sum()  # and the whole keeps its own pixels


def test_portrait_video(train):
    root, truth = train
    v1 = by_name(read_sav(root, "sav_train"))[V1]
    assert (v1.height, v1.width) == (64, 40) == (truth[V1].height, truth[V1].width)
    assert v1.load_frame(8).shape == (64, 40, 3)
    assert v1.load_masks(8).shape == (2, 64, 40)


def test_auto_masklets_get_their_own_ids(train):
    root, _ = train
    specs = {v.name: v for v in train_videos(3)}
    truth = write_sav_train(root.parent / "auto_truth", num_videos=3, read_auto=True)
    records = read_sav(root, "sav_train", auto=True)
    check_against_truth(records, truth, lambda n, f: specs[n].masks(f, read_auto=True))
    rec = by_name(records)
    assert rec[V0].object_ids == (0, 1, 2, 3, AUTO_ID_OFFSET, AUTO_ID_OFFSET + 1)
    assert rec[V1].object_ids == (0, 1)  # no _auto.json: manual masklets only
    assert rec[V2].object_ids == (0, 1, 2, AUTO_ID_OFFSET)
    # without auto=True the auto JSON is not read
    assert by_name(read_sav(root, "sav_train"))[V0].object_ids == (0, 1, 2, 3)


def test_rle_size_mismatch_names_the_json(fresh):
    root, _ = fresh
    path = manual_json(root, V2)
    data = json.loads(path.read_text())
    data["masklet"][2][1]["size"] = [64, 48]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=rf"{V2}_manual\.json: masklet entry 2 .*RLE size") as e:
        read_sav(root, "sav_train", eager=True)
    assert e.value.path == path and "Fix:" in str(e.value)
    errors: list[DataError] = []
    records = read_sav(root, "sav_train", errors=errors)  # an errors list: eager
    assert [r.name for r in records] == [V0, V1] and len(errors) == 1
    assert errors[0].video == V2 and errors[0].path == path
    # read lazily, the same error comes on first use, never a wrong mask
    lazy = by_name(read_sav(root, "sav_train"))[V2]
    with pytest.raises(DataError, match="RLE size"):
        lazy.load_masks(0)


def test_json_and_video_must_agree(fresh):
    root, _ = fresh
    path = manual_json(root, V0)
    data = json.loads(path.read_text())
    data["video_frame_count"] = 14.0  # the mp4 has 13
    path.write_text(json.dumps(data))
    v0 = by_name(read_sav(root, "sav_train", eager=True))[V0]
    assert v0.num_frames == 14 and v0.load_masks(8).any()
    with pytest.raises(DataError, match=r"sav_000000\.mp4: the video has 13 frames .* says 14"):
        v0.load_frame(0)
    data["video_frame_count"] = 9.0  # 4 masklet entries cannot fit 9 frames
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="'masklet' has 4 entries but a 9-frame video"):
        read_sav(root, "sav_train", eager=True)


def test_video_without_annotated_frame_is_an_error(fresh):
    root, _ = fresh
    path = manual_json(root, V1)
    data = json.loads(path.read_text())
    data["masklet"] = [None] * len(data["masklet"])
    path.write_text(json.dumps(data))
    errors: list[DataError] = []
    assert [r.name for r in read_sav(root, "sav_train", eager=True, errors=errors)] == [V0, V2]
    assert "no annotated frame" in str(errors[0]) and errors[0].path == path


def test_missing_manual_json_or_video(fresh):
    root, _ = fresh
    manual_json(root, V1).unlink()
    with pytest.raises(DataError, match=rf"{V1}_manual\.json: missing") as e:
        read_sav(root, "sav_train")
    assert e.value.path.name == f"{V1}_manual.json"
    errors: list[DataError] = []
    assert [r.name for r in read_sav(root, "sav_train", errors=errors)] == [V0, V2]
    assert len(errors) == 1
    next((root / "sav_train").glob(f"*/{V2}.mp4")).unlink()
    errors = []
    assert [r.name for r in read_sav(root, "sav_train", errors=errors)] == [V0]
    assert any(f"no video {V2}.mp4" in str(e) for e in errors)


def test_construction_is_lazy_eager_checks_up_front(fresh):
    root, _ = fresh
    manual_json(root, V0).write_text('{"masklet": [')  # broken
    records = by_name(read_sav(root, "sav_train"))  # lists files only: no error yet
    assert set(records) == {V0, V1, V2}
    with pytest.raises(DataError, match=rf"{V0}_manual\.json: cannot parse"):
        records[V0].num_frames  # noqa: B018
    errors: list[DataError] = []
    assert [r.name for r in read_sav(root, "sav_train", errors=errors)] == [V1, V2]
    assert len(errors) == 1 and errors[0].path.name == f"{V0}_manual.json"
    errors = []  # eager=False keeps even the check lazy
    assert len(read_sav(root, "sav_train", errors=errors, eager=False)) == 3 and not errors


def test_subset_and_registry(train):
    root, _ = train
    assert [r.name for r in read_sav(root, "sav_train", subset=[V2, V0])] == [V0, V2]
    listing = root.parent / "subset.txt"
    listing.write_text(f"{V1}\n")
    assert [r.name for r in read_split("sav", root, "sav_train", subset=listing)] == [V1]
    with pytest.raises(DataError, match="not in the split"):
        read_sav(root, "sav_train", subset=["sav_999999"])


def test_records_pickle_for_dataloader_workers(train):
    root, _ = train
    v0 = by_name(read_sav(root, "sav_train"))[V0]
    before = v0.load_masks(4)
    assert read_index(v0.load_frame(4)) == 4
    copy = pickle.loads(pickle.dumps(v0))
    mp4.close_all()
    np.testing.assert_array_equal(copy.load_masks(4), before)
    assert read_index(copy.load_frame(9)) == 9


def test_missing_root_and_split(tmp_path, train):
    with pytest.raises(DataError, match=r"Dataset root not found.*segment-anything-video"):
        read_sav(tmp_path / "nowhere", "sav_train")
    root, _ = train
    with pytest.raises(DataError, match="sav_nope: split folder not found"):
        read_sav(root, "sav_nope")


# ---------------------------------------------------------------------------------------
# val / test


def test_val_masks_and_frames_match_truth(val):
    root, truth = val
    records = read_sav(root, "sav_val")
    specs = {v.name: v for v in val_videos(2)}
    check_against_truth(records, truth, lambda n, f: specs[n].masks(f))
    for r in records:
        assert isinstance(r, SavFramesVideo)
        assert r.object_ids == (0, 1, 2)
        assert set(r.first_appearance().values()) == {0}  # all objects in frame 0
        for t in range(r.num_frames):
            assert r.frame_name(t) == f"{t:05d}"
            assert read_index(r.load_frame(t)) == t
    # the fixture really mixes 0/1 palette and 0/255 grey PNGs
    ann = root / "sav_val" / "Annotations_6fps" / records[0].name
    with Image.open(ann / "000" / "00000.png") as p, Image.open(ann / "001" / "00000.png") as g:
        assert (p.mode, int(np.array(p).max())) == ("P", 1)
        assert (g.mode, int(np.array(g).max())) == ("L", 255)
    portrait = records[1]
    assert (portrait.height, portrait.width) == (64, 48)
    # overlapping objects: object 1 is a part of object 0
    m = records[0].load_masks(0)
    assert (m[0] & m[1]).sum() == m[1].sum() > 0


def test_test_split_and_subset(tmp_path):
    root = tmp_path / "SA-V"
    truth = write_sav_val(root, "sav_test", num_videos=3)
    records = read_sav(root, "sav_test", subset=[sorted(truth)[2]])
    assert [r.name for r in records] == [sorted(truth)[2]]
    assert records[0].annotated_frames == tuple(truth[records[0].name].annotated_frames)


def test_val_objects_must_share_frames(tmp_path):
    root = tmp_path / "SA-V"
    truth = write_sav_val(root, "sav_val", num_videos=2)
    name = sorted(truth)[0]
    folder = root / "sav_val" / "Annotations_6fps" / name / "001"
    (folder / "00004.png").unlink()
    with pytest.raises(DataError, match=r"001: its PNG frames differ from 000's") as e:
        read_sav(root, "sav_val")
    assert e.value.path == folder
    errors: list[DataError] = []
    assert [r.name for r in read_sav(root, "sav_val", errors=errors)] == [sorted(truth)[1]]
    assert len(errors) == 1


def test_val_bad_files(tmp_path):
    root = tmp_path / "SA-V"
    truth = write_sav_val(root, "sav_val", num_videos=1)
    name = next(iter(truth))
    png = root / "sav_val" / "Annotations_6fps" / name / "002" / "00008.png"
    Image.new("RGB", (64, 48)).save(png)  # colours, not a binary mask
    rec = read_sav(root, "sav_val")[0]
    with pytest.raises(DataError, match=r"00008\.png: annotation has PIL mode 'RGB'"):
        rec.load_masks(8)
    (root / "sav_val" / "sav_val.txt").unlink()
    with pytest.raises(DataError, match=r"sav_val\.txt: the list of the split's videos"):
        read_sav(root, "sav_val")
