"""Writers of small datasets in each real on-disk layout, made by code (never downloaded).

Each `write_*` function writes one layout under a root and returns the ground truth it was
made from (`Truth`), so reader tests and the check CLI's tests compare against the same
numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class VideoTruth:
    """What a reader must report for one video. Frame indices are record indices."""

    num_frames: int
    annotated_frames: list[int]
    object_ids: list[int]
    first_appearance: dict[int, int]
    # pixel_counts[object_id][frame] for every annotated frame (0 = absent)
    pixel_counts: dict[int, dict[int, int]] = field(default_factory=dict)
    height: int = 0
    width: int = 0


Truth = dict[str, VideoTruth]
