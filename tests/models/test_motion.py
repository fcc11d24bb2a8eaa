"""Motion inputs: flow direction and warping, keypoints, forecasts."""

import numpy as np
import pytest
import torch

from mosam_train.images import normalize_frames
from mosam_train.models.motion.dense import warp_backward
from mosam_train.models.motion.sparse import constant_velocity, mask_keypoints
from mosam_train.optical_flow import FarnebackFlow, RaftFlow, build_flow_provider

DX, DY = 6, -4  # the object moves right 6 px and up 4 px from previous to current


def square(s: int, x0: int, y0: int, w: int = 24) -> torch.Tensor:
    m = torch.zeros(1, 1, s, s)
    m[..., y0 : y0 + w, x0 : x0 + w] = 1
    return m


def test_warp_moves_a_mask_by_a_known_translation():
    prev = square(64, 20, 30)
    flow = torch.zeros(1, 2, 64, 64)
    flow[:, 0], flow[:, 1] = -DX, -DY  # current -> previous
    warped = warp_backward(prev, flow)
    assert torch.allclose(warped, square(64, 20 + DX, 30 + DY), atol=1e-4)


def textured_pair(s: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """(current, previous): a smooth random texture that moved by (DX, DY)."""
    rng = np.random.default_rng(0)
    big = rng.random((s // 4 + 4, s // 4 + 4, 3))
    tex = np.kron(big, np.ones((4, 4, 1)))
    import cv2

    tex = (cv2.GaussianBlur(tex, (0, 0), 1.5) * 255).astype(np.uint8)
    prev = tex[8 : 8 + s, 8 : 8 + s]
    cur = tex[8 - DY : 8 - DY + s, 8 - DX : 8 - DX + s]
    return normalize_frames(np.stack([cur])), normalize_frames(np.stack([prev]))


@pytest.mark.parametrize("size", [None, 48])  # 48: computed at half size, scaled back
def test_farneback_flow_points_from_current_to_previous(size):
    current, previous = textured_pair()
    flow = FarnebackFlow(max_side=size)(current, previous)
    assert flow.shape == (1, 2, 96, 96)
    inner = flow[0, :, 16:-16, 16:-16]
    # content at x in the current frame sat at x - (DX, DY) in the previous one
    assert inner[0].median().item() == pytest.approx(-DX, abs=0.5)
    assert inner[1].median().item() == pytest.approx(-DY, abs=0.5)


def test_farneback_warp_carries_the_previous_mask_onto_the_current_frame():
    current, previous = textured_pair()
    flow = FarnebackFlow()(current, previous)
    prev_mask = square(96, 30, 40)
    warped = warp_backward(prev_mask, flow) > 0.5
    target = square(96, 30 + DX, 40 + DY) > 0.5
    iou = (warped & target).sum() / (warped | target).sum()
    assert iou > 0.9, iou


def test_raft_provider_loads_weights_and_keeps_the_direction(tmp_path):
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    path = tmp_path / "raft_small.pth"
    torch.save(raft_small(weights=None).state_dict(), path)
    provider = build_flow_provider("raft", weights=str(path), num_flow_updates=2)
    current, previous = textured_pair(60)  # not a multiple of 8: padded and cropped
    flow = provider(current, previous)
    assert flow.shape == (1, 2, 60, 60) and torch.isfinite(flow).all()
    assert not provider.train().training  # a fixed estimator


def test_raft_provider_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"raft_small.*farneback"):
        RaftFlow(tmp_path / "nope.pth")


def test_unknown_provider():
    with pytest.raises(ValueError, match="farneback"):
        build_flow_provider("pwc")


def test_keypoints_of_a_square_and_of_nothing():
    logits = torch.full((2, 1, 32, 32), -10.0)
    logits[0, 0, 8:16, 4:20] = 10.0  # x 4..19, y 8..15
    kp, present = mask_keypoints(logits)
    assert present.tolist() == [True, False]
    cx, cy = kp[0, 0].tolist()
    assert cx == pytest.approx(12 / 32) and cy == pytest.approx(12 / 32)
    assert kp[0, 1].tolist() == pytest.approx([4 / 32, 8 / 32])
    assert kp[0, 2].tolist() == pytest.approx([20 / 32, 16 / 32])
    # quadrant centroids sit around the centroid
    q = kp[0, 3:]
    assert (q[[0, 2], 0] < cx).all() and (q[[1, 3], 0] > cx).all()
    assert (q[:2, 1] < cy).all() and (q[2:, 1] > cy).all()
    assert (kp[1] == 0).all()


def test_constant_velocity_holds_position_after_a_gap():
    traj = torch.tensor([[0.1, 0.1], [0.2, 0.1], [0.3, 0.1]])[None, :, None]  # [1, 3, 1, 2]
    present = torch.tensor([[True, True, True]])
    assert constant_velocity(traj, present)[0, 0].tolist() == pytest.approx([0.4, 0.1])
    present = torch.tensor([[True, False, True]])
    assert constant_velocity(traj, present)[0, 0].tolist() == pytest.approx([0.3, 0.1])


def test_embed_points_equals_sam2_embed_points_bit_for_bit(micro):
    from mosam_train.models.motion.sparse import KEYPOINT_LABELS, embed_points

    encoder = micro().sam_prompt_encoder
    coords = torch.rand(3, len(KEYPOINT_LABELS), 2) * 160 - 16  # some outside the frame
    labels = torch.tensor(KEYPOINT_LABELS)
    expected = encoder._embed_points(coords, labels.expand(3, -1), pad=False)
    assert torch.equal(embed_points(encoder, coords, labels), expected)
