"""The streaming engine reproduces SAM 2's own video predictor, logits and all."""

import numpy as np
import pytest

from mosam_train.data.formats.davis import read_davis
from mosam_train.inference.engine import VideoPropagator
from mosam_train.inference.sources import RecordFrames
from mosam_train.inference.vos import first_appearance_prompts
from mosam_train.models.sam2_builder import build_sam2
from mosam_train.models.video_sam import VideoSAM
from mosam_train.trackers import build_tracker

PREDICTOR = "sam2.sam2_video_predictor.SAM2VideoPredictor"


@pytest.mark.parametrize("multimask", [False, True], ids=["one_mask", "three_masks"])
def test_engine_logits_match_sam2_video_predictor(micro, small_synthetic, multimask):
    # The video with the most objects; 24 frames.
    records = read_davis(small_synthetic, "val")
    record = max(records, key=lambda r: len(r.object_ids))
    assert record.num_frames >= 20 and len(record.object_ids) >= 2

    # non-empty masks on most frames, so the comparison is not one of two all-(-1024) tensors;
    # tracking with one mask (the micro base) or with SAM 2's three candidates, argmax IoU
    overrides = {"multimask_output_for_tracking": multimask}
    sam = build_sam2("sam2.1_micro", overrides=overrides).eval()
    sam.load_state_dict(micro().state_dict())
    assert VideoSAM(sam).tracking_candidates == (3 if multimask else 1)
    reference = build_sam2("sam2.1_micro", overrides=overrides, target=PREDICTOR).eval()
    reference.load_state_dict(sam.state_dict())

    prompts = first_appearance_prompts(record)
    assert list(prompts) == [0]
    frame_dir = record.frame_path(0).parent
    state = reference.init_state(str(frame_dir))
    for oid, mask in prompts[0].items():
        reference.add_new_mask(state, 0, oid, mask)
    expected = {t: logits[:, 0].clone() for t, _, logits in reference.propagate_in_video(state)}

    engine = VideoPropagator(VideoSAM(sam))
    max_diff, non_empty, count = 0.0, 0, 0
    for result in engine.propagate(RecordFrames(record, 128), prompts):
        assert result.object_ids == sorted(prompts[0])
        ref = expected[result.frame_idx]
        max_diff = max(max_diff, (result.logits - ref).abs().max().item())
        non_empty += int((ref > 0).flatten(1).any(1).sum())
        count += ref.shape[0]
    assert count == record.num_frames * len(record.object_ids)
    assert non_empty > 0.8 * count, (non_empty, count)
    assert max_diff <= 1e-3, max_diff
    print(f"max |engine - SAM2VideoPredictor| over {count} object-frames: {max_diff:.2e}")


def test_cond_only_memory_keeps_only_the_prompted_frame(small_synthetic):
    record = read_davis(small_synthetic, "val")[0]
    engine = VideoPropagator(
        VideoSAM(build_sam2("sam2.1_micro").eval()), build_tracker({"name": "cond_only"})
    )
    prompts = first_appearance_prompts(record)
    assert list(prompts) == [0]
    frames = []
    for r in engine.propagate(RecordFrames(record, 128), prompts):
        frames.append(r.frame_idx)
        assert engine.memory_entries() == 1
        assert list(engine.groups[0].bank.cond) == [0] and not engine.groups[0].bank.non_cond
    assert frames == list(range(record.num_frames))


def test_objects_join_at_their_first_prompt(small_synthetic):
    record = read_davis(small_synthetic, "val")[0]
    first = first_appearance_prompts(record)[0]
    oid, mask = next(iter(first.items()))
    engine = VideoPropagator(VideoSAM(build_sam2("sam2.1_micro").eval()))
    late = {0: {oid: mask}, 5: {99: np.ones_like(mask)}}
    for r in engine.propagate(RecordFrames(record, 128), late):
        assert r.object_ids == [oid, 99]
        if r.frame_idx < 5:
            assert (r.logits[1] < -1000).all()
        if r.frame_idx == 5:
            assert (r.logits[1] > 0).all()
