"""Box and click prompts in the streaming engine reproduce SAM 2's video predictor
(`add_new_points_or_box`), and `track_boxes` reports what the engine computed."""

import shutil

import numpy as np
import pytest
import torch

from mosam_train.data.formats.davis import read_davis
from mosam_train.inference.boxes import mask_to_box, track_boxes
from mosam_train.inference.engine import VideoPropagator
from mosam_train.inference.prompts import PointPrompt, box_corners
from mosam_train.inference.video_input import VideoFrames, open_video
from mosam_train.models.sam2_builder import build_sam2
from mosam_train.models.video_sam import VideoSAM

PREDICTOR = "sam2.sam2_video_predictor.SAM2VideoPredictor"
NUM_FRAMES = 8  # past the micro model's 7 memory frames


@pytest.fixture(scope="module")
def models(micro):
    sam = micro()  # non-empty masks on most frames
    reference = build_sam2("sam2.1_micro", target=PREDICTOR).eval()
    reference.load_state_dict(sam.state_dict())
    return sam, reference


@pytest.fixture(scope="module")
def clip(small_synthetic, tmp_path_factory):
    """(frame folder, first-frame GT masks [O, H, W]) of the first NUM_FRAMES frames of the
    synthetic val video with the most objects."""
    records = read_davis(small_synthetic, "val")
    rec = max(records, key=lambda r: len(r.object_ids))
    assert len(rec.object_ids) >= 3
    folder = tmp_path_factory.mktemp("clip")
    for t in range(NUM_FRAMES):
        shutil.copy(rec.frame_path(t), folder / rec.frame_path(t).name)
    return folder, rec.load_masks(0)


def _frames(folder) -> VideoFrames:
    return VideoFrames(open_video(folder), 128)


def _inside_point(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    k = len(xs) // 2
    return float(xs[k]), float(ys[k])


def _outside_point(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(~mask)
    return float(xs[0]), float(ys[0])


def _compare(engine_results, expected, ids) -> tuple[float, int, int]:
    max_diff, non_empty, count = 0.0, 0, 0
    for result in engine_results:
        assert result.object_ids == ids
        ref = expected[result.frame_idx]
        max_diff = max(max_diff, (result.logits - ref).abs().max().item())
        non_empty += int((ref > 0).flatten(1).any(1).sum())
        count += ref.shape[0]
    return max_diff, non_empty, count


def test_box_click_and_mask_prompts_on_one_frame_match_sam2(models, clip):
    """Three objects on frame 0: a box, two clicks (one positive, one negative) and a
    mask. The engine batches the box with the clicks (both two points) and the mask
    apart; the predictor runs one object at a time."""
    sam, reference = models
    folder, gt = clip
    a, b, c = 1, 2, 3
    ma, mb, mc = gt[0], gt[1], gt[2]
    box = mask_to_box(ma)
    clicks = [_inside_point(mb), _outside_point(mb)]

    state = reference.init_state(str(folder))
    reference.add_new_points_or_box(state, 0, a, box=list(box_corners(box)))
    reference.add_new_points_or_box(state, 0, b, points=clicks, labels=[1, 0])
    reference.add_new_mask(state, 0, c, mc)
    expected = {t: lg[:, 0].clone() for t, _, lg in reference.propagate_in_video(state)}

    prompts = {
        0: {
            a: PointPrompt.from_box(box),
            b: PointPrompt(points=tuple(clicks), labels=(1, 0)),
            c: mc,
        }
    }
    engine = VideoPropagator(VideoSAM(sam))
    results = engine.propagate(_frames(folder), prompts)
    max_diff, non_empty, count = _compare(results, expected, [a, b, c])
    assert [g.object_ids for g in engine.groups] == [[c], [a, b]]
    assert count == NUM_FRAMES * 3
    assert non_empty > 0.8 * count, (non_empty, count)
    assert max_diff <= 1e-3, max_diff


def test_point_sets_of_different_sizes_match_sam2(models, clip):
    """One click for one object, a box plus a click for another: different point counts
    (1 and 3) are separate batches, so each gets exactly the predictor's result (one
    click uses multimask output, three points do not)."""
    sam, reference = models
    folder, gt = clip
    a, b = 1, 2
    click_a = _inside_point(gt[0])
    box_b, click_b = mask_to_box(gt[1]), _inside_point(gt[1])

    state = reference.init_state(str(folder))
    reference.add_new_points_or_box(state, 0, a, points=[click_a], labels=[1])
    reference.add_new_points_or_box(
        state, 0, b, points=[click_b], labels=[1], box=list(box_corners(box_b))
    )
    expected = {t: lg[:, 0].clone() for t, _, lg in reference.propagate_in_video(state)}

    prompts = {
        0: {
            a: PointPrompt(points=(click_a,), labels=(1,)),
            b: PointPrompt(points=(click_b,), labels=(1,), box=box_b),
        }
    }
    engine = VideoPropagator(VideoSAM(sam))
    max_diff, non_empty, count = _compare(
        engine.propagate(_frames(folder), prompts), expected, [a, b]
    )
    assert [g.point_inputs["point_labels"].shape for g in engine.groups] == [(1, 1), (1, 3)]
    assert non_empty > 0.8 * count, (non_empty, count)
    assert max_diff <= 1e-3, max_diff


def test_track_boxes_reports_the_engines_masks_and_their_boxes(models, clip):
    sam, _ = models
    folder, gt = clip
    boxes = [mask_to_box(m) for m in gt]
    engine = VideoPropagator(VideoSAM(sam))
    prompts = {0: {k + 1: PointPrompt.from_box(b) for k, b in enumerate(boxes)}}
    direct = {r.frame_idx: r.logits for r in engine.propagate(_frames(folder), prompts)}

    frames = list(track_boxes(engine, _frames(folder), boxes))
    assert [f.frame_idx for f in frames] == list(range(NUM_FRAMES))
    n = len(boxes)
    h, w = gt.shape[1:]
    for f in frames:
        logits = direct[f.frame_idx]
        assert f.masks.shape == (n, h, w) and f.masks.dtype == bool
        assert np.array_equal(f.masks, (logits > 0).numpy())
        assert f.labels.shape == (h, w) and f.labels.dtype == np.uint8
        assert set(np.unique(f.labels)) <= set(range(n + 1))
        assert f.boxes == [mask_to_box(m) for m in f.masks]
    assert sum(b is not None for f in frames for b in f.boxes) > 0.8 * n * len(frames)


def test_mask_to_box_is_pixel_inclusive_and_none_when_empty():
    m = np.zeros((20, 30), bool)
    assert mask_to_box(m) is None
    m[5:9, 10:20] = True  # rows 5..8, columns 10..19
    m[12, 25] = True
    assert mask_to_box(m) == (10.0, 5.0, 16.0, 8.0)
    one = np.zeros((4, 4), bool)
    one[2, 3] = True
    assert mask_to_box(one) == (3.0, 2.0, 1.0, 1.0)
    assert box_corners((3.0, 2.0, 1.0, 1.0)) == (3.0, 2.0, 3.0, 2.0)


def test_prompt_coordinates_follow_add_new_points_or_box():
    p = PointPrompt(points=((40.0, 30.0),), labels=(0,), box=(10, 20, 11, 21))
    coords, labels = p.model_inputs((120, 160), 128)
    assert labels.tolist() == [2, 3, 0]
    expected = torch.tensor([[10, 20], [20, 40], [40, 30]], dtype=torch.float32)
    expected = expected / torch.tensor([160, 120]) * 128
    assert torch.equal(coords, expected)
    with pytest.raises(ValueError, match="zero size"):
        PointPrompt.from_box((1, 2, 0, 5))
    with pytest.raises(ValueError, match="labels must be 1"):
        PointPrompt(points=((1, 2),), labels=(2,))
