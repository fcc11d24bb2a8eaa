"""Motion inputs: flow direction and warping, keypoints, forecasts."""

import numpy as np
import pytest
import torch

from mosam_train.images import normalize_frames
from mosam_train.models.losses import auxiliary_losses
from mosam_train.models.motion.dense import warp_backward
from mosam_train.models.motion.prompting import MotionGuidedPrompting
from mosam_train.models.motion.sparse import (
    KEYPOINTS,
    SparseMotionEncoder,
    constant_velocity,
    hold_last_visible,
    mask_keypoints,
)
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


def _keypoints_pixel_by_pixel(mask: np.ndarray) -> np.ndarray:
    """The keypoints of one bool mask [s, s] from its pixel list (float64): centroid, box
    corners (pixel edges), then the centroids of the pixels before / after the centroid
    along y and x (tl, tr, bl, br; an empty quadrant takes the centroid)."""
    s = mask.shape[0]
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return np.zeros((len(KEYPOINTS), 2))
    x, y = (xs + 0.5) / s, (ys + 0.5) / s
    cx, cy = x.mean(), y.mean()
    kp = [(cx, cy), (xs.min() / s, ys.min() / s), ((xs.max() + 1) / s, (ys.max() + 1) / s)]
    for top in (True, False):
        for left in (True, False):
            q = ((y < cy) == top) & ((x < cx) == left)
            kp.append((x[q].mean(), y[q].mean()) if q.any() else (cx, cy))
    return np.array(kp)


@pytest.mark.parametrize("size", [8, 32, 256])
def test_keypoints_match_a_pixel_by_pixel_count(size):
    gen = torch.Generator().manual_seed(size)
    noise = torch.randn(6, 1, size, size, generator=gen)
    logits = torch.nn.functional.avg_pool2d(noise, 5, 1, 2) + 0.1  # blobs
    logits[1] = -1.0  # absent
    logits[2] = -1.0
    logits[2, 0, 3, 5] = 1.0  # a single pixel: three empty quadrants
    kp, present = mask_keypoints(logits)
    assert present.tolist() == [True, False, True, True, True, True]
    for i in range(6):
        expected = _keypoints_pixel_by_pixel(logits[i, 0].numpy() > 0)
        assert kp[i].double().numpy() == pytest.approx(expected, abs=1e-6), i


def test_keypoints_take_square_masks():
    with pytest.raises(ValueError, match="square"):
        mask_keypoints(torch.zeros(1, 1, 8, 16))


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


def _trajectory_with_a_loss() -> tuple[torch.Tensor, torch.Tensor]:
    """One object seen at x = 0.5, 0.6, 0.7 and then lost: its last mask is empty, so its
    keypoints there are mask_keypoints' zeros."""
    k = len(KEYPOINTS)
    seen = [torch.tensor([x, 0.4]).expand(k, 2) for x in (0.5, 0.6, 0.7)]
    traj = torch.stack([*seen, torch.zeros(k, 2)])[None]  # [1, 4, K, 2]
    present = torch.tensor([[True, True, True, False]])
    return traj, present


def test_a_lost_object_is_forecast_where_it_was_last_seen_not_in_the_corner():
    traj, present = _trajectory_with_a_loss()
    held = hold_last_visible(traj, present)
    assert held[0, 3].tolist() == held[0, 2].tolist()
    encoder = SparseMotionEncoder(prompt_dim=8, history=4)  # fresh: constant velocity
    forecast = encoder.forecast(traj, present)
    assert forecast[0, :, 0].tolist() == pytest.approx([0.7] * len(KEYPOINTS))
    assert forecast[0, :, 1].tolist() == pytest.approx([0.4] * len(KEYPOINTS))
    # the ablation keeps the empty mask's zeros: the forecast goes to the top-left corner
    ablation = SparseMotionEncoder(prompt_dim=8, history=4, hold_last_visible=False)
    assert (ablation.forecast(traj, present) == 0).all()


def test_hold_last_visible_leaves_frames_before_the_first_sighting_alone():
    traj = torch.rand(2, 5, len(KEYPOINTS), 2)
    present = torch.tensor([[False, True, False, False, True], [False] * 5])
    held = hold_last_visible(traj, present)
    assert torch.equal(held[0, [0, 1, 4]], traj[0, [0, 1, 4]])
    assert torch.equal(held[0, 2], traj[0, 1]) and torch.equal(held[0, 3], traj[0, 1])
    assert torch.equal(held[1], traj[1])  # never seen: nothing to hold


def _mgp(visibility: str) -> MotionGuidedPrompting:
    torch.manual_seed(0)
    mgp = MotionGuidedPrompting(8, (4, 4), 64, sparse=True, dense=True, visibility=visibility)
    with torch.no_grad():  # non-zero output layers: a trained MGP that pushes
        for p in mgp.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return mgp


class _PromptEncoder(torch.nn.Module):
    """What `embed_points` reads of SAM 2's prompt encoder."""

    def __init__(self) -> None:
        super().__init__()
        from sam2.modeling.position_encoding import PositionEmbeddingRandom

        self.pe_layer = PositionEmbeddingRandom(4)
        self.point_embeddings = torch.nn.ModuleList(torch.nn.Embedding(1, 8) for _ in range(4))
        self.input_image_size = (64, 64)


@pytest.mark.parametrize("visibility", ["learned", "object_score"])
def test_mgp_stops_pushing_while_the_object_is_hidden(visibility):
    mgp, encoder = _mgp(visibility), _PromptEncoder()
    traj = torch.rand(2, 4, len(KEYPOINTS), 2)
    present = torch.ones(2, 4, dtype=torch.bool)
    prev, flow = torch.randn(2, 1, 64, 64), torch.randn(2, 2, 64, 64)
    with torch.no_grad():
        if mgp.visibility_head is not None:  # the learned correction at zero: SAM 2's belief
            mgp.visibility_head[-1].weight.zero_()
            mgp.visibility_head[-1].bias.zero_()
    hidden = torch.tensor([[8.0, 8.0, -30.0, -30.0], [8.0, 8.0, 8.0, 30.0]])  # [N, L]
    gated = mgp(traj, present, prev, flow, encoder, hidden)
    mgp.visibility = "none"  # the same weights, ungated
    ungated = mgp(traj, present, prev, flow, encoder, hidden)
    for part in ("sparse", "dense"):
        g, u = getattr(gated, part), getattr(ungated, part)
        assert u[0].abs().max() > 1e-3
        assert g[0].abs().max() < 1e-9 * u[0].abs().max() + 1e-12  # hidden: no push
        assert torch.allclose(g[1], u[1], rtol=1e-6, atol=1e-6)  # visible: the full push
    assert (gated.visibility is not None) == (visibility == "learned")


def test_the_truth_gate_passes_the_whole_push_where_the_object_is_and_none_elsewhere():
    """The oracle gate (eval's rules.visibility=truth) reads each object's true presence,
    whatever SAM 2 believes; where the frame is not annotated it is SAM 2's belief."""
    mgp, encoder = _mgp("learned"), _PromptEncoder()
    traj = torch.rand(2, 4, len(KEYPOINTS), 2)
    present = torch.ones(2, 4, dtype=torch.bool)
    prev, flow = torch.randn(2, 1, 64, 64), torch.randn(2, 2, 64, 64)
    scores = torch.tensor([[8.0, 8.0, -30.0, -30.0], [-30.0, -30.0, -30.0, -30.0]])
    mgp.visibility = "none"
    ungated = mgp(traj, present, prev, flow, encoder, scores)
    mgp.visibility = "truth"  # object 0 hidden by SAM 2's belief but present; 1 the reverse
    truth = mgp(traj, present, prev, flow, encoder, scores, torch.tensor([True, False]))
    for part in ("sparse", "dense"):
        g, u = getattr(truth, part), getattr(ungated, part)
        assert torch.equal(g[0], u[0]) and u[0].abs().max() > 1e-3
        assert g[1].abs().max() == 0.0
    mgp.visibility_head = None  # not annotated: SAM 2's belief, as `object_score`
    belief = mgp(traj, present, prev, flow, encoder, scores, None)
    assert belief.sparse[0].abs().max() < 1e-9 and belief.sparse[1].abs().max() < 1e-9


def test_the_learned_visibility_gate_trains_on_presence():
    mgp, encoder = _mgp("learned"), _PromptEncoder()
    traj = torch.rand(2, 4, len(KEYPOINTS), 2)
    present = torch.ones(2, 4, dtype=torch.bool)
    scores = torch.tensor([[2.0, 2.0, 2.0, 2.0], [-2.0, -2.0, -2.0, -2.0]])
    out = mgp(traj, present, torch.randn(2, 1, 64, 64), torch.randn(2, 2, 64, 64), encoder, scores)
    high = torch.zeros(2, 1, 64, 64)
    outputs = [{}, {"pred_masks_high_res": high, "visibility_logit": out.visibility}]
    gt = torch.zeros(2, 2, 64, 64, dtype=torch.bool)
    gt[1, 1, 10:20, 10:20] = True  # frame 1: object 0 absent, object 1 re-emerging
    losses = auxiliary_losses(outputs, gt)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        out.visibility, torch.tensor([0.0, 1.0])
    )
    assert torch.equal(losses["visibility"], expected)
    losses["visibility"].backward()
    assert mgp.visibility_head[0].weight.grad.abs().sum() > 0
