"""J&F (DAVIS 2017 semantics): plain numpy functions in `jf`, a torchmetrics Metric in `metric`."""

from mosam_train.metrics.jf import (
    ObjectScore,
    aggregate,
    boundary_f,
    boundary_radius,
    davis_scored_frames,
    evaluate_frame,
    evaluate_video,
    frame_statistics,
    jaccard,
    score_record,
    score_video,
    seg2bmap,
)
from mosam_train.metrics.metric import VideoJF, video_key

__all__ = [
    "ObjectScore",
    "VideoJF",
    "aggregate",
    "boundary_f",
    "boundary_radius",
    "davis_scored_frames",
    "evaluate_frame",
    "evaluate_video",
    "frame_statistics",
    "jaccard",
    "score_record",
    "score_video",
    "seg2bmap",
    "video_key",
]
