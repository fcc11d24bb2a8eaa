"""SAM 2-style prompt simulation for the first frame of a training clip.

Follows `training/model/sam2.py` (SAM2Train): with probability `prob_mask` the GT mask is
the prompt, otherwise points: a noisy GT box with probability `prob_box`, else one
positive click drawn uniformly inside the object. One draw per batch, as upstream, so all
objects of a batch carry the same kind of prompt. The samplers are `sam2`'s own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from sam2.modeling.sam2_utils import get_next_point, sample_box_points


@dataclass(frozen=True)
class PromptSimulation:
    """Probabilities and box noise of the first-frame prompt (SAM 2's training defaults)."""

    prob_mask: float = 0.5
    prob_box: float = 0.5
    box_noise: float = 0.1
    box_noise_bound: int = 20

    def sample(self, gt: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, Any]:
        """Prompt for objects with first-frame GT masks `gt` (bool [N, S, S]).

        Returns {"mask_inputs": [N, 1, S, S]} or {"point_inputs": {"point_coords",
        "point_labels"}} with pixel coordinates at the image size.
        """
        gt = gt[:, None]
        draw = torch.rand(2, generator=generator, device="cpu")
        if draw[0] < self.prob_mask:
            return {"kind": "mask", "mask_inputs": gt.float()}
        if draw[1] < self.prob_box:
            coords, labels = sample_box_points(gt, self.box_noise, self.box_noise_bound)
            kind = "box"
        else:
            coords, labels = get_next_point(gt, None, method="uniform")
            kind = "click"
        return {"kind": kind, "point_inputs": {"point_coords": coords, "point_labels": labels}}
