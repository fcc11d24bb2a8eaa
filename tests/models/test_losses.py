"""The supervision of the parts MoSAM adds: what the frame-confidence head learns."""

import pytest
import torch
import torch.nn.functional as F

from mosam_train.models.losses import auxiliary_losses, frame_target


def _masks() -> tuple[torch.Tensor, torch.Tensor]:
    """Three objects on one frame: hidden and predicted empty; hidden but predicted present;
    visible and half found."""
    pred = torch.zeros(3, 8, 8, dtype=torch.bool)
    gt = torch.zeros(3, 8, 8, dtype=torch.bool)
    pred[1, :2] = True
    gt[2, :4] = True
    pred[2, :2] = True
    return pred, gt


def test_an_empty_memory_of_a_hidden_object_is_worth_nothing():
    pred, gt = _masks()
    assert frame_target(pred, gt, "visible_iou").tolist() == [0.0, 0.0, 0.5]
    # the ablation: "hidden and predicted empty" counted as a perfect frame
    assert frame_target(pred, gt, "iou").tolist() == [1.0, 0.0, 0.5]
    with pytest.raises(ValueError, match="frame_target"):
        frame_target(pred, gt, "dice")


def test_the_frame_head_is_trained_towards_the_visibility_aware_target():
    pred, gt = _masks()
    score = torch.tensor([3.0, -1.0, 0.5])
    high = torch.where(pred, 10.0, -10.0)[:, None]
    outputs = [{}, {"pred_masks_high_res": high, "frame_score": score}]
    targets = torch.stack([gt, gt])
    losses = auxiliary_losses(outputs, targets)
    expected = F.binary_cross_entropy_with_logits(score, torch.tensor([0.0, 0.0, 0.5]))
    assert torch.equal(losses["frame_conf"], expected)
    assert set(losses) == {"frame_conf"}  # only the parts that ran
