"""Flat memory: a 1000-frame video holds no more memory than a 100-frame one."""

import re

import numpy as np
import pytest
import torch

from mosam_train.inference.engine import VideoPropagator
from mosam_train.models.sam2_builder import build_sam2
from mosam_train.models.video_sam import VideoSAM


def _peak_kib() -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1))


def _rss_kib() -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", open("/proc/self/status").read()).group(1))


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _run(engine: VideoPropagator, frames) -> tuple[int, int, int]:
    """(entries held at the end, bytes held at the end, peak RSS growth in KiB)."""
    mask = np.zeros((64, 80), bool)
    mask[10:30, 20:50] = True
    prompts = {0: {1: mask, 2: ~mask}}
    _reset_peak()
    base = _rss_kib()
    entries = []
    for r in engine.propagate(frames, prompts):
        entries.append(engine.memory_entries())
        del r
    return max(entries), engine.memory_bytes(), _peak_kib() - base


@pytest.mark.slow
def test_memory_is_flat_in_video_length(noise_frames):
    torch.manual_seed(0)
    engine = VideoPropagator(VideoSAM(build_sam2("sam2.1_micro").eval()))
    _run(engine, noise_frames(30))  # warm up allocator and caches
    entries_100, bytes_100, peak_100 = _run(engine, noise_frames(100))
    entries_1000, bytes_1000, peak_1000 = _run(engine, noise_frames(1000))
    # 1 conditioning frame + 15 frames of object pointers (6 of them with spatial memory).
    assert entries_100 == entries_1000 == 16
    assert bytes_100 == bytes_1000
    assert peak_1000 <= peak_100 + 4 * 1024, (peak_100, peak_1000)


def test_stored_frames_share_one_memory_position_encoding(noise_frames):
    """SAM 2's memory position encoding depends on the feature size only: the bank keeps
    one for all its frames, as SAM2VideoPredictor does, not one copy per frame."""
    torch.manual_seed(0)
    engine = VideoPropagator(VideoSAM(build_sam2("sam2.1_micro").eval()))
    _run(engine, noise_frames(8))
    stored = [
        e["maskmem_pos_enc"]
        for frames in engine.groups[0].bank.output_dict.values()
        for e in frames.values()
        if e.get("maskmem_features") is not None
    ]
    assert len(stored) >= 7 and all(p is stored[0] for p in stored)
