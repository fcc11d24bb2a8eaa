"""J&F (DAVIS 2017 semantics): plain numpy functions in `jf`, a torchmetrics Metric in
`metric` (imported on first use: torchmetrics takes seconds to import, and the scoring
CLI `python -m mosam_train.metrics.score` does not need it)."""

from typing import TYPE_CHECKING, Any

from mosam_train.metrics.jf import (
    APPEARANCE,
    DAVIS,
    LVOS,
    PROTOCOLS,
    ROW_FIELDS,
    SAV,
    ObjectScore,
    Protocol,
    ScoredVideo,
    aggregate,
    bootstrap_interval,
    boundary_f,
    boundary_radius,
    davis_scored_frames,
    default_protocol,
    diagnostics,
    evaluate_frame,
    evaluate_video,
    frame_statistics,
    jaccard,
    object_frames,
    score_record,
    score_video,
    seg2bmap,
)

if TYPE_CHECKING:
    from mosam_train.metrics.metric import VideoJF, video_key

__all__ = [
    "APPEARANCE",
    "DAVIS",
    "LVOS",
    "PROTOCOLS",
    "ROW_FIELDS",
    "SAV",
    "ObjectScore",
    "Protocol",
    "ScoredVideo",
    "VideoJF",
    "aggregate",
    "bootstrap_interval",
    "boundary_f",
    "boundary_radius",
    "davis_scored_frames",
    "default_protocol",
    "diagnostics",
    "evaluate_frame",
    "evaluate_video",
    "frame_statistics",
    "jaccard",
    "object_frames",
    "score_record",
    "score_video",
    "seg2bmap",
    "video_key",
]


def __getattr__(name: str) -> Any:
    if name in ("VideoJF", "video_key"):
        from mosam_train.metrics import metric

        return getattr(metric, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
