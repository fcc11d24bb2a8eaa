"""The micro SAM 2 as the tracker-rule tests run it: tracking with three candidate masks
(what candidate-choosing rules need) and with one (SAM 2's micro default); the prompts and
the engine run the rules' end-to-end tests share."""

import numpy as np
import pytest
import torch

from mosam_train.inference.engine import VideoPropagator
from mosam_train.models.video_sam import VideoSAM


@pytest.fixture(scope="module")
def multimask(micro) -> VideoSAM:
    return VideoSAM(micro(multimask=True))


@pytest.fixture(scope="module")
def one_mask(micro) -> VideoSAM:
    return VideoSAM(micro())


def _video_prompts(objects=(1, 2, 3)) -> dict[int, dict[int, np.ndarray]]:
    mask = np.zeros((64, 80), bool)
    mask[10:30, 20:50] = True
    prompts = {0: {1: mask, 2: ~mask}, 4: {3: mask}}
    return {t: {o: m for o, m in p.items() if o in objects} for t, p in prompts.items()}


@pytest.fixture(scope="session")
def video_prompts():
    """`video_prompts(objects=(1, 2, 3))`: objects 1 and 2 from frame 0 (one group), object
    3 from frame 4, on a 64x80 video."""
    return _video_prompts


@pytest.fixture(scope="session")
def track():
    """`track(model, rule, frames, objects=(1, 2, 3))`: the engine's logits per frame for
    `video_prompts(objects)`, every frame yielded once, in order."""

    def run(model, rule, frames, objects=(1, 2, 3)) -> dict[int, torch.Tensor]:
        results = list(VideoPropagator(model, rule).propagate(frames, _video_prompts(objects)))
        assert [r.frame_idx for r in results] == list(range(frames.num_frames))
        return {r.frame_idx: r.logits for r in results}

    return run
