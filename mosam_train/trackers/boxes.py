"""Boxes of masks, batched over objects and candidates: what box-level tracker rules
(SAMURAI's Kalman filter on the chosen mask's box) read of SAM 2's candidate masks.

Boxes are xyxy in the masks' pixel grid (SAM 2's model space, e.g. 1024 x 1024 for its
high-resolution masks), with SAMURAI's convention: x2, y2 are the last pixel's index, so a
one-pixel mask has width and height 0, and an empty mask has the box [0, 0, 0, 0].
"""

from __future__ import annotations

import torch
from torchvision.ops import masks_to_boxes


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """The box of each mask: [..., H, W] (logits or scores; a pixel is in where > 0) ->
    [..., 4] float64 xyxy, extents of the pixels in, [0, 0, 0, 0] for an empty mask."""
    lead = masks.shape[:-2]
    flat = (masks > 0).reshape(-1, *masks.shape[-2:])
    return masks_to_boxes(flat).to(torch.float64).reshape(*lead, 4)


def xyxy_to_xyah(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] xyxy -> (centre x, centre y, aspect w / h, height); a box without height
    (empty, or one pixel row) has aspect 0, not 0 / 0."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    w, h = x2 - x1, y2 - y1
    aspect = torch.where(h > 0, w / torch.where(h > 0, h, 1), 0)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, aspect, h], -1)


def xyah_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (centre x, centre y, aspect w / h, height) -> xyxy."""
    cx, cy, a, h = boxes.unbind(-1)
    w = a * h
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def box_iou(boxes: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """IoU of each object's box [N, 4] with each of its candidate boxes [N, K, 4] -> [N, K].
    A box without area (empty, or a negative extent, as a Kalman prediction may have)
    overlaps nothing: IoU 0 (never 0 / 0)."""
    a = boxes[:, None, :]
    lo = torch.maximum(a[..., :2], candidates[..., :2])
    hi = torch.minimum(a[..., 2:], candidates[..., 2:])
    inter = (hi - lo).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_c = (candidates[..., 2:] - candidates[..., :2]).clamp(min=0).prod(-1)
    union = area_a + area_c - inter
    return torch.where(union > 0, inter / torch.where(union > 0, union, 1), 0)
