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
per (video, tag), so per-tag values survive the gather too.
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
_STATS = ("j_mean", "j_recall", "j_decay", "f_mean", "f_recall", "f_decay")


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

    # per row: (video key, object id, num_frames) and the six statistics
    keys: list[torch.Tensor]
    stats: list[torch.Tensor]
    # per (video, tag): video key and the tag's bytes
    tag_video: list[torch.Tensor]
    tag_bytes: list[torch.Tensor]
    # per video: key and name bytes (display names of videos scored on other ranks)
    name_video: list[torch.Tensor]
    name_bytes: list[torch.Tensor]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("keys", default=[], dist_reduce_fx="cat")
        self.add_state("stats", default=[], dist_reduce_fx="cat")
        self.add_state("tag_video", default=[], dist_reduce_fx="cat")
        self.add_state("tag_bytes", default=[], dist_reduce_fx="cat")
        self.add_state("name_video", default=[], dist_reduce_fx="cat")
        self.add_state("name_bytes", default=[], dist_reduce_fx="cat")
        self._names: dict[int, str] = {}

    def _empty(self, attr: str) -> torch.Tensor:
        shape, dtype = {
            "keys": ((0, 3), torch.int64),
            "stats": ((0, len(_STATS)), torch.float64),
            "tag_video": ((0,), torch.int64),
            "tag_bytes": ((0, _TAG_BYTES), torch.uint8),
            "name_video": ((0,), torch.int64),
            "name_bytes": ((0, _NAME_BYTES), torch.uint8),
        }[attr]
        return torch.zeros(shape, dtype=dtype, device=self.device)

    def update(self, rows: Iterable[ObjectScore]) -> None:
        rows = list(rows)
        keys, stats, tag_video, tag_bytes, name_video, name_bytes = [], [], [], [], [], []
        tagged: set[int] = set()
        for r in rows:
            k = video_key(r.video)
            self._names[k] = r.video
            keys.append([k, int(r.object_id), int(r.num_frames)])
            stats.append([float(getattr(r, s)) for s in _STATS])
            if k not in tagged:
                tagged.add(k)
                for tag in dict.fromkeys(r.tags):
                    tag_video.append(k)
                    tag_bytes.append(_encode_tag(tag))
                encoded = _encode_name(r.video)
                if encoded is not None:
                    name_video.append(k)
                    name_bytes.append(encoded)
        dev = self.device
        # Always append (possibly empty, correctly typed) tensors so the gathered dtypes and
        # ranks agree on every process.
        self.keys.append(torch.tensor(keys, dtype=torch.int64, device=dev).reshape(-1, 3))
        self.stats.append(
            torch.tensor(stats, dtype=torch.float64, device=dev).reshape(-1, len(_STATS))
        )
        self.tag_video.append(torch.tensor(tag_video, dtype=torch.int64, device=dev))
        self.tag_bytes.append(
            torch.tensor(tag_bytes, dtype=torch.uint8, device=dev).reshape(-1, _TAG_BYTES)
        )
        self.name_video.append(torch.tensor(name_video, dtype=torch.int64, device=dev))
        self.name_bytes.append(
            torch.tensor(name_bytes, dtype=torch.uint8, device=dev).reshape(-1, _NAME_BYTES)
        )

    def _sync_dist(self, *args: Any, **kwargs: Any) -> None:
        # torchmetrics replaces an empty list state by a float32 1-D placeholder, which
        # would not match the int64/uint8 2-D tensors other ranks send.
        for attr in ("keys", "stats", "tag_video", "tag_bytes", "name_video", "name_bytes"):
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
        tags: dict[int, list[str]] = {}
        for k, raw in zip(
            self._cat("tag_video").cpu().tolist(), self._cat("tag_bytes").cpu(), strict=True
        ):
            tag = _decode_bytes(raw)
            lst = tags.setdefault(k, [])
            if tag not in lst:
                lst.append(tag)
        names = dict(self._names)
        for k, raw in zip(
            self._cat("name_video").cpu().tolist(), self._cat("name_bytes").cpu(), strict=True
        ):
            names.setdefault(k, _decode_bytes(raw))
        out: list[tuple[tuple[int, int], ObjectScore]] = []
        seen: set[tuple[int, int]] = set()
        for (k, oid, n), s in zip(keys, stats, strict=True):
            if (k, oid) in seen:
                continue
            seen.add((k, oid))
            name = names.get(k, f"video#{k & 0xFFFFFFFFFFFFFFFF:016x}")
            row = ObjectScore(name, oid, *s, num_frames=n, tags=tuple(tags.get(k, ())))
            out.append(((k, oid), row))
        return out

    def compute(self) -> dict[str, float | int]:
        """``aggregate`` of the deduplicated rows gathered from all ranks, pooled in
        (video key, object id) order so the result does not depend on the sharding."""
        return aggregate([row for _, row in sorted(self._keyed_rows(), key=lambda kr: kr[0])])
