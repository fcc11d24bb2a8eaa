"""The micro SAM 2 as the tracker-rule tests run it: tracking with three candidate masks
(what candidate-choosing rules need) and with one (SAM 2's micro default)."""

import pytest

from mosam_train.models.video_sam import VideoSAM


@pytest.fixture(scope="module")
def multimask(micro) -> VideoSAM:
    return VideoSAM(micro(multimask=True))


@pytest.fixture(scope="module")
def one_mask(micro) -> VideoSAM:
    return VideoSAM(micro())
