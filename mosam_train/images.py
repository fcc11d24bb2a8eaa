"""Frames as the model sees them: SAM 2's ImageNet normalisation and its inverse.

`preprocess_frame` reproduces SAM 2's video predictor input exactly, so our streaming
engine sees the same tensors as `SAM2VideoPredictor`. Data (training clips), inference
(streamed frames) and optical flow (which reads normalised frames back as RGB) all use
these, so they sit below all of them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)

_MEAN = torch.tensor(IMAGE_MEAN, dtype=torch.float32)[:, None, None]
_STD = torch.tensor(IMAGE_STD, dtype=torch.float32)[:, None, None]


def preprocess_frame(rgb: np.ndarray, image_size: int) -> torch.Tensor:
    """[3, S, S] float32 exactly as `sam2.utils.misc.load_video_frames_from_jpg_images`.

    Same steps in the same precision: PIL resize with its default filter (bicubic),
    /255 in float64, cast to float32, then (x - mean) / std in float32.
    """
    img = np.array(Image.fromarray(rgb).convert("RGB").resize((image_size, image_size)))
    x = torch.from_numpy(img / 255.0).permute(2, 0, 1).to(torch.float32)
    x -= _MEAN
    x /= _STD
    return x


def normalize_frames(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, S, S, 3] -> float32 [T, 3, S, S] normalised with ImageNet mean/std."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    return (x - _MEAN) / _STD


def denormalize(frames: torch.Tensor) -> torch.Tensor:
    """Normalised [N, 3, S, S] -> RGB in [0, 1]."""
    mean = frames.new_tensor(IMAGE_MEAN)[:, None, None]
    std = frames.new_tensor(IMAGE_STD)[:, None, None]
    return (frames * std + mean).clamp(0, 1)


def area_pool(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`F.adaptive_avg_pool2d(x, size)` ([..., H, W] -> [..., *size]), through
    `F.avg_pool2d` with one fixed window where `size` divides (H, W) into power-of-two
    windows (SAM 2's sizes): the same sums, and a division by a power of two is exact
    however it is split, so the same averages and gradients bit for bit, in about two
    thirds of the time. Other sizes take the adaptive pooling itself."""
    h, w = x.shape[-2:]
    kh, kw = h // size[0], w // size[1]
    if kh * size[0] != h or kw * size[1] != w or kh & (kh - 1) or kw & (kw - 1):
        return F.adaptive_avg_pool2d(x, size)
    return F.avg_pool2d(x, (kh, kw))
