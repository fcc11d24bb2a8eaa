"""Clip augmentation is consistent over frames; the eval transform is SAM 2's preprocessing."""

from __future__ import annotations

import numpy as np
import torch

from mosam_train.data.transforms import build_eval_transform, build_train_transform
from mosam_train.images import IMAGE_MEAN, preprocess_frame


def _clip(T=6, H=40, W=48, seed=0):
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(T)]
    mask = np.zeros((2, H, W), bool)
    mask[0, 5:20, 4:30] = True
    mask[1, 22:35, 30:44] = True
    return frames, [mask.copy() for _ in range(T)]


def test_geometry_is_identical_for_every_frame():
    tr = build_train_transform(32)  # SAM 2 defaults: hflip, rotate 25, shear 20, jitter
    frames, masks = _clip()
    outs = [tr(frames, masks, seed=s)[1] for s in range(8)]
    for m in outs:
        assert m.shape == (6, 2, 32, 32) and m.dtype == torch.bool
        assert all(torch.equal(m[t], m[0]) for t in range(6))
    assert len({m.numpy().tobytes() for m in outs}) > 1  # but it does change between clips


def test_flip_moves_a_marked_pixel_in_all_frames():
    tr = build_train_transform(
        16, hflip_p=1.0, affine_p=0.0, clip_brightness=0, clip_contrast=0,
        clip_saturation=0, frame_brightness=0, frame_contrast=0, frame_saturation=0,
        grayscale_p=0.0,
    )  # fmt: skip
    frames = [np.zeros((16, 16, 3), np.uint8) for _ in range(4)]
    for f in frames:
        f[3, 2] = 255
    masks = [np.zeros((1, 16, 16), bool) for _ in range(4)]
    for m in masks:
        m[0, 3, 2] = True
    x, m = tr(frames, masks, seed=0)
    bright = (x[:, 0] > 2).nonzero().tolist()  # normalised 255 is ~2.2, 0 is ~-2.1
    assert bright == [[t, 3, 13] for t in range(4)]
    assert m[:, 0].nonzero().tolist() == [[t, 3, 13] for t in range(4)]


def test_colour_jitter_has_a_per_frame_part_and_seed_reproduces():
    tr = build_train_transform(24, hflip_p=0.0, affine_p=0.0, grayscale_p=0.0)
    frame = np.full((24, 24, 3), 120, np.uint8)
    mask = np.ones((1, 24, 24), bool)
    x, _ = tr([frame] * 5, [mask] * 5, seed=3)
    assert len({round(float(x[t].mean()), 4) for t in range(5)}) > 1
    x2, _ = tr([frame] * 5, [mask] * 5, seed=3)
    assert torch.equal(x, x2)


def test_eval_transform_is_sam2_preprocessing():
    frames, masks = _clip(T=2)
    x, m = build_eval_transform(24)(frames, masks)
    assert torch.equal(x[1], preprocess_frame(frames[1], 24))
    assert m.shape == (2, 2, 24, 24) and m[0, 0].any() and m[0, 1].any()
    assert abs(float(x[0, 0].mean()) - (127.5 / 255 - IMAGE_MEAN[0]) / 0.229) < 0.3
