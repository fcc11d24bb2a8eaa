"""J&F as a torchmetrics ``Metric``: accumulates per-object rows, exact under DDP.

Scoring itself is done by ``mosam_train.metrics.jf`` (the one J&F implementation); this
class only collects ``ObjectScore`` rows across steps and ranks and calls ``aggregate``.

Why rows and not running sums: J&F pools per object, and under DDP the
``DistributedSampler`` pads the last batch by repeating videos, so the same (video,
object) can be scored on two ranks. Rows are gathered ("cat") and deduplicated by
(video key, object id) before aggregating, which makes J, F, JF, recall, decay, the counts
and the per-tag values exact; they are aggregated in (video key, object id) order, so the
floating-point sums, and thus the result, are the same whichever rank scored which video
and however many ranks there are (1 process and 2 give bit-identical J&F:
tests/test_ddp.py). Video names are carried as a stable 64-bit key (blake2b, the same on
every rank and run) plus their UTF-8 bytes (up to 128; a longer name scored on another
rank shows as ``video#<key>``); tags travel as UTF-8 bytes (at most 64 per tag), one entry
per (video, object, tag), and re-detection latencies one entry per (video, object, event),
so per-tag values and the diagnostics survive the gather too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import torch
from torchmetrics import Metric

from mosam_train.metrics.jf import ObjectScore, aggregate

__all__ = ["VideoJF", "video_key"]

_TAG_BYTES = 64
_NAME_BYTES = 128
_STATS = (
    "j_mean",
    "j_recall",
    "j_decay",
    "f_mean",
    "f_recall",
    "f_decay",
    "j_visible",
    "fp_absent",
)
# per row, as int64: video key, object id and these
_COUNTS = ("num_frames", "never_redetected")
_STATES = ("keys", "stats", "tag_keys", "tag_bytes", "events", "name_video", "name_bytes")


def video_key(name: str) -> int:
    """Stable signed 64-bit key of a video name (same on every process, unlike hash())."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _encode_tag(tag: str) -> list[int]:
    raw = tag.encode("utf-8")
    if not raw or len(raw) > _TAG_BYTES:
        raise ValueError(f"tag {tag!r} must be 1..{_TAG_BYTES} UTF-8 bytes")
    return list(raw) + [0] * (_TAG_BYTES - len(raw))


def _decode_bytes(row: torch.Tensor) -> str:
    return bytes(row.tolist()).rstrip(b"\x00").decode("utf-8")


def _encode_name(name: str) -> list[int] | None:
    raw = name.encode("utf-8")
    if not raw or len(raw) > _NAME_BYTES:
        return None
    return list(raw) + [0] * (_NAME_BYTES - len(raw))


class VideoJF(Metric):
    """Per-object J&F over a validation/eval epoch; ``compute()`` == ``aggregate(rows)``.

    ``update(rows)`` takes the ``ObjectScore`` list of one or more videos. A rank that never
    calls ``update`` still syncs (typed empty states are gathered).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    # per row: (video key, object id, *_COUNTS) and the _STATS
    keys: list[torch.Tensor]
    stats: list[torch.Tensor]
    # per (video, object, tag): (video key, object id) and the tag's bytes
    tag_keys: list[torch.Tensor]
    tag_bytes: list[torch.Tensor]
    # per (video, object, re-detected event): (video key, object id, event index, latency)
    events: list[torch.Tensor]
    # per video: key and name bytes (display names of videos scored on other ranks)
    name_video: list[torch.Tensor]
    name_bytes: list[torch.Tensor]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for attr in _STATES:
            self.add_state(attr, default=[], dist_reduce_fx="cat")
        self._names: dict[int, str] = {}

    def _empty(self, attr: str) -> torch.Tensor:
        shape, dtype = {
            "keys": ((0, 2 + len(_COUNTS)), torch.int64),
            "stats": ((0, len(_STATS)), torch.float64),
            "tag_keys": ((0, 2), torch.int64),
            "tag_bytes": ((0, _TAG_BYTES), torch.uint8),
            "events": ((0, 4), torch.int64),
            "name_video": ((0,), torch.int64),
            "name_bytes": ((0, _NAME_BYTES), torch.uint8),
        }[attr]
        return torch.zeros(shape, dtype=dtype, device=self.device)

    def update(self, rows: Iterable[ObjectScore]) -> None:
        new: dict[str, list] = {attr: [] for attr in _STATES}
        named: set[int] = set()
        for r in rows:
            k, oid = video_key(r.video), int(r.object_id)
            self._names[k] = r.video
            new["keys"].append([k, oid, *(int(getattr(r, c)) for c in _COUNTS)])
            new["stats"].append([float(getattr(r, s)) for s in _STATS])
            for tag in dict.fromkeys(r.tags):
                new["tag_keys"].append([k, oid])
                new["tag_bytes"].append(_encode_tag(tag))
            new["events"] += [[k, oid, i, int(v)] for i, v in enumerate(r.latencies)]
            if k not in named:
                named.add(k)
                encoded = _encode_name(r.video)
                if encoded is not None:
                    new["name_video"].append(k)
                    new["name_bytes"].append(encoded)
        # Always append (possibly empty, correctly typed) tensors so the gathered dtypes and
        # ranks agree on every process.
        for attr, values in new.items():
            empty = self._empty(attr)
            getattr(self, attr).append(
                torch.tensor(values, dtype=empty.dtype, device=self.device).reshape(
                    -1, *empty.shape[1:]
                )
            )

    def _sync_dist(self, *args: Any, **kwargs: Any) -> None:
        # torchmetrics replaces an empty list state by a float32 1-D placeholder, which
        # would not match the int64/uint8 2-D tensors other ranks send.
        for attr in _STATES:
            value = getattr(self, attr)
            if isinstance(value, list) and not value:
                setattr(self, attr, [self._empty(attr)])
        super()._sync_dist(*args, **kwargs)

    def _cat(self, attr: str) -> torch.Tensor:
        value = getattr(self, attr)
        if isinstance(value, torch.Tensor):
            return value
        return torch.cat(value, dim=0) if value else self._empty(attr)

    def rows(self) -> list[ObjectScore]:
        """The deduplicated rows (first occurrence of each (video, object) kept)."""
        return [row for _, row in self._keyed_rows()]

    def _keyed_rows(self) -> list[tuple[tuple[int, int], ObjectScore]]:
        keys = self._cat("keys").cpu().tolist()
        stats = self._cat("stats").cpu().tolist()
        tags: dict[tuple[int, int], list[str]] = {}
        for (k, oid), raw in zip(
            self._cat("tag_keys").cpu().tolist(), self._cat("tag_bytes").cpu(), strict=True
        ):
            tag = _decode_bytes(raw)
            lst = tags.setdefault((k, oid), [])
            if tag not in lst:
                lst.append(tag)
        # a row scored on two ranks sends its events twice: keep one per event index
        events: dict[tuple[int, int], dict[int, int]] = {}
        for k, oid, i, latency in self._cat("events").cpu().tolist():
            events.setdefault((k, oid), {}).setdefault(i, latency)
        names = dict(self._names)
        for k, raw in zip(
            self._cat("name_video").cpu().tolist(), self._cat("name_bytes").cpu(), strict=True
        ):
            names.setdefault(k, _decode_bytes(raw))
        out: list[tuple[tuple[int, int], ObjectScore]] = []
        seen: set[tuple[int, int]] = set()
        for (k, oid, *counts), s in zip(keys, stats, strict=True):
            if (k, oid) in seen:
                continue
            seen.add((k, oid))
            name = names.get(k, f"video#{k & 0xFFFFFFFFFFFFFFFF:016x}")
            latencies = events.get((k, oid), {})
            row = ObjectScore(
                video=name,
                object_id=oid,
                **dict(zip(_STATS, s, strict=True)),
                **dict(zip(_COUNTS, counts, strict=True)),
                tags=tuple(tags.get((k, oid), ())),
                latencies=tuple(latencies[i] for i in sorted(latencies)),
            )
            out.append(((k, oid), row))
        return out

    def compute(self) -> dict[str, float | int]:
        """``aggregate`` of the deduplicated rows gathered from all ranks, pooled in
        (video key, object id) order so the result does not depend on the sharding."""
        return aggregate([row for _, row in sorted(self._keyed_rows(), key=lambda kr: kr[0])])
