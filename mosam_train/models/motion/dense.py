"""Dense motion: the previous mask warped by optical flow, encoded as a dense prompt.

Input maps at the model's image size: the warped previous mask probability (`prior`), the
sparse forecast's soft box (zeros when the sparse branch is off) and the flow itself in
units of the image size. Output: [N, D, h, w] at SAM 2's image-embedding size, added to the
prompt encoder's dense embedding. The last convolution starts at zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DENSE_INPUTS = ("prior", "forecast_box", "flow_x", "flow_y")


class DenseMotionEncoder(nn.Module):
    def __init__(self, prompt_dim: int, hidden: int = 32) -> None:
        super().__init__()
        c = len(DENSE_INPUTS)
        self.net = nn.Sequential(
            nn.Conv2d(c, hidden, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, prompt_dim, 1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(
        self,
        prior: torch.Tensor,
        forecast_box: torch.Tensor,
        flow: torch.Tensor,
        embed_size: tuple[int, int],
    ) -> torch.Tensor:
        """prior, forecast_box [N, 1, S, S]; flow [N, 2, S, S] in pixels -> [N, D, h, w]."""
        size = prior.shape[-1]
        x = torch.cat([prior, forecast_box, flow / size], 1)
        # Two stride-2 convolutions from 4x the embedding size (SAM's mask-input resolution).
        x = F.adaptive_avg_pool2d(x, (embed_size[0] * 4, embed_size[1] * 4))
        return self.net(x)
