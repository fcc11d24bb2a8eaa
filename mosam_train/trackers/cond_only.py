"""`tracker=cond_only`: memory holds only the prompted frames."""

from __future__ import annotations

from typing import Any

import torch

from mosam_train.inference.rules import MemoryBank, TrackerRule


class CondOnly(TrackerRule):
    """Every frame is tracked from the prompted frames alone: a baseline that shows what
    SAM 2's memory of its own past predictions buys."""

    def remember(
        self,
        bank: MemoryBank,
        frame_idx: int,
        entry: dict[str, Any],
        out: dict[str, Any],
        *,
        prompted: bool,
        flow: torch.Tensor | None = None,
    ) -> None:
        if prompted:
            super().remember(bank, frame_idx, entry, out, prompted=True, flow=flow)


RULE = CondOnly
