"""Reference predictors that go through the same evaluation path as the model."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import torch

from mosam_train.inference.engine import FrameResult, FrameSource


class CopyFirstMask:
    """Repeats each object's prompt mask on every later frame: the no-motion floor."""

    def propagate(
        self, frames: FrameSource, prompts: Mapping[int, Mapping[int, np.ndarray]]
    ) -> Iterator[FrameResult]:
        current: dict[int, np.ndarray] = {}
        object_ids = sorted({oid for p in prompts.values() for oid in p})
        empty = np.zeros((frames.height, frames.width), dtype=bool)
        for t in range(min(prompts), frames.num_frames):
            for oid, m in prompts.get(t, {}).items():
                current.setdefault(oid, np.asarray(m, dtype=bool))
            masks = np.stack([current.get(oid, empty) for oid in object_ids])
            logits = torch.from_numpy(np.where(masks, 10.0, -10.0).astype(np.float32))
            scores = torch.tensor([10.0 if oid in current else -10.0 for oid in object_ids])
            yield FrameResult(t, object_ids, logits, scores)
