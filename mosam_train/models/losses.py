"""SAM 2's video training loss, used as upstream defines it.

`training.loss_fns.MultiStepMultiMasksAndIous` (shipped with `sam2`) is the reference
implementation: focal x20, dice x1, IoU-prediction L1 x1, object-score BCE x1, each divided
by the number of objects and summed over frames; with several masks only the one with the
lowest 20*focal+dice back-propagates; mask terms count only where the object is present.
This module adapts our per-frame outputs to its input format.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

LOSS_TERMS = ("loss_mask", "loss_dice", "loss_iou", "loss_class")


class SAM2VideoLoss(nn.Module):
    """Weights default to the SAM 2.1 fine-tuning recipe. `focal_alpha` weighs object
    pixels in the focal term (SAM 2: 0.25, i.e. background 3x heavier). `class_alpha`
    weighs frames where the object is present in the object-score term (SAM 2: -1, plain
    BCE): absent frames are few in most clips, so a base can learn to call everything
    present."""

    def __init__(
        self,
        weight_mask: float = 20.0,
        weight_dice: float = 1.0,
        weight_iou: float = 1.0,
        weight_class: float = 1.0,
        supervise_all_iou: bool = True,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        class_alpha: float = -1.0,
    ) -> None:
        super().__init__()
        if not (class_alpha == -1.0 or 0.0 < class_alpha < 1.0):
            raise ValueError(
                f"model.loss.class_alpha={class_alpha}: the weight of present frames in the "
                f"object-score term must be in (0, 1), or -1 for plain BCE (SAM 2's)."
            )
        # Imported here: the module pulls in tensorboard and tensordict (seconds of import).
        from training.loss_fns import MultiStepMultiMasksAndIous

        self.loss = MultiStepMultiMasksAndIous(
            weight_dict={
                "loss_mask": weight_mask,
                "loss_dice": weight_dice,
                "loss_iou": weight_iou,
                "loss_class": weight_class,
            },
            supervise_all_iou=supervise_all_iou,
            focal_alpha=focal_alpha,
            focal_gamma=focal_gamma,
            iou_use_l1_loss=True,
            pred_obj_scores=True,
            focal_gamma_obj_score=0.0,
            focal_alpha_obj_score=class_alpha,
        )

    def forward(
        self, outputs: list[dict[str, Any]], targets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """outputs: one dict per frame from `VideoSAM.forward_clip`; targets: bool [T, N, S, S].

        Returns the weighted total under "loss" and every unweighted term.
        """
        outs = [
            {
                "multistep_pred_multimasks_high_res": [o["multimasks_high_res"]],
                "multistep_pred_ious": [o["ious"]],
                "multistep_object_score_logits": [o["object_score_logits"]],
            }
            for o in outputs
        ]
        losses = self.loss(outs, targets.float())
        result = {k: losses[k] for k in LOSS_TERMS}
        result["loss"] = losses["core_loss"]
        return result


# what the frame-confidence head learns to predict (see `auxiliary_losses`)
FRAME_TARGETS = ("visible_iou", "iou")


def frame_target(pred: torch.Tensor, gt: torch.Tensor, kind: str = "visible_iou") -> torch.Tensor:
    """The frame-confidence target per object [N] from bool masks [N, H, W]: how good the
    frame is as a memory.

    `visible_iou`: the IoU of the predicted mask with the ground truth where the object is
    visible, 0 where it is absent: a memory of "no object here" is what SAM 2 loses the
    object after, so it must never rank first. `iou` (the ablation): plain IoU, with
    absent-and-predicted-empty counted as a perfect 1.
    """
    inter = (pred & gt).flatten(1).sum(1).float()
    union = (pred | gt).flatten(1).sum(1).float()
    iou = inter / union.clamp(min=1)
    if kind == "visible_iou":
        return iou  # union 0 (absent, predicted empty): 0
    if kind == "iou":
        return torch.where(union > 0, iou, torch.ones_like(union))
    raise ValueError(f"model.loss.frame_target={kind!r}: unknown. Fix: one of {FRAME_TARGETS}.")


def auxiliary_losses(
    outputs: list[dict[str, Any]], targets: torch.Tensor, frame_target_kind: str = "visible_iou"
) -> dict[str, torch.Tensor]:
    """Supervision of the parts a model adds to SAM 2, on the tracked frames (frame 0 is
    prompted); only the terms whose part ran (whose output is present) are returned.

    frame_conf: BCE of the frame score against `frame_target`. pixel_conf: BCE of the pixel
    map against the fraction of correctly predicted pixels under each memory token.
    visibility: BCE of MGP's learned visibility logit against ground-truth presence.
    """
    frame, pixel, visibility = [], [], []
    for out, gt in zip(outputs[1:], targets[1:], strict=True):
        pred = out["pred_masks_high_res"][:, 0].detach() > 0
        if "frame_score" in out:
            target = frame_target(pred, gt, frame_target_kind)
            frame.append(F.binary_cross_entropy_with_logits(out["frame_score"], target))
        if "pixel_logits" in out:
            z = out["pixel_logits"]
            correct = F.adaptive_avg_pool2d((pred == gt).float()[:, None], z.shape[-2:])
            pixel.append(F.binary_cross_entropy_with_logits(z, correct))
        if "visibility_logit" in out:
            present = gt.flatten(1).any(1).float()
            visibility.append(F.binary_cross_entropy_with_logits(out["visibility_logit"], present))
    losses = {}
    for name, terms in (("frame_conf", frame), ("pixel_conf", pixel), ("visibility", visibility)):
        if terms:
            losses[name] = torch.stack(terms).mean()
    return losses
