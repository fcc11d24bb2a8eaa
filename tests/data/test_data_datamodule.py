"""ClipDataset / collate / VOSDataModule: shapes, determinism, skipping bad files."""

from __future__ import annotations

import logging

import pytest
import torch

from mosam_train.data import datamodule as dm_module
from mosam_train.data.datamodule import ClipDataset, VOSDataModule, collate_clips
from mosam_train.data.errors import DataError
from mosam_train.data.formats.davis import DavisVideo, read_davis
from mosam_train.data.synthetic import ensure_synthetic
from mosam_train.data.transforms import build_train_transform
from mosam_train.data.video import ClipSample


def _dm(root, **kw) -> VOSDataModule:
    args = dict(image_size=32, clip_len=4, max_skip=3, max_objects=2, batch_size=2)
    return VOSDataModule(root, **{**args, **kw})


def test_train_batch_shapes(small_synthetic):
    dm = _dm(small_synthetic, samples_per_epoch=4)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 2
    for b in batches:
        B, T, num_obj = 2, 4, b.masks.shape[2]
        assert 1 <= num_obj <= 2
        assert b.frames.shape == (B, T, 3, 32, 32) and b.frames.dtype == torch.float32
        assert b.masks.shape == (B, T, num_obj, 32, 32) and b.masks.dtype == torch.bool
        assert b.object_valid.shape == (B, num_obj) and len(b) == B
        for i in range(B):
            k = int(b.object_valid[i].sum())
            assert len(b.object_ids[i]) == k and len(b.frame_indices[i]) == T
            assert b.masks[i, 0, :k].flatten(1).any(1).all()  # chosen objects are in frame 0
            assert not b.masks[i, :, k:].any()  # padding is empty
        assert [m["skipped"] for m in b.meta] == [0, 0]


def test_val_and_test_loaders_yield_whole_videos(small_synthetic):
    dm = _dm(small_synthetic, val_max_videos=3)
    dm.setup("validate")
    videos = list(dm.val_dataloader())
    assert [v.name for v in videos] == ["val_0000", "val_0001", "val_0002"]
    assert all(isinstance(v, DavisVideo) for v in videos) and dm.val_records[0] is videos[0]
    dm.setup("test")
    assert len(list(dm.test_dataloader())) == 8  # test split defaults to the val split


def test_setup_without_data_says_how_to_fix(tmp_path):
    dm = _dm(tmp_path / "missing")
    with pytest.raises(DataError, match=r"python -m mosam_train\.data\.synthetic"):
        dm.setup("fit")


def test_prepare_data_generates_only_when_synthetic(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(
        "mosam_train.data.synthetic.ensure_synthetic", lambda root, seed: calls.append((root, seed))
    )
    _dm(tmp_path / "real").prepare_data()
    _dm(tmp_path / "syn", synthetic=True, synthetic_seed=4).prepare_data()
    assert calls == [(tmp_path / "syn", 4)]


def _dataset(records, **kw) -> ClipDataset:
    args = dict(clip_len=4, max_skip=2, max_objects=2, transform=build_train_transform(32))
    return ClipDataset(records, **{**args, **kw})


def test_samples_depend_on_seed_epoch_index_only(small_synthetic):
    ds = _dataset(read_davis(small_synthetic, "train"), seed=3)
    a, b = ds[5], ds[5]
    assert torch.equal(a.frames, b.frames) and torch.equal(a.masks, b.masks)
    assert a.frame_indices == b.frame_indices and a.object_ids == b.object_ids
    ds.set_epoch(1)
    c = ds[5]
    assert (c.video, c.frame_indices) != (a.video, a.frame_indices)
    ds2 = _dataset(read_davis(small_synthetic, "train"), seed=3, samples_per_epoch=3)
    ds2.set_epoch(1)  # epoch offsets the video so a short epoch still visits all videos
    assert ds2[0].video == "train_0003"


def test_corrupt_frame_is_skipped_and_counted(tmp_path, caplog):
    root = ensure_synthetic(
        tmp_path / "s", num_train=3, num_val=1, train_frames=16, val_frames=16,
        progress=False, workers=1,
    )  # fmt: skip
    bad = root / "JPEGImages" / "480p" / "train_0001" / "00003.jpg"
    bad.write_bytes(bad.read_bytes()[:100])
    ds = _dataset(read_davis(root, "train"), clip_len=16, max_skip=1)  # every frame
    with caplog.at_level(logging.WARNING, logger=dm_module.__name__):
        sample = ds[1]  # scheduled video: train_0001
    assert isinstance(sample, ClipSample) and sample.video != "train_0001"
    assert sample.meta["skipped"] >= 1 and ds.skipped == sample.meta["skipped"]
    assert "train_0001/00003.jpg" in caplog.text
    ds[0], ds[2]  # the other videos are fine
    batch = collate_clips([ds[1], ds[0]])
    assert [m["skipped"] for m in batch.meta] == [sample.meta["skipped"], 0]


def test_collate_pads_objects():
    def clip(num_obj):
        return ClipSample(
            frames=torch.zeros(3, 3, 8, 8),
            masks=torch.ones(3, num_obj, 8, 8, dtype=torch.bool),
            video=f"v{num_obj}", frame_indices=[0, 1, 2], object_ids=list(range(1, num_obj + 1)),
        )  # fmt: skip

    b = collate_clips([clip(1), clip(3)])
    assert b.masks.shape == (2, 3, 3, 8, 8)
    assert b.object_valid.tolist() == [[True, False, False], [True, True, True]]
    assert b.masks[0, :, 0].all() and not b.masks[0, :, 1:].any()
    assert b.object_ids == [[1], [1, 2, 3]] and b.to("cpu").meta == b.meta


def test_persistent_worker_sees_new_epoch(small_synthetic):
    dm = _dm(small_synthetic, samples_per_epoch=2, batch_size=1, num_workers=1, seed=1)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.persistent_workers
    epochs = []
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)  # what Lightning calls at each epoch start
        epochs.append({b.meta[0]["epoch"] for b in loader})
    assert epochs == [{0}, {1}]


def test_clips_carry_flow_of_their_augmented_frames_and_their_frame_step(small_synthetic):
    from mosam_train.models.motion.flow import FarnebackFlow

    records = read_davis(small_synthetic, "train")
    for r in records:
        r.frame_step = 4  # as if annotated every 4th frame of the video
    ds = ClipDataset(
        records,
        clip_len=4,
        max_skip=1,
        max_objects=2,
        transform=build_train_transform(64),
        flow=FarnebackFlow(),
    )
    sample = ds[0]
    assert sample.meta["frame_step"] == 4
    assert sample.flows.shape == (4, 2, 64, 64)
    assert (sample.flows[0] == 0).all()
    # the flow is that of the frames as returned (after augmentation)
    expected = FarnebackFlow()(sample.frames[1:2], sample.frames[:1])
    assert torch.equal(sample.flows[1:2], expected)
    batch = collate_clips([sample, ds[1]])
    assert batch.flows.shape == (2, 4, 2, 64, 64)
