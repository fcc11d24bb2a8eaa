"""Point and box prompts for the streaming engine, converted exactly as SAM 2's video
predictor converts them (`SAM2VideoPredictor.add_new_points_or_box`).

A mask prompt is a bool array [H, W] at video resolution; a `PointPrompt` holds clicks
and/or a box in pixels of the video. Boxes are `x, y, w, h` (LaSOT's convention) and
pixel-inclusive: the box of a mask whose leftmost pixel column is 10 and rightmost 19 is
x=10, w=10. SAM 2 takes a box as its two corner points, labels 2 (top-left) and 3
(bottom-right), placed on the first and last pixel, (x, y) and (x + w - 1, y + h - 1):
the corners `sam2.modeling.sam2_utils.mask_to_box` gives the boxes SAM 2 trains on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

Box = tuple[float, float, float, float]  # x, y, w, h in pixels of the video

POSITIVE, NEGATIVE, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT = 1, 0, 2, 3


def box_corners(box: Sequence[float]) -> tuple[float, float, float, float]:
    """x, y, w, h -> SAM 2's box x0, y0, x1, y1 (first and last pixel of the box)."""
    x, y, w, h = (float(v) for v in box)
    return x, y, x + max(w - 1.0, 0.0), y + max(h - 1.0, 0.0)


@dataclass(frozen=True)
class PointPrompt:
    """Clicks (label 1 positive, 0 negative) and/or a box on one frame, in video pixels.

    With a box, its corners come first, then the clicks, as SAM 2 orders them.
    """

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: Box | None = None

    def __post_init__(self) -> None:
        points = tuple((float(x), float(y)) for x, y in self.points)
        labels = tuple(int(v) for v in self.labels)
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "labels", labels)
        if len(points) != len(labels):
            raise ValueError(f"{len(points)} points but {len(labels)} labels")
        if any(v not in (POSITIVE, NEGATIVE) for v in labels):
            raise ValueError(f"point labels must be 1 (positive) or 0 (negative), got {labels}")
        if not points and self.box is None:
            raise ValueError("a point prompt needs at least one point or a box")
        if self.box is not None:
            box = tuple(float(v) for v in self.box)
            if len(box) != 4 or not all(math.isfinite(v) for v in box):
                raise ValueError(f"a box is 4 finite numbers x, y, w, h; got {self.box}")
            if box[2] <= 0 or box[3] <= 0:
                raise ValueError(f"box {box} has zero size (w and h must be > 0)")
            object.__setattr__(self, "box", box)

    @classmethod
    def from_box(cls, box: Sequence[float]) -> PointPrompt:
        return cls(box=tuple(box))  # type: ignore[arg-type]

    @property
    def num_points(self) -> int:
        """Points the prompt encoder sees (a box counts two)."""
        return len(self.points) + (2 if self.box is not None else 0)

    def model_inputs(
        self, video_size: tuple[int, int], image_size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(coords [K, 2] float32 at the model's image size, labels [K] int32), computed
        with the same operations as `add_new_points_or_box(normalize_coords=True)`."""
        points = torch.tensor(self.points, dtype=torch.float32).reshape(-1, 2)
        labels = torch.tensor(self.labels, dtype=torch.int32).reshape(-1)
        if self.box is not None:
            corners = torch.tensor(box_corners(self.box), dtype=torch.float32).reshape(2, 2)
            points = torch.cat([corners, points], dim=0)
            box_labels = torch.tensor([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], dtype=torch.int32)
            labels = torch.cat([box_labels, labels], dim=0)
        height, width = video_size
        points = points / torch.tensor([width, height])
        return points * image_size, labels


Prompt = np.ndarray | PointPrompt
