"""Which per-frame model a model config makes, from the parts it gives.

The Lightning module builds its model here and so never names a model class: SAM 2 alone
(`model=sam2`), or SAM 2 with MoSAM's motion prompts and/or memory selection on top
(`model=mosam`). A new model variant is a `VideoSAM` subclass that declares what it needs
(`needs_flow`, `added_parameter_prefixes`) plus its branch here.
"""

from __future__ import annotations

from typing import Any

from sam2.modeling.sam2_base import SAM2Base

from mosam_train.models.mosam import MoSAMTracker
from mosam_train.models.video_sam import VideoSAM


def build_video_model(
    sam2: SAM2Base,
    mgp: dict[str, Any] | None = None,
    stms: dict[str, Any] | None = None,
    flow: dict[str, Any] | None = None,
) -> VideoSAM:
    """`MoSAMTracker` when motion prompting (`mgp`) or memory selection (`stms`) is given
    (`flow`: its optical flow), else SAM 2 as it is (`VideoSAM`)."""
    if mgp or stms:
        return MoSAMTracker(sam2, mgp, stms, flow)
    return VideoSAM(sam2)
