"""Frame preprocessing matches SAM 2 exactly, and `denormalize` inverts the normalisation."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from mosam_train.images import area_pool, denormalize, normalize_frames, preprocess_frame


def _sam2_loader():
    """sam2's JPEG-folder loader, without leaving Hydra initialised (sam2 does on import)."""
    from hydra.core.global_hydra import GlobalHydra

    was = GlobalHydra.instance().is_initialized()
    from sam2.utils.misc import load_video_frames_from_jpg_images

    if not was:
        GlobalHydra.instance().clear()
    return load_video_frames_from_jpg_images


def test_preprocess_frame_equals_sam2(tmp_path):
    rng = np.random.default_rng(0)
    for t in range(2):
        rgb = rng.integers(0, 256, (75, 131, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(tmp_path / f"{t:05d}.jpg", quality=90)
    ref, h, w = _sam2_loader()(
        str(tmp_path), 64, offload_video_to_cpu=True, compute_device=torch.device("cpu")
    )
    assert (h, w) == (75, 131)
    for t in range(2):
        rgb = np.array(Image.open(tmp_path / f"{t:05d}.jpg").convert("RGB"))
        mine = preprocess_frame(rgb, 64)
        assert mine.dtype == torch.float32 and mine.shape == (3, 64, 64)
        assert torch.equal(mine, ref[t])


def test_denormalize_inverts_normalize_frames():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    back = denormalize(normalize_frames(rgb)).permute(0, 2, 3, 1) * 255
    assert torch.allclose(back, torch.from_numpy(rgb).float(), atol=1e-3)


def test_area_pool_is_adaptive_average_pooling_bit_for_bit():
    """Power-of-two windows go through avg_pool2d with equal values and gradients; others
    through the adaptive pooling."""
    gen = torch.Generator().manual_seed(0)
    for shape, size in (
        ((2, 2, 128, 128), (32, 32)),
        ((2, 65, 32, 32), (8, 8)),
        ((1, 3, 16, 32), (8, 8)),
    ):
        x = (torch.rand(shape, generator=gen) * 4 - 1).requires_grad_()
        y = x.detach().clone().requires_grad_()
        g = torch.randn(*shape[:2], *size, generator=gen)
        a, b = area_pool(x, size), torch.nn.functional.adaptive_avg_pool2d(y, size)
        (a * g).sum().backward()
        (b * g).sum().backward()
        assert torch.equal(a, b) and torch.equal(x.grad, y.grad)
        assert a.grad_fn.name() == "AvgPool2DBackward0"  # the fixed-window path
    for shape, size in (((1, 1, 10, 10), (3, 3)), ((1, 3, 12, 18), (4, 6))):  # 3 x 3 windows
        odd = torch.rand(shape, generator=gen)  # the adaptive pooling itself
        expected = torch.nn.functional.adaptive_avg_pool2d(odd, size)
        assert torch.equal(area_pool(odd, size), expected)
