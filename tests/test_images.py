"""Frame preprocessing matches SAM 2 exactly, and `denormalize` inverts the normalisation."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from mosam_train.images import denormalize, normalize_frames, preprocess_frame


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
