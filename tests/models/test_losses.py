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


def _class_loss(class_alpha: float, present: bool, logit: float) -> float:
    from mosam_train.models.losses import SAM2VideoLoss

    loss = SAM2VideoLoss(class_alpha=class_alpha)
    gt = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    gt[:, :, 2:5, 2:5] = True  # frame 0 (the prompt) always present
    gt[1] = gt[1] if present else False
    outputs = [
        {
            "multimasks_high_res": torch.zeros(1, 1, 8, 8),
            "ious": torch.zeros(1, 1),
            "object_score_logits": torch.full((1, 1), logit),
        }
        for _ in range(2)
    ]
    return float(loss(outputs, gt)["loss_class"])


def test_class_alpha_weighs_absent_frames_in_the_object_score_term():
    # plain BCE (SAM 2's) by default: the same logit costs what BCE says
    bce = F.binary_cross_entropy_with_logits(torch.tensor(2.0), torch.tensor(0.0))
    bce_present = F.binary_cross_entropy_with_logits(torch.tensor(2.0), torch.tensor(1.0))
    assert _class_loss(-1.0, False, 2.0) == pytest.approx(float(bce + bce_present), rel=1e-5)
    # alpha 0.1: a present frame weighs 0.1, an absent one 0.9
    weighted = 0.9 * bce + 0.1 * bce_present
    assert _class_loss(0.1, False, 2.0) == pytest.approx(float(weighted), rel=1e-5)
    with pytest.raises(ValueError, match=r"model\.loss\.class_alpha=1\.5"):
        _class_loss(1.5, False, 2.0)
