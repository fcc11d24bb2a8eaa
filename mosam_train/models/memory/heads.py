"""The learned memory-confidence heads: one score per memory frame, one map per frame.

Both rate a frame once, when its memory is written (their inputs are that frame's own
outputs), so selection later only compares stored numbers. Inputs are detached: the heads
learn from their own supervision and from the tracking loss through the attention bias,
never by reshaping what they rate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mosam_train.images import area_pool

FRAME_INPUTS = ("predicted_iou", "object_score", "forecast_agreement", "has_forecast")


class FrameConfidenceHead(nn.Module):
    """Logit of "this frame's mask is right": SAM 2's predicted IoU, its object-score logit,
    the agreement (soft IoU) of the motion forecast with the mask, and the memory features
    pooled (mean and max). The last layer starts at zero: every frame rates equal."""

    def __init__(self, mem_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(len(FRAME_INPUTS) + 2 * mem_dim, hidden), nn.GELU(), nn.Linear(hidden, 1)
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(
        self,
        predicted_iou: torch.Tensor,
        object_score: torch.Tensor,
        agreement: torch.Tensor | None,
        maskmem: torch.Tensor,
    ) -> torch.Tensor:
        """[N] each (agreement may be None), maskmem [N, M, h, w] -> logits [N]."""
        n = maskmem.shape[0]
        mem = maskmem.detach().float()
        has = torch.full((n,), float(agreement is not None), device=mem.device)
        agree = agreement.detach().float() if agreement is not None else torch.zeros_like(has)
        x = torch.cat(
            [
                torch.stack(
                    [predicted_iou.detach().float(), object_score.detach().float(), agree, has], 1
                ),
                mem.mean((2, 3)),
                mem.amax((2, 3)),
            ],
            1,
        )
        return self.mlp(x)[:, 0]


class PixelConfidenceHead(nn.Module):
    """Per-token confidence at memory resolution from the memory features and the mask.

    Returns logits z; the attention bias is `gate * logsigmoid(z)` <= 0 for gate >= 0,
    i.e. confidence sigma(z)**gate. `gate` starts at 0: the initial map passes everything.
    """

    def __init__(self, mem_dim: int, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(mem_dim + 1, hidden, 3, padding=1), nn.GELU(), nn.Conv2d(hidden, 1, 1)
        )
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, maskmem: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        """maskmem [N, M, h, w], mask logits [N, 1, H, W] -> z [N, 1, h, w]."""
        size = maskmem.shape[-2:]
        prob = area_pool(torch.sigmoid(mask_logits.detach().float()), size)
        return self.net(torch.cat([maskmem.detach().float(), prob], 1))

    def bias(self, z: torch.Tensor) -> torch.Tensor:
        return self.gate * F.logsigmoid(z)
