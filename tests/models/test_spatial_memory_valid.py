"""Objects of one batch keeping different numbers of memory frames (`SpatialMemory.valid`):
each object's output is what it gives tracked alone with its own frames."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from mosam_train.models.mosam import MoSAMTracker
from mosam_train.models.video_sam import SpatialMemory, VideoSAM, new_output_dict

T = 8  # frame 0 prompted, 1..6 tracked, 7 the frame under test


def prompt_masks(n: int, size: int = 128) -> torch.Tensor:
    m = torch.zeros(n, 1, size, size)
    m[0, :, 30:90, 20:70] = 1
    m[1:, :, 10:50, 60:120] = 1
    return m


def objects(value: Any, rows: slice) -> Any:
    """An entry (or output dict) restricted to some objects (tensors [N, ...])."""
    if isinstance(value, torch.Tensor):
        return value[rows]
    if isinstance(value, dict):
        return {k: objects(v, rows) for k, v in value.items()}
    if isinstance(value, list):
        return [objects(v, rows) for v in value]
    return value


@pytest.fixture(scope="module", params=["sam2", "mosam-pixel-filter"])
def scene(request, micro, noise_frames):
    """Two objects tracked over frames 0..6 of a noise video, and frame 7's features; on
    SAM 2, and on MoSAM with its pixel filter (its own key bias, added to the mask's)."""
    if request.param == "sam2":
        model = VideoSAM(micro())
    else:
        torch.manual_seed(0)
        stms = {"frame": False, "pixel": True}
        model = MoSAMTracker(micro(), stms=stms).eval()
        with torch.no_grad():
            model.stms.pixel_head.gate.fill_(3.0)  # at 0 (its start) the filter passes all
    frames = noise_frames(T)
    bank = new_output_dict()
    with torch.inference_mode():
        feats = [model.encode_images(frames.image(i)[None]).expand(2) for i in range(T)]
        out = model.track(
            0, feats[0], bank, T, is_init_cond_frame=True, mask_inputs=prompt_masks(2),
            memory_from_low_res=True,
        )  # fmt: skip
        bank["cond_frame_outputs"][0] = model.memory_entry(out, torch.float32)
        for t in range(1, T - 1):
            out = model.track(t, feats[t], bank, T)
            bank["non_cond_frame_outputs"][t] = model.memory_entry(out, torch.float32)
    return model, bank, feats[T - 1]


def step(model, bank, feats, spatial: SpatialMemory) -> torch.Tensor:
    with torch.inference_mode():
        return model.track(T - 1, feats, bank, T, spatial=spatial, run_mem_encoder=False)[
            "pred_masks"
        ]


def test_an_object_keeping_fewer_frames_gets_its_logits_alone(scene):
    model, bank, feats = scene
    frames = [6, 5, 4, 3, 2, 1]  # most recent first
    entries = [bank["non_cond_frame_outputs"][t] for t in frames]
    # object 0 keeps all six frames; object 1 keeps frames 6, 4, 2 (rows 3..5 unfilled)
    index = torch.tensor([[0, 0], [1, 2], [2, 4], [3, 0], [4, 0], [5, 0]])
    valid = torch.ones(6, 2, dtype=torch.bool)
    valid[3:, 1] = False
    together = step(model, bank, feats, SpatialMemory(entries, index, valid=valid))
    for obj, rows in ((0, [0, 1, 2, 3, 4, 5]), (1, [0, 2, 4])):
        one = slice(obj, obj + 1)
        alone = step(
            model,
            objects(bank, one),
            feats.select(torch.tensor([obj])),
            SpatialMemory([objects(e, one) for e in entries], torch.tensor(rows)[:, None]),
        )
        torch.testing.assert_close(together[one], alone, rtol=0, atol=1e-5)
    # the unfilled rows matter without the mask: they would be attended to
    unmasked = step(model, bank, feats, SpatialMemory(entries, index))
    assert not torch.allclose(unmasked[1], together[1], atol=1e-3)
    torch.testing.assert_close(unmasked[0], together[0], rtol=0, atol=1e-5)


def test_every_row_valid_is_no_mask(scene):
    model, bank, feats = scene
    entries = [bank["non_cond_frame_outputs"][t] for t in (6, 5, 4)]
    index = torch.tensor([[0, 0], [1, 2], [2, 1]])
    plain = step(model, bank, feats, SpatialMemory(entries, index))
    masked = step(model, bank, feats, SpatialMemory(entries, index, valid=torch.ones(3, 2) > 0))
    torch.testing.assert_close(masked, plain, rtol=0, atol=1e-5)
