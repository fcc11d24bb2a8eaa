"""The long synthetic test bed: layout, per-object tags and events, the absence and
re-emergence guarantees measured on the written masks, drift, look-alikes, fast motion,
procedural training videos, bad specs, the config and the contact sheet."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from mosam_train.data import synthetic_long as sl
from mosam_train.data.datamodule import ClipDataset
from mosam_train.data.formats import get_format, read_split
from mosam_train.data.formats.davis import DavisVideo
from mosam_train.data.transforms import build_train_transform
from mosam_train.errors import DataError

SMALL = dict(
    num_train=50, num_val=3, num_test=2, train_frames=64, min_frames=64, max_frames=80,
    workers=1, progress=False,
)  # fmt: skip
SPEC = sl.LongSpec(**{k: v for k, v in SMALL.items() if k not in ("workers", "progress")})


@pytest.fixture(scope="module")
def long_set(tmp_path_factory):
    return sl.ensure_synthetic_long(tmp_path_factory.mktemp("long") / "s", **SMALL)


def _videos(root, split):
    names = (root / "ImageSets" / "2017" / f"{split}.txt").read_text().split()
    return [DavisVideo(root, n) for n in names]


def _areas(video) -> np.ndarray:
    """Visible pixels [T, objects] from the written PNGs."""
    return np.stack([video.load_masks(t).sum((1, 2)) for t in range(video.num_frames)])


def test_layout_meta_tags_and_events(long_set):
    meta = json.loads((long_set / "meta.json").read_text())
    assert meta["generator_version"] == sl.GENERATOR_VERSION
    assert meta["spec"] == SPEC.as_json()
    assert not (long_set / "ImageSets" / "2017" / "train.txt").exists()  # procedural
    tags = json.loads((long_set / "tags.json").read_text())
    events = json.loads((long_set / "events.json").read_text())
    for split, count in (("val", 3), ("test", 2)):
        videos = _videos(long_set, split)
        assert len(videos) == count == meta["splits"][split]["videos"]
        for v in videos:
            assert 64 <= v.num_frames <= 80 and (v.height, v.width) == (120, 160)
            assert v.object_ids == (1, 2, 3) and len(v.annotated_frames) == v.num_frames
            assert v.load_masks(0).any(axis=(1, 2)).all()  # every object in frame 0
            assert set(tags[v.name]) == set(events[v.name]) == {"1", "2", "3"}
            for oid, evs in events[v.name].items():
                kinds = {e["kind"] for e in evs}
                assert set(tags[v.name][oid]) == kinds and kinds <= set(sl.TAGS)
    per_tag = meta["splits"]["val"]["objects_per_tag"]
    counted = {t: sum(t in o for v in _videos(long_set, "val") for o in tags[v.name].values())
               for t in sl.TAGS}  # fmt: skip
    assert per_tag == counted


def test_absences_measured_on_the_masks(long_set):
    """Every empty-mask frame lies in an absence event; absences are (nearly) empty, have a
    length in a class, start after the lead-in and are followed by visible_after frames
    that show the object; exits leave through the border."""
    events = json.loads((long_set / "events.json").read_text())
    absences = 0
    for v in _videos(long_set, "val") + _videos(long_set, "test"):
        areas = _areas(v)
        for k, oid in enumerate(v.object_ids):
            evs = [e for e in events[v.name][str(oid)] if e["kind"] in sl.ABSENCE_KINDS]
            absent = np.zeros(v.num_frames, bool)
            for e in evs:
                a, b = e["first_frame"], e["last_frame"]
                absences += 1
                assert sl.length_class(SPEC, b - a + 1) is not None, e
                assert a >= SPEC.lead_in
                after = areas[b + 1 : b + 1 + SPEC.visible_after, k]
                assert len(after) == SPEC.visible_after and (after > 0).all(), (v.name, oid, e)
                during = areas[a : b + 1, k]
                # < 10% of the whole shape, which is about the largest area seen nearby
                whole = areas[max(0, a - 30) : b + 30, k].max()
                assert (during < 0.1 * whole).all(), (v.name, oid, e, during, whole)
                assert (during == 0).any()  # the core is empty, the rest a sliver < 10%
                assert len(during) < 8 or (during == 0).mean() >= 0.5
                if e["kind"] == "exit_reentry":
                    for t in range(a, b + 1):
                        m = v.load_masks(t)[k]
                        assert not m.any() or m[[0, -1]].any() or m[:, [0, -1]].any()
                absent[a : b + 1] = True
            assert not absent[: SPEC.lead_in].any()
            assert absent[areas[:, k] == 0].all(), (v.name, oid)  # empty => in an event
    assert absences >= 10


def test_full_length_videos_spread_absences_and_drift():
    """Two full-length val videos: 120-200 frames, absences of every kind, and each object
    drifts (scale 0.5-0.67x or 1.5-2x, another texture, rotation)."""
    spec = sl.LongSpec()
    lengths, sides = set(), []
    for index in (0, 1):
        rng = np.random.default_rng([spec.seed, sl.SPLIT_CODE["val"], index])
        T = spec.frames("val", rng)
        assert 120 <= T <= 200
        video = sl.make_long_video(spec, "val", index)
        assert len(video.frames) == T
        for evs in video.events.values():
            lengths |= {sl.length_class(spec, e["last_frame"] - e["first_frame"] + 1)
                        for e in evs if e["kind"] in sl.ABSENCE_KINDS}  # fmt: skip
        _, _, _, objects, occluders = sl._sample(rng, spec, index, T)
        for obj in objects:
            s = obj.layer.scale
            assert s[0] == 1 and s.min() >= 0.5 * 0.97 and s.max() <= 2 * 1.03
            assert s[-1] >= 1.4 or s[-1] <= 1 / 1.4  # the first frame's size is stale
            first, last = obj.look.at(0).astype(float), obj.look.at(T - 1).astype(float)
            assert np.abs(first - last).mean() > 20  # another texture, another light
            assert abs(obj.layer.angle[-1] - obj.layer.angle[0]) >= 0.5 * (T - 1)
        for occ in occluders:  # about the target's size, never a giant
            assert occ.radius <= 2 * max(o.ext.max() for o in objects)
        sides += [np.sqrt((video.labels[0] == k).sum()) for k in video.tags]
    assert lengths == set(sl.LENGTH_CLASSES)
    # objects large enough for the micro model's 8x8 image embedding (128 px input): the
    # median first-frame object spans more than a 16 px token of the resized frame
    assert np.median(sides) > 24 and min(sides) > 12


def test_hold_keeps_the_draws_and_holds_the_drift():
    """The diagnostic spec (`hold`): the same video, but each held property stays at its
    first-frame value; what is not held still drifts."""
    spec = sl.LongSpec()
    held = replace(spec, hold=sl.HOLDABLE)
    partial = replace(spec, hold=("rotation",))

    def scene(s, index):
        rng = np.random.default_rng([s.seed, sl.SPLIT_CODE["val"], index])
        return sl._sample(rng, s, index, s.frames("val", rng))

    # the first val video whose camera pans (half of them do)
    index = next(i for i in range(20) if np.ptp(scene(spec, i)[1], 0).any())
    (_, off, light, objects, _), (_, off_h, light_h, objects_h, _) = (
        scene(spec, index),
        scene(held, index),
    )
    assert np.ptp(off, 0).any() and np.ptp(light) > 0
    assert not np.ptp(off_h, 0).any() and not np.ptp(light_h)
    for obj, obj_h in zip(objects, objects_h, strict=True):
        assert np.array_equal(obj.layer.pos, obj_h.layer.pos)  # the same draws
        T = len(obj.layer.pos)
        for layer in (obj_h.layer, obj_h.lookalike):
            if layer is not None:
                assert not np.ptp(layer.angle) and not np.ptp(layer.scale)
        assert np.array_equal(obj_h.look.at(0), obj_h.look.at(T - 1))
        assert not np.array_equal(obj.look.at(0), obj.look.at(T - 1))
    _, _, _, objects_p, _ = scene(partial, index)
    assert all(not np.ptp(o.layer.angle) and np.ptp(o.layer.scale) > 0.3 for o in objects_p)
    # meta.json names `hold` only when set: sets made before the option still match
    assert "hold" not in spec.as_json() and held.as_json()["hold"] == list(sl.HOLDABLE)


def test_surfaces_are_flat_colours_that_still_drift_and_textured_on_request():
    """`look="flat"` (the default): each surface one colour, an object's drifting into
    another; `look="textured"`: version 3's patterns."""
    flat = sl.LongSpec()
    assert flat.look == "flat" and flat.as_json()["look"] == "flat"
    textured = replace(flat, look="textured")
    rng = np.random.default_rng([flat.seed, sl.SPLIT_CODE["val"], 0])
    background, _, _, objects, _ = sl._sample(rng, textured, 0, textured.frames("val", rng))
    assert np.ptp(background.reshape(-1, 3), axis=0).max() > 20
    assert np.ptp(objects[0].look.a.reshape(-1, 3), axis=0).max() > 20
    rng = np.random.default_rng([flat.seed, sl.SPLIT_CODE["val"], 0])
    background, _, _, objects, occluders = sl._sample(rng, flat, 0, flat.frames("val", rng))

    def one_colour(image):
        return not np.ptp(image.reshape(-1, 3), axis=0).any()

    T = len(objects[0].layer.pos)
    assert one_colour(background) and occluders and all(one_colour(o.texture) for o in occluders)
    for obj in objects:
        first, last = obj.look.at(0), obj.look.at(T - 1)
        assert one_colour(first) and one_colour(last)
        assert np.abs(first[0, 0].astype(int) - last[0, 0]).max() > 20  # it drifts
    assert objects[0].look.a[0, 0].tolist() != objects[1].look.a[0, 0].tolist()


def test_each_split_has_fifty_event_objects_per_tag():
    """Roles follow the global object index, and every planned absence and crossing is
    checked on the rendered masks (else the video is drawn again), so these counts are
    lower bounds of the tagged objects of each written split."""
    spec = sl.LongSpec()
    for split in sl.WRITTEN_SPLITS:
        counts = Counter()
        for index in range(spec.count(split)):
            for role in sl._roles(index, spec.objects, np.random.default_rng(index)):
                counts.update(set(role["absences"]))
                counts["distractor"] += role["lookalike"]
                counts["fast_motion"] += role["fast"]
        assert min(counts[t] for t in sl.TAGS) >= 50


def test_lookalikes_cross_also_while_hidden_and_fast_motion_is_fast(long_set):
    events = json.loads((long_set / "events.json").read_text())
    seen = {"distractor": 0, "fast_motion": 0}
    for v in _videos(long_set, "val") + _videos(long_set, "test"):
        for k, oid in enumerate(v.object_ids):
            evs = events[v.name][str(oid)]
            hidden = [e for e in evs if e["kind"] in sl.ABSENCE_KINDS]
            crossings = [e for e in evs if e["kind"] == "distractor"]
            if crossings:
                seen["distractor"] += 1
                assert crossings[0]["first_frame"] > 0
                if hidden:
                    assert any(c["first_frame"] <= h["last_frame"] and h["first_frame"] <=
                               c["last_frame"] for c in crossings for h in hidden)  # fmt: skip
            for e in (e for e in evs if e["kind"] == "fast_motion"):
                seen["fast_motion"] += 1
                ys, xs = zip(*(np.argwhere(v.load_masks(t)[k]).mean(0)
                               for t in range(e["first_frame"], e["last_frame"] + 1)), strict=True)  # fmt: skip
                step = np.hypot(np.diff(xs), np.diff(ys)).mean()
                assert step > 3.5, (v.name, oid, step)
    assert seen["distractor"] and seen["fast_motion"]
    # the look-alike looks like the object: same shape and the same drifting texture
    rng = np.random.default_rng([0, 1, 0])
    _, _, _, objects, _ = sl._sample(rng, SPEC, 0, 70)
    obj = next(o for o in objects if o.lookalike is not None)
    assert obj.lookalike.label == 0 and obj.lookalike.kind == obj.layer.kind


def test_a_held_or_textured_set_reads_back_its_spec(tmp_path):
    small = {**SMALL, "num_val": 1, "num_test": 0}
    root = sl.ensure_synthetic_long(tmp_path / "held", hold=("rotation", "pan"), **small)
    assert sl.read_spec(root).hold == ("rotation", "pan")
    assert read_split("synthetic_long", root, "train")[0].spec.hold == ("rotation", "pan")
    root = sl.ensure_synthetic_long(tmp_path / "textured", look="textured", **small)
    assert sl.read_spec(root).look == "textured"


def test_deterministic_and_independent_of_split_sizes(long_set, tmp_path):
    other = sl.ensure_synthetic_long(tmp_path / "o", **{**SMALL, "num_val": 1, "num_test": 1,
                                                          "num_train": 7, "workers": 2})  # fmt: skip
    for rel in ("JPEGImages/480p/val_0000/00033.jpg", "Annotations/480p/test_0000/00021.png"):
        assert (other / rel).read_bytes() == (long_set / rel).read_bytes(), rel
    ev = json.loads((other / "events.json").read_text())
    assert ev["val_0000"] == json.loads((long_set / "events.json").read_text())["val_0000"]
    with pytest.raises(DataError, match="--force"):
        sl.ensure_synthetic_long(other, **{**SMALL, "num_val": 2})


def test_training_videos_are_procedural_and_deterministic(long_set):
    records = read_split("synthetic_long", long_set, "train")
    assert len(records) == 50 and records[3].name == "train_000003"
    assert records[3].protocol == get_format("synthetic_long").protocol
    frame, masks = records[3].load_frame(40), records[3].load_masks(40)
    assert frame.shape == (120, 160, 3) and masks.shape == (3, 120, 160)
    assert records[3].load_masks(0).any(axis=(1, 2)).all()
    sl._train_video.cache_clear()
    copy = pickle.loads(pickle.dumps(records[3]))  # as a DataLoader worker receives it
    assert np.array_equal(copy.load_frame(40), frame)
    assert not np.array_equal(records[4].load_frame(40), frame)
    # the train video does not depend on how many train videos the spec has
    bigger = sl.make_long_video(replace(SPEC, num_train=999), "train", 3)
    assert np.array_equal(bigger.labels[40][None] == np.arange(1, 4)[:, None, None], masks)
    assert len(read_split("synthetic_long", long_set, "train", subset=["train_000007"])) == 1

    def clips():
        ds = ClipDataset(records, clip_len=8, max_skip=2, max_objects=3,
                         transform=build_train_transform(64), seed=1)  # fmt: skip
        return [ds[i] for i in (0, 1)]

    first, second = clips(), clips()
    for a, b in zip(first, second, strict=True):
        assert a.video == b.video and torch.equal(a.frames, b.frames)
        assert torch.equal(a.masks, b.masks)


def test_a_spec_whose_absences_cannot_fit_is_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"train_frames=40 .* = 60\. Fix: set train_frames >= 60"):
        sl.ensure_synthetic_long(tmp_path / "bad", train_frames=40, progress=False)
    with pytest.raises(ValueError, match="min_frames=50"):
        sl.ensure_synthetic_long(tmp_path / "bad", min_frames=50, progress=False)
    with pytest.raises(ValueError, match="overlap"):
        sl.ensure_synthetic_long(tmp_path / "bad", medium=(4, 19), progress=False)
    with pytest.raises(ValueError, match=r"object_scale=2.0 must be in \(0, 1.75\]"):
        sl.ensure_synthetic_long(tmp_path / "bad", object_scale=2.0, progress=False)
    with pytest.raises(ValueError, match=r"hold=\['spin'\] names spin.*Fix: choose among"):
        sl.ensure_synthetic_long(tmp_path / "bad", hold=("spin",), progress=False)
    with pytest.raises(ValueError, match=r"look='plain' is not a look\. Fix: one of textured"):
        sl.ensure_synthetic_long(tmp_path / "bad", look="plain", progress=False)
    assert not (tmp_path / "bad").exists()  # refused before anything was written
    with pytest.raises(SystemExit, match="its max to at most 20 frames"):
        sl.main(["--root", str(tmp_path / "bad"), "--train-frames", "40"])
    with pytest.raises(DataError, match="no synthetic_long set"):
        read_split("synthetic_long", tmp_path, "train")


def test_configs_compose(compose_config, tmp_path):
    train = compose_config("train", "data=synthetic_long", out=tmp_path / "t")
    assert train.data.format == "synthetic_long" and train.data.synthetic
    assert (train.data.split, train.data.val_split, train.data.test_split) == (
        "train", "val", "test")  # fmt: skip
    evaluation = compose_config("eval", "data=synthetic_long", "ckpt=x.pt", out=tmp_path / "e")
    assert evaluation.data.test_split == "test"
    assert evaluation.data.root.endswith("synthetic_long")
    assert get_format("synthetic_long").generate is sl.ensure_synthetic_long


def test_contact_sheet(long_set, tmp_path):
    out = sl.contact_sheet(long_set, tmp_path / "sheet.png")
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] == 6 * (int(160 * 1.5) + 4)
