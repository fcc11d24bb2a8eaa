"""YouTube-VOS reader: records against the written truth, sparse (valid) semantics, the
all-frames mapping, and the errors of bad inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from layouts import Truth
from layouts.ytvos import write_ytvos, ytvos_plan, ytvos_truth
from PIL import Image

from mosam_train.data.formats import read_split
from mosam_train.data.formats.ytvos import YouTubeVOSVideo, read_ytvos, stem_step
from mosam_train.errors import DataError
from mosam_train.palette import voc_palette


def _check(records: list[YouTubeVOSVideo], truth: Truth) -> None:
    """Every record field and every mask's pixel count as the writer made them."""
    assert [r.name for r in records] == sorted(truth)
    for r in records:
        t = truth[r.name]
        assert r.num_frames == t.num_frames and len(r.frame_stems) == t.num_frames
        assert list(r.annotated_frames) == t.annotated_frames
        assert list(r.object_ids) == t.object_ids
        assert (r.height, r.width) == (t.height, t.width)
        assert r.first_appearance() == t.first_appearance
        for f in r.annotated_frames:
            m = r.load_masks(f)
            assert m.dtype == bool and m.shape == (len(t.object_ids), t.height, t.width)
            counts = {oid: int(m[k].sum()) for k, oid in enumerate(r.object_ids)}
            assert counts == {oid: t.pixel_counts[oid][f] for oid in t.object_ids}


def _masks_by_stem(record: YouTubeVOSVideo) -> dict[str, np.ndarray]:
    return {record.frame_name(t): record.load_masks(t) for t in record.annotated_frames}


def _write_png(path, label: np.ndarray) -> None:
    png = Image.fromarray(label.astype(np.uint8))
    png.putpalette(list(voc_palette()))
    png.save(path)


def _edit_meta(root, split, edit) -> None:
    path = root / split / "meta.json"
    meta = json.loads(path.read_text())
    edit(meta["videos"])
    path.write_text(json.dumps(meta))


def test_train_matches_truth(tmp_path):
    truth = write_ytvos(tmp_path, "train", num_videos=3)
    records = read_ytvos(tmp_path, "train")
    _check(records, truth)
    plans = {p.name: p for p in ytvos_plan("train", 3)}
    v0, v1, _ = records
    # stems are 30 fps numbers spaced by 5 and need not start at 00000
    assert v0.frame_stems == ("00010", "00015", "00020", "00025", "00030", "00035")
    assert v0.frame_name(2) == "00020" and v0.frame_index("00035") == 5
    assert v0.frame_step == 5 and v1.frame_stems[0] == "00000"
    # non-contiguous ids from meta.json, in id order
    assert v0.object_ids == (1, 3) and v1.object_ids == (2, 5)
    assert v0.categories == {1: "person", 3: "skateboard"} and v0.tags == ()
    # object 3 leaves (all-False masks) and returns; object 5 enters in frame 1
    present3 = [bool(v0.load_masks(t)[1].any()) for t in range(6)]
    assert present3 == [True, True, False, False, True, True]
    assert v1.first_appearance() == {2: 0, 5: 1}
    for r in records:  # exactly the written label maps
        for k, stem in enumerate(plans[r.name].stems):
            label = plans[r.name].label(k)
            expect = np.stack([label == oid for oid in r.object_ids])
            np.testing.assert_array_equal(r.load_masks(r.frame_index(stem)), expect)
    frame = v0.load_frame(3)
    assert frame.shape == (32, 48, 3) and frame.dtype == np.uint8
    assert v0.submission_frames() == tuple(range(6))
    assert v0.load_void(0) is None
    assert v0.source == str(tmp_path / "train" / "JPEGImages" / v0.name)
    assert [r.name for r in read_split("ytvos", tmp_path, "train")] == sorted(truth)


def test_valid_first_appearance_only(tmp_path):
    truth = write_ytvos(tmp_path, "valid", num_videos=3)
    records = read_ytvos(tmp_path, "valid")
    _check(records, truth)
    v0, v1, v2 = records
    assert not v0.dense and v0.frame_step == 5
    # object 2 enters in frame 3: its PNG labels only it, though object 1 is still there
    assert v0.object_ids == (1, 2) and v0.annotated_frames == (0, 3)
    assert v0.first_appearance() == {1: 0, 2: 3}
    m0, m3 = v0.load_masks(0), v0.load_masks(3)
    assert m0[0].any() and not m0[1].any()
    assert not m3[0].any() and m3[1].any()
    assert np.array_equal(m3[1], ytvos_plan("valid", 3)[0].label(3) == 2)
    with pytest.raises(KeyError):
        v0.load_masks(1)  # not annotated
    # a submission needs every frame from an object's first appearance on
    assert v0.submission_frames() == tuple(range(6))
    # video 1 starts at 00005; both objects on its one PNG; 2018-style categories
    assert v1.frame_name(0) == "00005" and v1.annotated_frames == (0,)
    assert v1.first_appearance() == {2: 0, 5: 0}
    assert v1.categories == {2: "dog", 5: "frisbee"}
    assert v0.categories == {1: None, 2: None}  # 2019 valid: no categories
    assert v2.object_ids == (1,)


def test_all_frames_maps_annotations_by_stem(tmp_path):
    for split in ("train", "valid"):
        truth = write_ytvos(tmp_path, split, num_videos=2, all_frames=True)
        dense = read_ytvos(tmp_path, split, all_frames=True)
        sparse = read_ytvos(tmp_path, split)
        _check(dense, truth)
        _check(sparse, ytvos_truth(ytvos_plan(split, 2)))
        for d, s in zip(dense, sparse, strict=True):
            first = int(s.frame_stems[0])
            assert d.frame_step == 1 and d.num_frames == int(s.frame_stems[-1]) - first + 3
            assert [d.frame_name(t) for t in range(3)] == [f"{first + t:05d}" for t in range(3)]
            assert [d.frame_name(t) for t in d.annotated_frames] == [
                s.frame_name(t) for t in s.annotated_frames
            ]
            assert all(t % 5 == 0 for t in d.annotated_frames)
            ds, ss = _masks_by_stem(d), _masks_by_stem(s)
            assert ds.keys() == ss.keys()
            for stem in ds:
                np.testing.assert_array_equal(ds[stem], ss[stem])
            assert [d.frame_name(t) for t in d.submission_frames()] == [
                s.frame_name(t) for t in s.submission_frames()
            ]
            assert {o: d.frame_name(t) for o, t in d.first_appearance().items()} == {
                o: s.frame_name(t) for o, t in s.first_appearance().items()
            }
            assert d.load_frame(1).shape == (32, 48, 3)  # a frame between annotations


def test_all_frames_folder_missing(tmp_path):
    write_ytvos(tmp_path, "valid", num_videos=2, all_frames=True)
    write_ytvos(tmp_path, "train", num_videos=1)
    with pytest.raises(DataError, match=r"train_all_frames/JPEGImages: not found"):
        read_ytvos(tmp_path, "train", all_frames=True)
    name = ytvos_plan("valid", 2)[1].name
    shutil.rmtree(tmp_path / "valid_all_frames" / "JPEGImages" / name)
    errors: list[DataError] = []
    assert len(read_ytvos(tmp_path, "valid", all_frames=True, errors=errors)) == 1
    assert errors[0].path == tmp_path / "valid_all_frames" / "JPEGImages" / name
    # a frame the annotations need is missing from the all-frames folder
    first = ytvos_plan("valid", 2)[0]
    (tmp_path / "valid_all_frames/JPEGImages" / first.name / f"{first.stems[3]}.jpg").unlink()
    with pytest.raises(DataError, match=r"frame\(s\) \['00015'\].*all-frames folder"):
        read_ytvos(tmp_path, "valid", all_frames=True, subset=[first.name])


def test_subset_and_folder_meta_mismatches(tmp_path):
    write_ytvos(tmp_path, "train", num_videos=3)
    a, b, c = (p.name for p in ytvos_plan("train", 3))
    assert [r.name for r in read_ytvos(tmp_path, "train", subset=[c, a])] == [a, c]
    (tmp_path / "keep.txt").write_text(f"{b}\n")
    assert [r.name for r in read_ytvos(tmp_path, "train", subset=tmp_path / "keep.txt")] == [b]
    with pytest.raises(DataError, match="not in the split"):
        read_ytvos(tmp_path, "train", subset=["nope"])
    # a folder meta.json does not list, and a listed video without its frames
    shutil.copytree(tmp_path / "train/JPEGImages" / a, tmp_path / "train/JPEGImages/0extra")
    shutil.rmtree(tmp_path / "train/JPEGImages" / b)
    with pytest.raises(DataError, match=r"0extra: video '0extra' is not listed in .*meta\.json"):
        read_ytvos(tmp_path, "train")
    errors: list[DataError] = []
    records = read_ytvos(tmp_path, "train", errors=errors)
    assert [r.name for r in records] == [a, c]
    assert [e.path for e in errors] == [
        tmp_path / "train/JPEGImages/0extra",
        tmp_path / "train/JPEGImages" / b,
    ]
    assert "frame folder of video" in str(errors[1]) and "lists the video" in str(errors[1])


def test_meta_json_missing_or_broken(tmp_path):
    write_ytvos(tmp_path, "train", num_videos=1)
    meta = tmp_path / "train" / "meta.json"
    meta.write_text("[1, 2]")
    with pytest.raises(DataError, match=r"meta\.json: cannot parse"):
        read_ytvos(tmp_path, "train")
    meta.unlink()
    with pytest.raises(DataError, match=r"train/meta\.json: meta\.json not found") as err:
        read_ytvos(tmp_path, "train")
    assert err.value.path == meta and "youtube-vos.org" in str(err.value)


def test_bad_meta_entries(tmp_path):
    write_ytvos(tmp_path, "train", num_videos=1)
    name = ytvos_plan("train", 1)[0].name
    original = (tmp_path / "train" / "meta.json").read_text()

    def check(edit, pattern):
        (tmp_path / "train" / "meta.json").write_text(original)
        _edit_meta(tmp_path, "train", edit)
        with pytest.raises(DataError, match=pattern) as err:
            read_ytvos(tmp_path, "train")
        assert err.value.path == tmp_path / "train" / "meta.json"

    check(lambda v: v[name]["objects"]["3"]["frames"].append("00100"), r"\['00100'\]")
    check(lambda v: v[name]["objects"].update({"x": {"frames": ["00010"]}}), "'x' is not")
    check(lambda v: v[name].update(objects={}), "no object listed")


def test_missing_root_and_split(tmp_path):
    with pytest.raises(DataError, match=r"youtube-vos\.org") as err:
        read_ytvos(tmp_path / "nope", "train")
    assert err.value.path == tmp_path / "nope"
    write_ytvos(tmp_path, "valid", num_videos=1)
    with pytest.raises(DataError, match=r"train/JPEGImages: not found \(splits here: \['valid'\]"):
        read_ytvos(tmp_path, "train")


def test_unknown_label_rgb_png_and_truncated_jpeg(tmp_path):
    write_ytvos(tmp_path, "train", num_videos=1)
    (v,) = read_ytvos(tmp_path, "train")
    ann = tmp_path / "train" / "Annotations" / v.name
    label = np.zeros((32, 48), np.uint8)
    label[:4, :4] = 7
    _write_png(ann / "00015.png", label)
    with pytest.raises(DataError, match=r"00015\.png: label\(s\) \[7\] are not objects") as err:
        v.load_masks(1)
    assert err.value.path == ann / "00015.png"
    Image.new("RGB", (48, 32), (128, 0, 0)).save(ann / "00020.png")
    with pytest.raises(DataError, match=r"00020\.png: annotation has PIL mode 'RGB'"):
        v.load_masks(2)
    jpg = tmp_path / "train" / "JPEGImages" / v.name / "00025.jpg"
    jpg.write_bytes(jpg.read_bytes()[:60])
    v.load_frame(2)
    with pytest.raises(DataError, match=r"00025\.jpg: cannot read image") as err:
        v.load_frame(3)
    assert err.value.path == jpg


def test_dense_split_needs_every_png(tmp_path):
    write_ytvos(tmp_path, "train", num_videos=1)
    name = ytvos_plan("train", 1)[0].name
    (tmp_path / "train" / "Annotations" / name / "00020.png").unlink()
    with pytest.raises(DataError, match=r"00020\.png: missing.*1 of 6 frames"):
        read_ytvos(tmp_path, "train")
    (tmp_path / "train" / "Annotations" / name / "00099.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"00099\.png: annotation has no matching frame"):
        read_ytvos(tmp_path, "train")


def test_sparse_split_checks_first_appearances(tmp_path):
    write_ytvos(tmp_path, "valid", num_videos=1)
    plan = ytvos_plan("valid", 1)[0]
    ann = tmp_path / "valid" / "Annotations" / plan.name
    # the PNG of object 2's first frame (meta frames[0]) does not label it
    _write_png(ann / "00015.png", np.zeros((32, 48), np.uint8))
    (v,) = read_ytvos(tmp_path, "valid")
    assert not v.load_masks(3).any()
    with pytest.raises(DataError, match=r"00015\.png: object 2 first appears in this frame"):
        v.first_appearance()
    # a PNG labelling an object before meta.json's first frame for it
    label = plan.label(0)
    label[-3:, -3:] = 2
    _write_png(ann / "00000.png", label)
    with pytest.raises(DataError, match=r"00000\.png: labels object\(s\) \[2\] before"):
        read_ytvos(tmp_path, "valid")[0].load_masks(0)
    # meta.json's first frame of an object has no PNG
    (ann / "00015.png").unlink()
    with pytest.raises(DataError, match=r"00015\.png: missing; meta\.json says object 2") as err:
        read_ytvos(tmp_path, "valid")
    assert err.value.path == ann / "00015.png"
    # a PNG where no object first appears
    _write_png(ann / "00015.png", plan.label(3))
    _write_png(ann / "00010.png", np.zeros((32, 48), np.uint8))
    with pytest.raises(DataError, match=r"00010\.png: no object first appears in this frame"):
        read_ytvos(tmp_path, "valid")


def _first_name() -> str:
    return ytvos_plan("valid", 1)[0].name


def test_meta_order_does_not_matter(tmp_path):
    truth = write_ytvos(tmp_path, "valid", num_videos=2)

    def shuffle(videos):
        for entry in videos.values():
            objects = entry["objects"]
            entry["objects"] = {k: objects[k] for k in reversed(objects)}
            for obj in objects.values():
                obj["frames"].reverse()

    _edit_meta(tmp_path, "valid", shuffle)
    first = json.loads((tmp_path / "valid/meta.json").read_text())["videos"][_first_name()]
    assert list(first["objects"]) == ["2", "1"]  # written in reverse order
    records = read_ytvos(tmp_path, "valid")
    _check(records, truth)  # ids sorted, first appearance = the earliest listed frame
    assert records[0].object_ids == (1, 2) and records[0].submission_frames() == tuple(range(6))


def test_object_never_labelled_in_train(tmp_path):
    write_ytvos(tmp_path, "train", num_videos=1)
    name = ytvos_plan("train", 1)[0].name
    _edit_meta(tmp_path, "train", lambda v: v[name]["objects"].update({"9": {"frames": ["00010"]}}))
    (v,) = read_ytvos(tmp_path, "train")
    assert v.object_ids == (1, 3, 9) and not v.load_masks(0)[2].any()
    with pytest.raises(DataError, match=r"object\(s\) \[9\] .* never labelled"):
        v.first_appearance()


def test_stem_step():
    assert stem_step(["00003"]) == 5  # one frame: the dataset's rate
    assert stem_step(["00000", "00005", "00015", "00020"]) == 5  # a gap does not change it
    assert stem_step(["00000", "00001", "00002"]) == 1
