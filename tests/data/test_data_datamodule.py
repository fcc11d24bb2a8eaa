"""ClipDataset / collate / VOSDataModule: shapes, determinism, skipping bad files."""

from __future__ import annotations

import logging
import shutil

import lightning as L
import numpy as np
import pytest
import torch

from mosam_train.data import datamodule as dm_module
from mosam_train.data.datamodule import (
    ClipDataset,
    ClipSampler,
    SkipReport,
    VOSDataModule,
    collate_clips,
    per_device_batch_size,
)
from mosam_train.data.formats.davis import DavisVideo, read_davis
from mosam_train.data.synthetic import ensure_synthetic
from mosam_train.data.transforms import build_train_transform
from mosam_train.data.video import ClipSample, VideoRecord
from mosam_train.errors import DataError


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


@pytest.mark.parametrize(
    ("count", "what"), [(0, "evaluates no video"), (-2, "would leave out the split's last 2")]
)
def test_val_max_videos_must_be_null_or_positive(small_synthetic, count, what):
    fix = "; use null for the whole split or a positive count"
    with pytest.raises(ValueError, match=rf"data.val_max_videos={count} {what}.*{fix}"):
        _dm(small_synthetic, val_max_videos=count)


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


def test_clips_per_video_draws_several_clips_from_each_video_an_epoch_visits(small_synthetic):
    records = read_davis(small_synthetic, "train")
    ds = _dataset(records, seed=3, samples_per_epoch=6, clips_per_video=3)
    videos = [ds[i].video for i in range(6)]
    assert videos == [records[0].name] * 3 + [records[1].name] * 3
    assert ds[0].frame_indices != ds[1].frame_indices or not torch.equal(ds[0].frames, ds[1].frames)
    ds.set_epoch(1)  # the next epoch goes on with the next videos
    assert [ds[i].video for i in (0, 3)] == [records[2].name, records[3].name]
    with pytest.raises(ValueError, match="clips_per_video"):
        _dataset(records, clips_per_video=0)


def test_still_clips_repeat_their_first_frame_and_leave_other_draws_alone(small_synthetic):
    records = read_davis(small_synthetic, "train")
    plain = _dataset(records, seed=3, samples_per_epoch=8)
    still = _dataset(records, seed=3, samples_per_epoch=8, still_prob=1.0)
    for i in range(8):  # the clip the plain draw starts with, its first frame held
        clip = still[i].frame_indices
        assert clip == [plain[i].frame_indices[0]] * 4
        assert len(set(plain[i].frame_indices)) > 1
    mixed = _dataset(records, seed=3, samples_per_epoch=40, still_prob=0.5)
    kinds = {len(set(mixed[i].frame_indices)) == 1 for i in range(40)}
    assert kinds == {True, False}
    with pytest.raises(ValueError, match="still_prob"):
        _dataset(records, still_prob=1.5)


def test_corrupt_frame_is_skipped_and_counted(tmp_path):
    root = ensure_synthetic(
        tmp_path / "s", num_train=3, num_val=1, train_frames=16, val_frames=16,
        progress=False, workers=1,
    )  # fmt: skip
    bad = root / "JPEGImages" / "480p" / "train_0001" / "00003.jpg"
    bad.write_bytes(bad.read_bytes()[:100])
    ds = _dataset(read_davis(root, "train"), clip_len=16, max_skip=1)  # every frame
    sample = ds[1]  # scheduled video: train_0001
    assert isinstance(sample, ClipSample) and sample.video != "train_0001"
    assert sample.meta["skipped"] >= 1 and ds.skipped == sample.meta["skipped"]
    skips = sample.meta["skips"]  # for the training process to log (SkipReport)
    assert len(skips) == sample.meta["skipped"]
    assert skips[0]["path"] == str(bad) and skips[0]["video"] == "train_0001"
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
    from mosam_train.optical_flow import FarnebackFlow

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


class _Stub(VideoRecord):
    """A record with a given annotation pattern; frames/masks are blank (sampling only)."""

    def __init__(self, name, num_frames, annotated, frame_step=1):
        self.name, self.num_frames, self.frame_step = name, num_frames, frame_step
        self.annotated_frames = tuple(annotated)
        self.object_ids, self.height, self.width = (1,), 8, 8

    def load_frame(self, t):
        return np.zeros((8, 8, 3), np.uint8)

    def load_masks(self, t):
        m = np.zeros((1, 8, 8), bool)
        m[0, 2:6, 2:6] = True
        return m


class _Hiding(_Stub):
    """Three objects; object 2 is hidden on frames 10-13 of 24, the others always seen."""

    def __init__(self):
        super().__init__("hiding", 24, range(24))
        self.object_ids = (1, 2, 3)

    def load_masks(self, t):
        m = np.zeros((3, 8, 8), bool)
        m[:, 2:6, 2:6] = True
        m[1] &= not 10 <= t <= 13
        return m


def test_event_clips_hold_a_hidden_object_that_comes_back():
    record = _Hiding()
    plain = _dataset([record], clip_len=6, max_skip=3, max_objects=1, seed=1)
    ds = _dataset([record], clip_len=6, max_skip=3, max_objects=1, seed=1, event_prob=1.0)
    seen = set()
    for i in range(30):
        s = ds[i]
        assert s.object_ids == [2]  # the object that re-emerges is the chosen one
        clip = s.frame_indices
        assert clip[0] < 10 and any(10 <= t <= 13 for t in clip) and clip[-1] > 13
        seen.add(plain[i].frame_indices[0])
    assert max(seen) >= 14  # uniform draws would not all straddle the absence
    with pytest.raises(ValueError, match="event_prob"):
        _dataset([record], event_prob=-0.1)


def test_max_skip_is_in_video_frames_whatever_the_annotation_step():
    # SA-V style: every mp4 frame in the record, masks every 4th; YouTube-VOS style: the
    # record holds every 5th frame (frame_step 5), all annotated.
    sav = _Stub("sav", 400, range(0, 400, 4))
    ytvos = _Stub("ytvos", 80, range(80), frame_step=5)
    assert (sav.annotation_step(), ytvos.annotation_step()) == (4, 5)
    for max_skip, sav_gaps, ytvos_gaps in [(1, {4}, {1}), (8, {4, 8}, {1}), (20, {4, 8, 12, 16, 20}, {1, 2, 3, 4})]:  # fmt: skip
        seen = {}
        for rec in (sav, ytvos):
            ds = _dataset([rec], clip_len=8, max_skip=max_skip)
            gaps = set()
            for i in range(60):
                clip = ds[i].frame_indices
                assert all(t in rec.annotated_frames for t in clip)  # only annotated frames
                gaps |= set(np.diff(clip).tolist())
            seen[rec.name] = gaps
        assert seen == {"sav": sav_gaps, "ytvos": ytvos_gaps}, max_skip


def test_set_max_skip_reaches_persistent_workers(small_synthetic):
    dm = _dm(small_synthetic, samples_per_epoch=8, batch_size=1, num_workers=1, clip_len=4)
    dm.setup("fit")
    loader = dm.train_dataloader()
    list(loader)  # workers are up
    dm.train_dataset.set_max_skip(1)
    assert all(set(np.diff(b.frame_indices[0]).tolist()) == {1} for b in loader)
    with pytest.raises(ValueError, match="max_skip"):
        dm.train_dataset.set_max_skip(0)


def test_weights_draw_videos_with_those_probabilities():
    recs = [_Stub(f"a{i}", 10, range(10)) for i in range(2)] + [_Stub("b", 10, range(10))]
    # dataset a (2 videos) weight 1, dataset b (1 video) weight 3: b is drawn 3/4 of the time
    ds = _dataset(recs, clip_len=2, samples_per_epoch=800, weights=[0.5, 0.5, 3.0])
    names = [ds[i].video for i in range(800)]
    assert abs(names.count("b") / 800 - 0.75) < 0.05
    assert {"a0", "a1"} <= set(names)
    assert [ds[i].video for i in range(20)] == names[:20]  # still a function of the index
    with pytest.raises(ValueError, match="weights"):
        _dataset(recs, weights=[1.0, -1.0, 1.0])


def test_datamodule_mixes_datasets_by_weight(small_synthetic, tmp_path):
    other = ensure_synthetic(
        tmp_path / "other", num_train=2, num_val=1, train_frames=16, val_frames=16,
        progress=False, workers=1, seed=5,
    )  # fmt: skip
    src = dict(format="davis", split="train")
    dm = _dm(
        small_synthetic,
        samples_per_epoch=400,
        mix={"big": {**src, "root": str(small_synthetic), "weight": 1.0},
             "small": {**src, "root": str(other), "weight": 1.0, "subset": ["train_0000"]}},
    )  # fmt: skip
    dm.setup("fit")
    ds = dm.train_dataset
    assert len(ds.records) == 8 + 1
    # 1 video weighs as much as the other dataset's 8 (ClipDataset normalises the weights)
    share = {str(r.root): 0.0 for r in ds.records}
    for r, w in zip(ds.records, ds.weights, strict=True):
        share[str(r.root)] += w
    assert share == pytest.approx({str(small_synthetic): 0.5, str(other): 0.5})
    assert dm.val_records[0].root == small_synthetic  # validation stays on `root`
    dm = _dm(small_synthetic, val={"format": "davis", "root": str(other), "subset": ["val_0000"]})
    dm.setup("validate")
    dm.setup("test")
    assert [(r.root, r.name) for r in dm.val_records] == [(other, "val_0000")]
    assert [r.root for r in dm.test_records] == [other]
    with pytest.raises(ValueError, match=r"data\.mix\.bad"):
        _dm(small_synthetic, mix={"bad": {"format": "davis", "root": "x"}}).setup("fit")


def test_subsets_and_unknown_subset_names(small_synthetic):
    dm = _dm(small_synthetic, subset=["train_0002", "train_0005"], val_subset=["val_0001"])
    dm.setup("fit")
    assert [r.name for r in dm.train_dataset.records] == ["train_0002", "train_0005"]
    assert [r.name for r in dm.val_records] == ["val_0001"]
    with pytest.raises(DataError, match="not in the split"):
        _dm(small_synthetic, subset=["nope"]).setup("fit")


def test_pad_resize_keeps_aspect():
    t = build_train_transform(32, resize="pad", affine_p=0.0, hflip_p=0.0, grayscale_p=0.0)
    frames = [np.full((20, 40, 3), 200, np.uint8)] * 2
    masks = [np.ones((1, 20, 40), bool)] * 2
    _, m = t(frames, masks, seed=0)
    assert m.shape == (2, 1, 32, 32)
    assert m[:, 0, :16].all() and not m[:, 0, 16:].any()  # 40x20 -> 32x16, padded below
    with pytest.raises(ValueError, match="square"):
        build_train_transform(32, resize="crop")


def test_training_skips_broken_sav_files_in_workers(tmp_path, caplog):
    """A truncated mp4 and an RLE that disagrees with its video: each clip that would use
    them is replaced (warning + counter), in real DataLoader workers, never a crash."""
    import json

    from layouts.sav import write_sav_train

    write_sav_train(tmp_path, num_videos=3)
    mp4s = sorted(tmp_path.rglob("*.mp4"))
    mp4s[0].write_bytes(mp4s[0].read_bytes()[: mp4s[0].stat().st_size // 2])
    manual = mp4s[1].with_name(mp4s[1].stem + "_manual.json")
    meta = json.loads(manual.read_text())
    for entry in meta["masklet"]:
        for rle in entry or []:
            if rle is not None:
                rle["size"] = [rle["size"][0] + 8, rle["size"][1]]
    manual.write_text(json.dumps(meta))
    dm = VOSDataModule(
        tmp_path, format="sav", split="sav_train", val_split="sav_train", image_size=32,
        clip_len=4, max_skip=4,
        max_objects=2, batch_size=1, num_workers=1, samples_per_epoch=6,
    )  # fmt: skip
    dm.setup("fit")
    with caplog.at_level(logging.WARNING):
        batches = list(dm.train_dataloader())
    good = mp4s[2].stem
    assert len(batches) == 6 and {b.videos[0] for b in batches} == {good}
    assert sum(b.meta[0]["skipped"] for b in batches) == dm.skipped >= 4


class _Clips(torch.utils.data.Dataset):
    """Stands in for a ClipDataset: only its length and set_epoch matter to the sampler."""

    def __init__(self, n: int) -> None:
        self.n, self.epochs = n, []

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)


def test_clip_sampler_shards_one_permutation_and_resumes_mid_epoch():
    clips = _Clips(10)
    whole = list(ClipSampler(clips, seed=3, num_replicas=1, rank=0))
    assert sorted(whole) == list(range(10))
    # 2 processes: rank r takes entries r, r + 2, ... (an odd count is padded), so
    # step k of a global batch 2 sees the same two clips as one process with batch 2
    shards = [list(ClipSampler(clips, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert [len(s) for s in shards] == [5, 5]
    assert [x for pair in zip(*shards, strict=True) for x in pair] == whole
    # a new epoch is another permutation, and reaches the dataset
    sampler = ClipSampler(clips, seed=3, num_replicas=1, rank=0)
    sampler.set_epoch(1)
    assert list(sampler) != whole and clips.epochs == [1]
    # resumed after 4 clips: the rest of that epoch once, then whole epochs again
    resumed = ClipSampler(clips, seed=3, num_replicas=1, rank=0, start=4)
    assert len(resumed) == 10 and list(resumed) == whole[4:] and list(resumed) == whole


def test_global_batch_is_split_per_device_and_accumulation():
    assert per_device_batch_size(8, world_size=8, accumulate=1) == 1
    assert per_device_batch_size(8, world_size=2, accumulate=2) == 2
    assert per_device_batch_size(2, world_size=1, accumulate=1) == 2
    with pytest.raises(ValueError, match=r"data.batch_size=6 .* multiple of 4"):
        per_device_batch_size(6, world_size=2, accumulate=2)
    with pytest.raises(ValueError, match="multiple of 8"):
        per_device_batch_size(1, world_size=8, accumulate=1)


def test_train_loader_loads_the_per_device_share(small_synthetic):
    dm = _dm(small_synthetic, batch_size=4, samples_per_epoch=8)
    dm.setup("fit")

    class _Trainer:  # what train_dataloader reads of a 2-process trainer
        world_size, global_rank, accumulate_grad_batches = 2, 1, 1
        fit_loop = type("Loop", (), {"restarting": False})()

    dm.trainer = _Trainer()
    loader = dm.train_dataloader()
    assert loader.batch_size == 2 and loader.sampler.rank == 1 and len(loader) == 2


class _Sink(L.LightningModule):
    """The least a Trainer needs to pull training batches: one parameter, no model."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx):
        return self.w * batch.frames.mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_skips_in_workers_are_warned_about_in_the_training_process(
    small_synthetic, tmp_path, caplog
):
    """A broken frame met in a DataLoader worker (forkserver) is named, with its path, by a
    WARNING of the main process (where train.log's handler is), once per file and rate
    limit; the skips the limit held back are counted when the fit ends."""
    root = tmp_path / "synthetic"
    shutil.copytree(small_synthetic, root)
    bad = root / "JPEGImages" / "480p" / "train_0001" / "00003.jpg"
    bad.write_bytes(bad.read_bytes()[:100])
    dm = _dm(root, clip_len=16, max_skip=1, batch_size=1, num_workers=1, samples_per_epoch=8)
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        num_sanity_val_steps=0,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING):
        trainer.fit(_Sink(), datamodule=dm)
    named = [r for r in caplog.records if str(bad) in r.getMessage()]
    assert named and all(r.levelno == logging.WARNING for r in named)
    assert all(r.processName == "MainProcess" for r in named)
    assert dm.skipped >= 2  # train_0001 is scheduled in both epochs
    assert "skipped a training clip" in named[0].getMessage()
    assert "more training clip(s) skipped" in named[-1].getMessage()  # the rest, counted


def test_skip_report_names_each_file_then_counts_within_the_interval(caplog):
    now = [0.0]
    report = SkipReport(every_s=60.0, clock=lambda: now[0])
    a = {"video": "v1", "path": "/d/v1/00003.jpg", "message": "truncated JPEG"}
    b = {"video": "v2", "path": "/d/v2.mp4", "message": "cannot decode"}
    with caplog.at_level(logging.WARNING, logger=dm_module.__name__):
        report.report([a, b, a, a])  # each file named once, a's repeats held back
        assert [r.getMessage().split(" (video")[0] for r in caplog.records] == [
            "skipped a training clip because of /d/v1/00003.jpg",
            "skipped a training clip because of /d/v2.mp4",
        ]
        now[0] = 61.0
        report.report([a])  # the interval has passed: named again, with the count
        assert "(2 more since its last warning)" in caplog.records[-1].getMessage()
        report.report([b, b])  # b is named again, its repeat held back
        assert (
            caplog.records[-1].getMessage().startswith("skipped a training clip because of /d/v2")
        )
        report.flush()  # at the end of the fit, the held-back skips are told
        assert caplog.records[-1].levelno == logging.WARNING
        assert (
            caplog.records[-1]
            .getMessage()
            .startswith("1 more training clip(s) skipped because of /d/v2.mp4")
        )
        report.flush()
        assert len(caplog.records) == 5
