"""Motion-Guided Prompting: the sparse and dense branches combined into SAM 2 prompts.

How the prompts enter SAM 2. On a tracked frame SAM 2 feeds its mask decoder two prompt
tokens (an empty click and the padding token) and a dense embedding (`no_mask_embed`).
MGP adds its sparse tokens to those two tokens and its dense map to the dense embedding,
right after SAM 2's prompt encoder. Adding, rather than concatenating extra tokens, is what
lets a fresh MGP (zero output layers) leave SAM 2's output bit-for-bit unchanged: an extra
token takes part in every attention softmax of the decoder even when it is zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mosam_train.models.motion.dense import DenseMotionEncoder, warp_backward
from mosam_train.models.motion.sparse import SparseMotionEncoder, forecast_heatmap


@dataclass
class MotionPrompt:
    """What MGP gives one frame's objects.

    sparse: [N, 2, D] residual for SAM 2's prompt tokens; dense: [N, D, h, w];
    region: [N, 1, S, S] in [0, 1], where motion puts the object (for the memory head's
    forecast-agreement input); None where the branch is off or has no input.
    """

    sparse: torch.Tensor | None = None
    dense: torch.Tensor | None = None
    region: torch.Tensor | None = None
    forecast: torch.Tensor | None = None


class MotionGuidedPrompting(nn.Module):
    """`sparse` / `dense` switch the branches; both off is not a valid MGP (use mgp=null)."""

    def __init__(
        self,
        prompt_dim: int,
        embed_size: tuple[int, int],
        image_size: int,
        sparse: bool = True,
        dense: bool = True,
        history: int = 4,
        hidden: int = 128,
        dense_hidden: int = 32,
    ) -> None:
        super().__init__()
        if not (sparse or dense):
            raise ValueError("MGP needs the sparse or the dense branch (or set model.mgp=null)")
        self.embed_size = tuple(embed_size)
        self.image_size = int(image_size)
        self.history = int(history)
        self.sparse = SparseMotionEncoder(prompt_dim, history, hidden) if sparse else None
        self.dense = DenseMotionEncoder(prompt_dim, dense_hidden) if dense else None

    @property
    def needs_flow(self) -> bool:
        return self.dense is not None

    def forward(
        self,
        traj: torch.Tensor | None,
        present: torch.Tensor | None,
        prev_logits: torch.Tensor | None,
        flow: torch.Tensor | None,
        prompt_encoder: nn.Module,
    ) -> MotionPrompt:
        """traj [N, L, K, 2], present [N, L]: keypoint history (oldest first; None when the
        sparse branch is off);
        prev_logits [N, 1, S, S]: the previous frame's mask logits; flow [N, 2, S, S]
        current -> previous."""
        out = MotionPrompt()
        size = self.image_size
        if self.sparse is not None:
            out.forecast, out.sparse = self.sparse(traj, present, prompt_encoder, size)
            out.region = forecast_heatmap(out.forecast, size) * present[:, -1, None, None, None]
        if self.dense is not None and prev_logits is not None and flow is not None:
            prior = warp_backward(torch.sigmoid(prev_logits), flow)
            box = out.region if out.region is not None else torch.zeros_like(prior)
            out.dense = self.dense(prior, box, flow, self.embed_size)
            out.region = prior
        return out
