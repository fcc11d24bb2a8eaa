"""Dense motion: the previous mask warped by optical flow (`warp_backward`; flow direction
and providers: `mosam_train.optical_flow`), encoded as a dense prompt.

Input maps at the model's image size: the warped previous mask probability (`prior`), the
sparse forecast's soft box (zeros when the sparse branch is off) and the flow itself in
units of the image size. Output: [N, D, h, w] at SAM 2's image-embedding size, added to the
prompt encoder's dense embedding. The last convolution starts at zero.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from mosam_train.images import area_pool

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
        # Two stride-2 convolutions from 4x the embedding size (SAM's mask-input resolution).
        # Pooling is per channel, so the flow is pooled apart from the masks: once per frame
        # when the objects share it (an expanded batch, as the engine passes it).
        pooled = (embed_size[0] * 4, embed_size[1] * 4)
        masks = area_pool(torch.cat([prior, forecast_box], 1), pooled)
        motion = area_pool(shared_rows(flow) / size, pooled)
        x = torch.cat([masks, motion.expand(prior.shape[0], -1, -1, -1)], 1)
        return self.net(x)


def shared_rows(x: torch.Tensor) -> torch.Tensor:
    """`x[:1]` when every row of `x` is one tensor (a batch expanded from one row, e.g. the
    objects of a frame sharing its flow), else `x`: work on it once, then expand."""
    return x[:1] if x.shape[0] > 1 and x.stride(0) == 0 else x


@functools.lru_cache(maxsize=8)
def _pixel_grid(
    h: int, w: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel column and row indices [2, h, w] and the scale [2, 1, 1] from pixels to
    `grid_sample`'s [-1, 1] (align_corners), made once per size (not per frame); ordinary
    tensors even when first made under inference mode, so training can use them too."""
    with torch.inference_mode(False):
        ys, xs = torch.meshgrid(
            torch.arange(h, device=device, dtype=dtype),
            torch.arange(w, device=device, dtype=dtype),
            indexing="ij",
        )
        scale = [2 / max(w - 1, 1), 2 / max(h - 1, 1)]
        return torch.stack([xs, ys]), torch.tensor(scale, device=device, dtype=dtype)[:, None, None]


def warp_backward(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Move `x` [N, C, H, W] (on the previous frame) onto the current frame.

    flow: current -> previous [N, 2, H, W] in pixels. Pixels that come from outside the
    previous frame read zero.
    """
    h, w = flow.shape[-2:]
    pixels, scale = _pixel_grid(h, w, flow.device, flow.dtype)
    flow = shared_rows(flow)  # the sampling grid once per frame for objects sharing a flow
    grid = ((pixels + flow) * scale - 1).permute(0, 2, 3, 1)  # [n, H, W, (x, y)]
    return F.grid_sample(
        x,
        grid.expand(x.shape[0], -1, -1, -1).to(x.dtype),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )
