"""The procedural set: layout, determinism, atomic publishing, and that it is not trivial."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mosam_train.data import synthetic
from mosam_train.data.formats.davis import read_davis
from mosam_train.data.synthetic import ensure_synthetic
from mosam_train.errors import DataError

TINY = dict(num_train=1, num_val=1, train_frames=16, val_frames=16, progress=False, workers=1)


def _copy_first_mask_j(videos) -> float:
    """Mean J of repeating each first-frame mask (DAVIS: per object, first/last frame skipped)."""
    per_object = []
    for v in videos:
        first = v.load_masks(0)
        scores = []
        for t in range(1, v.num_frames - 1):
            gt = v.load_masks(t)
            inter = (gt & first).sum((1, 2))
            union = (gt | first).sum((1, 2))
            scores.append(np.where(union == 0, 1.0, inter / np.maximum(union, 1)))
        per_object.extend(np.mean(scores, axis=0))
    return float(np.mean(per_object))


def test_layout_meta_and_tags(small_synthetic):
    meta = json.loads((small_synthetic / "meta.json").read_text())
    assert meta["spec"]["num_val"] == 8 and meta["splits"]["val"]["frames_per_video"] == 32
    tags = meta["splits"]["val"]["tags"]
    assert {t: c["videos"] for t, c in tags.items()} == {
        "occlusion": 2, "exit_reentry": 2, "distractor": 2, "plain": 2
    }  # fmt: skip
    val = read_davis(small_synthetic, "val")
    assert sum(c["objects"] for c in tags.values()) == sum(len(v.object_ids) for v in val)
    for v in val:
        assert 1 <= len(v.object_ids) <= 3
        assert v.object_ids == tuple(range(1, len(v.object_ids) + 1))
        assert v.load_masks(0).any(axis=(1, 2)).all()  # every object in the first frame
    assert len(read_davis(small_synthetic, "train")) == 8


def test_exit_reentry_object_leaves_and_returns(small_synthetic):
    for v in read_davis(small_synthetic, "val"):
        if v.tags != ("exit_reentry",):
            continue
        present = np.stack([v.load_masks(t).any(axis=(1, 2)) for t in range(v.num_frames)])
        gone = [k for k in range(present.shape[1]) if not present[:, k].all()]
        assert gone, f"{v.name}: no object leaves"
        k = gone[0]
        last_out = np.flatnonzero(~present[:, k])[-1]
        assert present[last_out + 1 :, k].any(), f"{v.name}: object {k + 1} never returns"


def test_copy_first_mask_baseline_is_low(small_synthetic):
    j = _copy_first_mask_j(read_davis(small_synthetic, "val"))
    assert j < 0.2, j  # objects really move


def test_deterministic_and_val_independent_of_train_size(small_synthetic, tmp_path):
    sizes = dict(num_train=1, num_val=2, train_frames=16, val_frames=32)
    # other train and val sizes, and a process pool (the fixture used one process)
    other = ensure_synthetic(tmp_path / "s", progress=False, workers=2, **sizes)
    for name in ("val_0000", "val_0001"):
        for sub, ext in (("Annotations", "png"), ("JPEGImages", "jpg")):
            for t in (0, 17):
                rel = f"{sub}/480p/{name}/{t:05d}.{ext}"
                assert (other / rel).read_bytes() == (small_synthetic / rel).read_bytes(), rel
    reseeded = ensure_synthetic(tmp_path / "s1", seed=1, **TINY)
    rel = "Annotations/480p/val_0000/00005.png"
    assert (reseeded / rel).read_bytes() != (small_synthetic / rel).read_bytes()


def test_existing_set_with_other_spec_is_an_error(tmp_path):
    root = ensure_synthetic(tmp_path / "s", seed=0, **TINY)
    assert ensure_synthetic(root, seed=0, **TINY) == root  # present: nothing to do
    with pytest.raises(DataError, match="--force"):
        ensure_synthetic(root, seed=3, **TINY)
    ensure_synthetic(root, seed=3, force=True, **TINY)
    assert json.loads((root / "meta.json").read_text())["spec"]["seed"] == 3
    user = tmp_path / "mine"
    user.mkdir()
    (user / "precious.txt").write_text("x")
    with pytest.raises(DataError, match="refusing to overwrite"):
        ensure_synthetic(user, force=True, **TINY)
    assert (user / "precious.txt").exists()


def test_crash_leaves_no_half_dataset(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "_write_video", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_synthetic(tmp_path / "s", **TINY)
    assert list(tmp_path.iterdir()) == []  # neither the root nor a temp folder


def test_losing_a_race_uses_the_winners_copy(tmp_path, monkeypatch):
    root = tmp_path / "s"
    real = synthetic._generate

    def racing(out, spec, progress, workers):
        winner = tmp_path / "winner"
        winner.mkdir()
        real(winner, spec, progress, workers)
        winner.replace(root)  # another process publishes first
        return real(out, spec, progress, workers)

    monkeypatch.setattr(synthetic, "_generate", racing)
    assert ensure_synthetic(root, **TINY) == root
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    assert len(read_davis(root, "val")) == 1


def test_cli(tmp_path, capsys):
    args = ["--root", str(tmp_path / "c"), "--num-train", "1", "--num-val", "1", "--workers", "1"]
    synthetic.main([*args, "--train-frames", "16", "--val-frames", "16"])
    assert (tmp_path / "c" / "ImageSets" / "2017" / "val.txt").read_text() == "val_0000\n"
    assert "exit_reentry" in capsys.readouterr().out  # the tag table
    synthetic.main([*args, "--train-frames", "16", "--val-frames", "16"])
    assert "already there" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--force"):
        synthetic.main([*args, "--train-frames", "17", "--val-frames", "16"])
    with pytest.raises(ValueError, match=">= 16 frames"):
        ensure_synthetic(tmp_path / "d", num_train=1, num_val=1, train_frames=8)
