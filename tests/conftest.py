"""Shared fixtures: a small synthetic dataset in the DAVIS layout, made once per session."""

from pathlib import Path

import pytest

from mosam_train.data.synthetic import ensure_synthetic


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory) -> Path:
    """4 train videos of 16 frames, 3 val videos of 32 frames (one per tag)."""
    root = tmp_path_factory.mktemp("data") / "synthetic"
    return ensure_synthetic(
        root, num_train=4, num_val=3, train_frames=16, val_frames=32, progress=False, workers=1
    )
