"""How run_record turns per-object logits into scored predictions: non-overlapping label
maps for DAVIS-style datasets (each pixel to the object with the highest positive logit, as
SAM 2 writes palette PNGs), each object's own mask for overlapping ones (SA-V)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mosam_train.data.video import VideoRecord
from mosam_train.inference.engine import FrameResult
from mosam_train.inference.vos import label_map, run_record


class Nested(VideoRecord):
    """A person (first id) with a hand inside it (second id), both still for 4 frames."""

    def __init__(self, ids: tuple[int, int], overlapping: bool):
        self.name, self.num_frames, self.height, self.width = "nested", 4, 32, 32
        self.object_ids, self.annotated_frames = ids, (0, 1, 2, 3)
        self.overlapping = overlapping

    def load_frame(self, t):
        return np.zeros((32, 32, 3), np.uint8)

    def load_masks(self, t):
        m = np.zeros((2, 32, 32), bool)
        m[0, 4:28, 4:28] = True  # person
        m[1, 10:16, 10:16] = True  # hand, inside the person
        return m


class Oracle:
    """Predicts each object's ground-truth mask exactly, logit `inside[k]` on object k's
    pixels and -10 elsewhere (+10 everywhere: ties where masks overlap)."""

    def __init__(self, record, inside=(10.0, 10.0)):
        self.record = record
        self.inside = torch.tensor(inside)[:, None, None]

    def propagate(self, frames, prompts):
        for t in range(frames.num_frames):
            gt = torch.from_numpy(self.record.load_masks(t))
            logits = torch.where(gt, self.inside, torch.tensor(-10.0))
            yield FrameResult(t, list(self.record.object_ids), logits, torch.ones(2))


def test_overlapping_videos_are_scored_per_object_with_any_ids():
    record = Nested((0, 1000), overlapping=True)  # SA-V: folder 000, auto masklet 1000
    scores = run_record(Oracle(record), record, image_size=32)
    assert [(s.object_id, s.j_mean, s.f_mean) for s in scores] == [(0, 1.0, 1.0), (1000, 1.0, 1.0)]


def test_label_map_videos_resolve_overlaps_like_png_predictions():
    record = Nested((1, 2), overlapping=False)
    scores = {s.object_id: s for s in run_record(Oracle(record), record, image_size=32)}
    assert scores[1].j_mean == 1.0  # equal logits: the smaller id wins the overlap ...
    assert scores[2].j_mean == 0.0  # ... so the hand disappears into the person


def test_label_map_videos_give_overlaps_to_the_higher_logit():
    record = Nested((1, 2), overlapping=False)
    oracle = Oracle(record, inside=(10.0, 15.0))  # the hand is more confident
    scores = {s.object_id: s for s in run_record(oracle, record, image_size=32)}
    assert scores[2].j_mean == 1.0  # the hand keeps its 36 pixels ...
    assert scores[1].j_mean == pytest.approx((576 - 36) / 576)  # ... cut out of the person


def test_label_map_gives_each_pixel_to_the_highest_positive_logit():
    # ids in engine order 3, 1 (not sorted); one row of 5 pixels
    logits = torch.tensor([[[8.0, 4.0, 1.0, -0.5, -3.0]], [[2.0, 4.0, 9.0, -1.0, -2.0]]])
    # 3 higher; tie -> smaller id 1; 1 higher; both <= 0 -> background (twice)
    assert label_map(logits, [3, 1]).tolist() == [[3, 1, 1, 0, 0]]
    assert label_map(logits, [3, 1]).dtype == np.uint8
    assert label_map(logits[:1], [7]).tolist() == [[7, 7, 7, 0, 0]]  # one object: logit > 0


def test_label_map_refuses_ids_it_cannot_hold():
    with pytest.raises(ValueError, match="per-object"):
        label_map(torch.ones(1, 4, 4), [0])
