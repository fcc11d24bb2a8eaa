"""Training clips and validation videos as a LightningDataModule.

Training: `ClipDataset` draws a clip per index from a generator seeded by
(seed, epoch, index), so a sample does not depend on worker count or order, and a broken
file is skipped (counted, and warned about in the training process: `SkipReport`)
instead of crashing the epoch. Validation/test: whole
`VideoRecord`s, one per batch, for the streaming inference engine (which reads frames
lazily itself).

Batches: `batch_size` is the global batch of one optimizer step; each process loads
batch_size / (world size x gradient accumulation) clips (`per_device_batch_size`), so one
config trains the same recipe on 1 or 64 GPUs.

Epochs and resume: `ClipSampler` shards a (seed, epoch) permutation over the processes (it
is a `DistributedSampler`, so Lightning keeps it and calls its `set_epoch`, which forwards
the epoch to the dataset through shared memory for persistent workers). A fit resumed from
a mid-epoch checkpoint starts the sampler after the batches that checkpoint had trained on,
so the epoch continues instead of restarting.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mosam_train.data.formats import get_format, read_source, read_split, source_spec
from mosam_train.data.sampling import choose_objects, reemerging, sample_clip
from mosam_train.data.transforms import ClipTransform, build_eval_transform, build_train_transform
from mosam_train.data.video import ClipBatch, ClipSample, VideoRecord
from mosam_train.errors import DataError
from mosam_train.optical_flow import build_flow_provider

log = logging.getLogger(__name__)

#: draws `ClipDataset` makes for a clip with a re-emergence (`event_prob`) before it gives up
EVENT_TRIES = 20

# Lightning warns on a mid-epoch resume unless the loader has a state_dict; ClipSampler
# resumes the epoch from the restored loop position instead (see train_dataloader).
warnings.filterwarnings(
    "ignore", message="You're resuming from a checkpoint that ended before the epoch ended"
)


class ClipDataset(Dataset):
    """Clips of `clip_len` frames with up to `max_objects` objects present in frame 0.

    Index i of epoch e reads video (i + e * len(self)) % num_videos, so a
    `samples_per_epoch` smaller than the video count still visits every video over epochs;
    with `clips_per_video` c > 1, indices i of one epoch with the same i // c share a video
    (c clips from it, each its own window and augmentation): for videos that are costly
    to read or make (the procedural training videos of `data=synthetic_long`, made in the
    worker and cached there), c clips cost one video;
    with `weights` (one per record, e.g. a dataset's mixing weight over its size) the video
    is drawn with those probabilities instead. `max_skip` is in video frames and converted
    per video with `VideoRecord.annotation_step` (at least one annotated frame per step);
    `set_max_skip` changes it for all workers (the max-skip curriculum).
    Objects that the augmentation pushes out of the clip's first frame are dropped; if
    none is left the draw is retried (`max_retries`) and finally done without
    augmentation. A `DataError` makes the dataset skip to another, deterministically drawn
    video (`max_bad` times at most); `skipped` counts those across workers, and each
    sample's `meta["skipped"]` says how many it needed and `meta["skips"]` which
    (``{video, path, message}`` each), for the training process to log (`SkipReport`):
    a worker's own log records never reach that process's handlers. With a `flow` provider each clip
    carries the optical flow of its augmented frames (computed here, in the workers, where
    it overlaps the model's step); `meta["flow_seconds"]` records what it cost.
    With `still_prob`, that share of clips is their first frame repeated (no motion at all):
    a still clip asks the model only to read its memory back into the prompt's mask (the
    still-clip probes of README's "The long-video test bed").
    With `event_prob`, that share of clips is redrawn (up to `EVENT_TRIES` times) until
    one of its objects goes through an absence and comes back (`reemerging`), and that
    object is among the chosen; a video without such a clip falls back to the plain draw.
    A re-emergence is what a memory rule and a visibility signal learn from, and uniform
    clips hold fewer (on the long-video test bed 72% of 16-frame clips, a third after an
    absence of 8 frames or more: `bench.clips`). Each try reads the clip's masks.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        clip_len: int,
        max_skip: int,
        max_objects: int,
        transform: ClipTransform,
        seed: int = 0,
        samples_per_epoch: int | None = None,
        reverse_prob: float = 0.0,
        still_prob: float = 0.0,
        event_prob: float = 0.0,
        max_retries: int = 10,
        max_bad: int = 50,
        flow: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        weights: Sequence[float] | None = None,
        clips_per_video: int = 1,
    ) -> None:
        if not records:
            raise ValueError("ClipDataset needs at least one video")
        if clips_per_video < 1:
            raise ValueError(f"data.clips_per_video={clips_per_video}: must be >= 1")
        for name, value in (("still_prob", still_prob), ("event_prob", event_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"data.{name}={value}: not a probability. Fix: set it in [0, 1].")
        self.clips_per_video = int(clips_per_video)
        self.records = list(records)
        self.clip_len, self.max_objects = clip_len, max_objects
        self.weights = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (len(self.records),) or (w < 0).any() or w.sum() <= 0:
                raise ValueError(f"weights: need {len(self.records)} non-negative values, sum > 0")
            self.weights = w / w.sum()
        self.transform = transform
        self.fallback = build_eval_transform(transform.image_size)
        self.seed = int(seed or 0)
        self.samples_per_epoch = samples_per_epoch or len(self.records)
        self.reverse_prob = reverse_prob
        self.still_prob = still_prob
        self.event_prob = event_prob
        self.max_retries, self.max_bad = max_retries, max_bad
        self.flow = flow
        # shared memory: visible to (persistent) DataLoader workers and the main process
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._skipped = torch.zeros((), dtype=torch.int64).share_memory_()
        self._max_skip = torch.zeros((), dtype=torch.int64).share_memory_()
        self.set_max_skip(max_skip)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def set_max_skip(self, max_skip: int) -> None:
        if max_skip < 1:
            raise ValueError(f"max_skip must be >= 1 video frame, got {max_skip}")
        self._max_skip.fill_(int(max_skip))

    @property
    def max_skip(self) -> int:
        """Largest gap between clip frames, in video frames."""
        return int(self._max_skip)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    @property
    def skipped(self) -> int:
        """Bad samples skipped so far (all workers)."""
        return int(self._skipped)

    def __getitem__(self, index: int) -> ClipSample:
        epoch = self.epoch
        n = len(self.records)
        skips: list[dict[str, str]] = []
        for bad in range(self.max_bad + 1):
            rng = np.random.default_rng([self.seed, epoch, int(index), bad])
            # first the scheduled video, then deterministic random replacements
            if bad > 0:
                v = int(rng.integers(n))
            elif self.weights is not None:
                v = int(rng.choice(n, p=self.weights))
            else:
                c = self.clips_per_video
                v = (int(index) // c + epoch * -(-len(self) // c)) % n
            record = self.records[v]
            try:
                sample = self._make(record, rng)
            except DataError as e:
                self._skipped += 1
                path = str(e.path or record.source)
                skips.append({"video": record.name, "path": path, "message": str(e)})
                log.debug("skipping video %s (sample %d): %s", record.name, index, e)
                continue
            sample.meta.update(skipped=bad, skips=skips, epoch=epoch, index=int(index))
            return sample
        raise DataError(
            f"{self.max_bad + 1} consecutive bad samples (last: {record.name}); the dataset "
            f"looks broken. Fix: check the warnings above and the files they name."
        )

    def _choose(self, record: VideoRecord, rng: np.random.Generator) -> tuple[list[int], list[int]]:
        """Clip frame indices and positions (in record.object_ids) of the chosen objects."""
        annotated = record.annotated_frames
        skip = max(1, self.max_skip // record.annotation_step())
        if self.event_prob > 0 and rng.random() < self.event_prob:
            for _ in range(EVENT_TRIES):
                clip = sample_clip(
                    record.num_frames, annotated, self.clip_len, skip, rng, self.reverse_prob
                )
                presence = np.stack([record.load_masks(t).any(axis=(1, 2)) for t in clip])
                events = np.flatnonzero(reemerging(presence)).tolist()
                if events:
                    present = np.flatnonzero(presence[0]).tolist()
                    return clip, choose_objects(present, self.max_objects, rng, include=events)
        for _ in range(self.max_retries):
            clip = sample_clip(
                record.num_frames, annotated, self.clip_len, skip, rng, self.reverse_prob
            )
            if self.still_prob > 0 and rng.random() < self.still_prob:
                clip = [clip[0]] * len(clip)
            present = np.flatnonzero(record.load_masks(clip[0]).any(axis=(1, 2))).tolist()
            if present:
                return clip, choose_objects(present, self.max_objects, rng)
        # fall back to the first annotated frame, where semi-supervised sets label everything
        clip = [annotated[min(k, len(annotated) - 1)] for k in range(self.clip_len)]
        present = np.flatnonzero(record.load_masks(clip[0]).any(axis=(1, 2))).tolist()
        if not present:
            raise DataError(
                f"video {record.name}: no object present in its first annotated frame "
                f"{clip[0]}. Fix: label the objects in the first frame."
            )
        return clip, choose_objects(present, self.max_objects, rng)

    def _make(self, record: VideoRecord, rng: np.random.Generator) -> ClipSample:
        clip, chosen = self._choose(record, rng)
        unique = sorted(set(clip))  # padded clips repeat frames: read each once, in order
        images = dict(zip(unique, record.load_frames(unique), strict=True))
        labels = {t: record.load_masks(t)[chosen] for t in unique}
        frames = [images[t] for t in clip]
        masks = [labels[t] for t in clip]
        retries = 0
        for retries in range(1, self.max_retries + 1):  # noqa: B007
            x, m = self.transform(frames, masks, seed=int(rng.integers(2**31 - 2)))
            keep = m[0].flatten(1).any(1)
            if keep.any():
                break
        else:
            x, m = self.fallback(frames, masks)
            keep = m[0].flatten(1).any(1)
            if not keep.any():
                raise DataError(
                    f"video {record.name}: objects {[record.object_ids[k] for k in chosen]} "
                    f"vanish at image size {self.transform.image_size}. Fix: a larger "
                    f"image_size or drop the video."
                )
        ids = [record.object_ids[k] for k, kept in zip(chosen, keep.tolist(), strict=True) if kept]
        gaps = np.abs(np.diff(clip)) if len(clip) > 1 else np.ones(1)
        meta = {
            "tags": tuple(record.tags),
            "aug_tries": retries,
            # video frames between clip steps (see VideoRecord.frame_step)
            "frame_step": int(record.frame_step * max(1, round(float(np.median(gaps))))),
        }
        flows = None
        if self.flow is not None:
            start = time.perf_counter()
            flows = torch.zeros(x.shape[0], 2, *x.shape[-2:])
            flows[1:] = self.flow(x[1:], x[:-1])
            meta["flow_seconds"] = time.perf_counter() - start
        return ClipSample(
            frames=x,
            masks=m[:, keep],
            video=record.name,
            frame_indices=clip,
            object_ids=ids,
            meta=meta,
            flows=flows,
        )


class SkipReport:
    """Warns, in the training process, about the clips skipped for bad files (the skips
    travel in each sample's `meta["skips"]`, see `ClipDataset`), so the warnings reach that
    process's log handlers (Hydra's train.log) whichever process read the file.

    Rate limit, per file: a WARNING naming the file the first time it breaks a clip, then
    at most one every `every_s` seconds, saying how many clips it broke in between;
    `flush` (at the end of a fit) warns about the skips still untold. A broken video in a
    long run is so named once, never silenced, and does not flood the log.
    """

    def __init__(self, every_s: float = 600.0, clock: Callable[[], float] = time.monotonic):
        self.every_s, self.clock = every_s, clock
        self._last: dict[str, float] = {}  # path -> time of its last warning
        self._untold: dict[str, tuple[int, Mapping[str, str]]] = {}  # path -> (count, last)

    def report(self, skips: Iterable[Mapping[str, str]]) -> None:
        for skip in skips:
            path, now = skip["path"], self.clock()
            last = self._last.get(path)
            if last is not None and now - last < self.every_s:
                count, _ = self._untold.get(path, (0, skip))
                self._untold[path] = (count + 1, skip)
                continue
            count, _ = self._untold.pop(path, (0, skip))
            since = f" ({count} more since its last warning)" if count else ""
            log.warning(
                "skipped a training clip because of %s (video %s)%s: %s",
                path, skip["video"], since, skip["message"],
            )  # fmt: skip
            self._last[path] = now

    def flush(self) -> None:
        for path, (count, skip) in self._untold.items():
            log.warning(
                "%d more training clip(s) skipped because of %s (video %s) since its last "
                "warning: %s", count, path, skip["video"], skip["message"],
            )  # fmt: skip
        self._untold.clear()


def collate_clips(samples: Sequence[ClipSample]) -> ClipBatch:
    """Stack clips; objects are padded with empty masks and `object_valid=False`."""
    if not samples:
        raise ValueError("empty batch")
    shapes = {tuple(s.frames.shape) for s in samples}
    if len(shapes) != 1:
        raise ValueError(f"clips differ in shape: {shapes}")
    B = len(samples)
    T, _, H, W = samples[0].frames.shape
    num_obj = max(s.masks.shape[1] for s in samples)
    masks = torch.zeros(B, T, num_obj, H, W, dtype=torch.bool)
    valid = torch.zeros(B, num_obj, dtype=torch.bool)
    for b, s in enumerate(samples):
        k = s.masks.shape[1]
        masks[b, :, :k] = s.masks
        valid[b, :k] = True
    return ClipBatch(
        frames=torch.stack([s.frames for s in samples]),
        masks=masks,
        object_valid=valid,
        videos=[s.video for s in samples],
        frame_indices=[list(s.frame_indices) for s in samples],
        object_ids=[list(s.object_ids) for s in samples],
        meta=[dict(s.meta) for s in samples],
        flows=torch.stack([s.flows for s in samples]) if samples[0].flows is not None else None,
    )


def _single(batch: list[VideoRecord]) -> VideoRecord:
    """Collate for whole-video loaders (batch_size=1): the record itself."""
    return batch[0]


def _worker_init(_: int) -> None:
    cv2.setNumThreads(1)  # the loader already runs one process per worker


class ClipSampler(DistributedSampler):
    """A (seed, epoch) permutation of the clip indices, this process's share of it, from
    `start` on for the first epoch iterated (a mid-epoch resume) and whole afterwards.

    `__len__` stays the whole share: Lightning counts the resumed epoch's batches from the
    checkpoint's position, so the epoch ends where the uninterrupted one does.
    """

    def __init__(
        self, dataset: ClipDataset, seed: int, num_replicas: int, rank: int, start: int = 0
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.clips = dataset
        self.start = start

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.clips.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        start, self.start = self.start, 0
        return iter(indices[start:])


def per_device_batch_size(global_batch: int, world_size: int, accumulate: int) -> int:
    """Clips per process and forward pass for a global batch of `global_batch` per
    optimizer step."""
    share = world_size * accumulate
    if global_batch < share or global_batch % share:
        raise ValueError(
            f"data.batch_size={global_batch} (the global batch per optimizer step) is not a "
            f"multiple of {world_size} processes x {accumulate} accumulated batches. Fix: set "
            f"data.batch_size to a multiple of {share}, or change trainer.devices / "
            f"trainer.num_nodes / trainer.accumulate_grad_batches."
        )
    return global_batch // share


class VOSDataModule(L.LightningDataModule):
    """Video object segmentation data of any supported layout, for train/val/test.

    `format` names the dataset format (`mosam_train.data.formats.get_format`: davis, sav,
    ytvos, mose, lvos, or one added with `register_format`) and `reader` its options (e.g.
    ``{resolution: 480p}`` for DAVIS, ``{auto: true}`` for SA-V's automatic masklets).
    Training reads `split`, validation `val_split`, testing `test_split` (default:
    `val_split`); `val_source` / `test_source` say what validation and testing read.
    `subset` / `val_subset` keep only the listed videos (a list or a file with one name per
    line).

    `mix` trains on several datasets at once, as SAM 2 mixes its data: a mapping
    ``{name: {format, root, split, weight, reader, subset}}``; each clip comes from
    dataset d with probability weight_d / sum(weights), whatever the datasets' sizes.
    Validation and test still read `format`/`root`/`val_split`, unless `val` names another
    source ``{format, root, split, reader, subset}``: YouTube-VOS and MOSE publish no masks
    beyond the first appearance for their valid splits, so their configs validate on
    DAVIS 2017 val; `test_split` then also reads that source.

    `max_skip` is in video frames (see `ClipDataset`). `augment` holds
    `build_train_transform` keyword arguments (SAM 2's MOSE recipe when empty).
    `val_max_videos` keeps the first N validation videos (quick checks). `flow`:
    `build_flow_provider` arguments when the model wants optical flow with its clips.
    """

    def __init__(
        self,
        root: str | Path,
        format: str = "davis",
        split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        reader: Mapping[str, Any] | None = None,
        subset: Sequence[str] | str | None = None,
        val_subset: Sequence[str] | str | None = None,
        mix: Mapping[str, Mapping[str, Any]] | None = None,
        val: Mapping[str, Any] | None = None,
        image_size: int = 1024,
        clip_len: int = 8,
        max_skip: int = 3,
        max_objects: int = 3,
        reverse_prob: float = 0.0,
        still_prob: float = 0.0,
        event_prob: float = 0.0,
        batch_size: int = 1,
        num_workers: int = 0,
        samples_per_epoch: int | None = None,
        seed: int = 0,
        augment: Mapping[str, Any] | None = None,
        synthetic: bool = False,
        synthetic_seed: int = 0,
        val_max_videos: int | None = None,
        flow: Mapping[str, Any] | None = None,
        clips_per_video: int = 1,
    ) -> None:
        super().__init__()
        if val_max_videos is not None and val_max_videos < 1:  # train and eval read it here
            what = (
                "evaluates no video"
                if val_max_videos == 0
                else f"would leave out the split's last {-val_max_videos} videos"
            )
            raise ValueError(
                f"data.val_max_videos={val_max_videos} {what}; use null for the whole split "
                f"or a positive count"
            )
        root = str(root)  # plain types in checkpoints (they load with weights_only=True)
        self.save_hyperparameters(logger=False)
        self.root = Path(root)
        self.augment = dict(augment or {})
        self.train_dataset: ClipDataset | None = None
        self.skip_report = SkipReport()
        self._val_records: list[VideoRecord] | None = None
        self._test_records: list[VideoRecord] | None = None

    def prepare_data(self) -> None:
        """Generate the synthetic set if asked for and missing (one process per node): the
        format's own generator (e.g. synthetic_long), else today's set in the DAVIS layout."""
        if self.hparams.synthetic:
            generate = get_format(self.hparams.format).generate
            if generate is None:
                from mosam_train.data.synthetic import ensure_synthetic as generate

            generate(self.root, seed=self.hparams.synthetic_seed)

    def _own_source(self, split: str, subset: Sequence[str] | str | None) -> dict[str, Any]:
        """`split` of this dataset (`format`, `root`, `reader`) as a `source_spec` mapping."""
        hp = self.hparams
        own = {"format": hp.format, "root": hp.root, "split": split, "reader": hp.reader}
        return source_spec("data", {**own, "subset": subset})

    def _eval_source(self, split: str) -> dict[str, Any]:
        """What validation/test read: `val` when given (its own split if it names one, else
        `split`), else this dataset's `split` with `val_subset`."""
        hp = self.hparams
        if hp.val:
            return source_spec("data.val", hp.val, split)
        return self._own_source(split, hp.val_subset)

    @staticmethod
    def _read_source(spec: Mapping[str, Any]) -> list[VideoRecord]:
        """Records of a checked `source_spec` mapping."""
        return read_split(
            spec["format"], spec["root"], spec["split"], subset=spec["subset"], **spec["reader"]
        )

    @property
    def val_source(self) -> dict[str, Any]:
        """What validation reads: ``{format, root, split, reader, subset}``."""
        return self._eval_source(self.hparams.val_split)

    @property
    def test_source(self) -> dict[str, Any]:
        """What `setup("test")` (and so `eval.py`) reads: ``{format, root, split, reader,
        subset}``; the split is `test_split`, default `val_split`, unless `val` names its
        own."""
        hp = self.hparams
        return self._eval_source(hp.test_split or hp.val_split)

    def _train_records(self) -> tuple[list[VideoRecord], list[float] | None]:
        """Training videos and, when mixing, each video's sampling weight."""
        hp = self.hparams
        if not hp.mix:
            return self._read_source(self._own_source(hp.split, hp.subset)), None
        records: list[VideoRecord] = []
        weights: list[float] = []
        for name, src in hp.mix.items():
            part = read_source(f"data.mix.{name}", src)
            weight = float(src.get("weight", 1.0))
            log.info("mix: %s %s: %d videos, weight %g", name, src.get("split"), len(part), weight)
            records += part
            weights += [weight / len(part)] * len(part)
        return records, weights

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage in (None, "fit") and self.train_dataset is None:
            records, weights = self._train_records()
            self.train_dataset = ClipDataset(
                records,
                clip_len=hp.clip_len,
                max_skip=hp.max_skip,
                max_objects=hp.max_objects,
                transform=build_train_transform(hp.image_size, **self.augment),
                seed=hp.seed,
                samples_per_epoch=hp.samples_per_epoch,
                reverse_prob=hp.reverse_prob,
                still_prob=hp.still_prob,
                event_prob=hp.event_prob,
                flow=self._flow_provider(),
                weights=weights,
                clips_per_video=hp.clips_per_video,
            )
        if stage in (None, "fit", "validate") and self._val_records is None:
            self._val_records = self._read_source(self.val_source)[: hp.val_max_videos]
        if stage in (None, "test") and self._test_records is None:
            self._test_records = self._read_source(self.test_source)

    def _flow_provider(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        """`flow` (build_flow_provider arguments) -> a provider for the workers, or None."""
        if not self.hparams.flow:
            return None
        return build_flow_provider(**self.hparams.flow)

    @property
    def val_records(self) -> list[VideoRecord]:
        if self._val_records is None:
            raise RuntimeError("call setup('fit') or setup('validate') first")
        return self._val_records

    @property
    def test_records(self) -> list[VideoRecord]:
        if self._test_records is None:
            raise RuntimeError("call setup('test') first")
        return self._test_records

    @property
    def skipped(self) -> int:
        """Bad training samples skipped so far."""
        return 0 if self.train_dataset is None else self.train_dataset.skipped

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Warns about the clips skipped to make a training batch: Lightning calls this in
        the training process, where the log handlers are (see `SkipReport`)."""
        if isinstance(batch, ClipBatch):
            self.skip_report.report(s for m in batch.meta for s in m.get("skips", ()))
        return batch

    def teardown(self, stage: str) -> None:
        if stage == "fit":
            self.skip_report.flush()

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise RuntimeError("call setup('fit') first")
        trainer = self.trainer
        world = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        accumulate = trainer.accumulate_grad_batches if trainer is not None else 1
        batch_size = per_device_batch_size(self.hparams.batch_size, world, accumulate)
        start = 0
        if trainer is not None and trainer.fit_loop.restarting:
            # the restored loop's batches of this epoch were trained before the checkpoint
            start = trainer.fit_loop.epoch_loop.batch_progress.current.processed * batch_size
        workers = self.hparams.num_workers
        return DataLoader(
            self.train_dataset,
            batch_size=batch_size,
            sampler=ClipSampler(self.train_dataset, self.hparams.seed, world, rank, start),
            num_workers=workers,
            collate_fn=collate_clips,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            worker_init_fn=_worker_init if workers > 0 else None,
            # Forked workers inherit OpenCV's thread pool from a parent that has already used
            # it (J&F, generation) and can deadlock on their first cv2 call.
            multiprocessing_context="forkserver" if workers > 0 else None,
            # its own generator: creating the workers must not draw from the global RNG,
            # whose stream a resumed run would then see shifted
            generator=torch.Generator().manual_seed(self.hparams.seed),
        )

    def _video_loader(self, records: list[VideoRecord]) -> DataLoader:
        return DataLoader(records, batch_size=1, shuffle=False, num_workers=0, collate_fn=_single)

    def val_dataloader(self) -> DataLoader:
        return self._video_loader(self.val_records)

    def test_dataloader(self) -> DataLoader:
        return self._video_loader(self.test_records)
