"""Shared fixtures: a small synthetic dataset in the DAVIS layout, made once per session."""

from pathlib import Path

import pytest

from mosam_train.data.synthetic import ensure_synthetic

SMALL = dict(num_train=8, num_val=8, train_frames=16, val_frames=32)


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory) -> Path:
    """8 train videos x 16 frames, 8 val videos x 32 frames (2 per tag), seed 0."""
    root = tmp_path_factory.mktemp("syn") / "synthetic"
    return ensure_synthetic(root, seed=0, progress=False, workers=1, **SMALL)
