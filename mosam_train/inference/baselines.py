"""Reference predictors that go through the same evaluation path as the model."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from mosam_train.inference.engine import FrameResult, FrameSource
from mosam_train.models.motion.dense import warp_backward
from mosam_train.optical_flow import FarnebackFlow, FlowProvider


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


class FlowWarp:
    """Carries each object's mask from frame to frame along optical flow (OpenCV's
    Farneback by default): motion with no model and no weights, a floor between the static
    baseline and a learnt tracker. Flow is computed on the frames as a model sees them
    (`frames.image`, S x S) and scaled to the video; the warped masks stay soft (bilinear)
    and are thresholded at 0.5 for the output."""

    def __init__(self, provider: FlowProvider | None = None) -> None:
        self.provider = provider if provider is not None else FarnebackFlow()

    def propagate(
        self, frames: FrameSource, prompts: Mapping[int, Mapping[int, np.ndarray]]
    ) -> Iterator[FrameResult]:
        object_ids = sorted({oid for p in prompts.values() for oid in p})
        size = (frames.height, frames.width)
        soft = torch.zeros((len(object_ids), 1, *size))
        started = torch.zeros(len(object_ids), dtype=torch.bool)
        previous: torch.Tensor | None = None
        for t in range(min(prompts), frames.num_frames):
            image = frames.image(t)[None].float()
            if previous is not None and bool(started.any()):
                s_h, s_w = image.shape[-2:]
                flow = F.interpolate(
                    self.provider(image, previous), size=size, mode="bilinear", align_corners=False
                )
                flow = flow * torch.tensor([size[1] / s_w, size[0] / s_h]).view(1, 2, 1, 1)
                soft = warp_backward(soft, flow.expand(len(object_ids), -1, -1, -1))
            previous = image
            for k, oid in enumerate(object_ids):
                if not started[k] and oid in prompts.get(t, {}):
                    soft[k, 0] = torch.from_numpy(np.asarray(prompts[t][oid], dtype=np.float32))
                    started[k] = True
            masks = soft[:, 0] >= 0.5
            logits = torch.where(masks, 10.0, -10.0)
            scores = torch.where(started, 10.0, -10.0)
            yield FrameResult(t, object_ids, logits, scores)
