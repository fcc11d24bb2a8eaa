"""The object-score diagnostic: ROC AUC and error rates of present against absent frames."""

from __future__ import annotations

import json

import pytest
import torch

from mosam_train.bench import presence
from mosam_train.data.formats.davis import read_davis
from mosam_train.inference.baselines import CopyFirstMask


def test_rates_at_sam2s_threshold_and_at_the_best_one_from_hand_made_scores():
    # present frames score 3 and 2; absent ones -1, 1 and -2: the order is perfect (AUC 1),
    # but at SAM 2's 0 one absent frame in three is called present
    found = presence.summarise([3.0, 2.0, -1.0, 1.0, -2.0], [True, True, False, False, False])
    assert found["auroc"] == pytest.approx(1.0)
    assert (found["frames_present"], found["frames_absent"]) == (2, 3)
    assert found["fp_absent_at_0"] == pytest.approx(1 / 3)
    assert found["fn_present_at_0"] == 0.0
    assert found["best_threshold"] == pytest.approx(2.0)
    assert (found["fp_absent_at_best"], found["fn_present_at_best"]) == (0.0, 0.0)
    # no signal: every frame scores the same
    assert presence.summarise([1.0] * 4, [True, False, True, False])["auroc"] == 0.5
    with pytest.raises(ValueError, match=r"present and 0 absent.*Fix"):
        presence.summarise([1.0, 2.0], [True, True])


def test_each_object_is_scored_on_every_frame_after_its_prompt(small_synthetic):
    record = next(r for r in read_davis(small_synthetic, "val") if "occlusion" in r.tags)

    class Truthful(CopyFirstMask):
        """Scores +5 where the ground truth has the object and -5 where it has not."""

        def propagate(self, frames, prompts):
            for result in super().propagate(frames, prompts):
                masks = record.load_masks(result.frame_idx)
                result.object_scores = torch.tensor([5.0 if m.any() else -5.0 for m in masks])
                yield result

    found = presence.presence_scores(Truthful(), record, 64)
    scores, present = found.scores, found.present
    first = record.first_appearance()
    expected = sum(record.num_frames - 1 - first[oid] for oid in record.object_ids)
    assert len(scores) == len(present) == len(found.ious) == expected
    assert not all(present) and scores == [5.0 if p else -5.0 for p in present]
    # the first mask held: IoU 1 until the object moves; an absent object's mask is not empty
    assert found.ious[0] > 0.5 and all(
        i < 1 for i, p in zip(found.ious, present, strict=True) if not p
    )
    assert found.visibility == found.frame == []  # a baseline has neither


def test_the_frame_head_against_good_memories_and_what_its_threshold_leaves_out():
    # logits -> probabilities .88, .73, .27, .12; IoUs .9, .2, .5, .1 (good: 1st and 3rd)
    found = presence.memory_summary([2.0, 1.0, -1.0, -2.0], [0.9, 0.2, 0.5, 0.1], 0.3)
    assert found["auroc"] == pytest.approx(0.75)  # 3 of the 4 (good, bad) pairs in order
    assert (found["frames_good"], found["frames_bad"]) == (2, 2)
    assert found["left_out"] == 0.5  # the last two are below 0.3
    assert found["bad_among_left_out"] == 0.5 and found["bad_among_kept"] == 0.5
    assert "left_out" not in presence.memory_summary([1.0, -1.0], [0.9, 0.1], None)
    assert presence.memory_summary([1.0, 2.0], [0.9, 0.8], 0.3)["auroc"] is None  # all good


def test_a_checkpoint_runs_through_the_eval_model(small_synthetic, micro_weights, capsys):
    presence.main(["data=synthetic", f"data.root={small_synthetic}", "data.synthetic=false",
                   "data.num_workers=0", "data.val_max_videos=2", f"ckpt={micro_weights}",
                   "sam2=micro"])  # fmt: skip
    out = capsys.readouterr().out
    found = json.loads(out.strip().splitlines()[-1])
    assert 0.0 <= found["auroc"] <= 1.0 and found["frames_absent"] > 0
    assert "ROC AUC" in out and "visibility_gate" not in found  # SAM 2 has no gate


def test_a_mosam_checkpoint_has_its_gate_and_frame_head_scored(
    small_synthetic, micro_weights, mosam_checkpoint, tmp_path, capsys
):
    """MoSAM's visibility gate and frame head, read from every tracked step (the engine's
    observers): one value per object and tracked frame, the prompt frame excluded."""
    ckpt = mosam_checkpoint(
        tmp_path / "mosam.ckpt",
        micro_weights,
        mgp={"sparse": True, "dense": False, "history": 3},
        stms={"stride": 1, "candidates": 8, "top_k": 3, "min_confidence": 0.5},
    )
    args = ["data=synthetic", f"data.root={small_synthetic}", "data.synthetic=false",
            "data.num_workers=0", "data.val_max_videos=1", f"ckpt={ckpt}", "sam2=micro"]  # fmt: skip
    presence.main(args)
    out = capsys.readouterr().out
    found = json.loads(out.strip().splitlines()[-1])
    gate, frame = found["visibility_gate"], found["frame_score"]
    frames = found["frames_present"] + found["frames_absent"]
    assert gate["frames_present"] + gate["frames_absent"] == frames
    assert frame["frames_good"] + frame["frames_bad"] == frames
    assert 0.0 <= gate["mean_prob_absent"] <= 1.0 and 0.0 <= gate["auroc"] <= 1.0
    # an untrained frame head rates every frame 0.5: none below 0.5 (and no order, where a
    # random micro SAM 2 has good frames at all)
    assert frame["auroc"] in (None, 0.5) and (frame["min_confidence"], frame["left_out"]) == (
        0.5,
        0.0,
    )
    assert "MoSAM's visibility gate: ROC AUC" in out and "MoSAM's frame head: " in out
    # eval's min_confidence: the checkpoint's threshold replaced (every frame rated 0.5 is
    # now below it); with the threshold switched off as well it is refused
    presence.main([*args, "min_confidence=0.6"])
    frame = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["frame_score"]
    assert (frame["min_confidence"], frame["left_out"]) == (0.6, 1.0)
    with pytest.raises(ValueError, match=r"min_confidence=0.6 with parts_off=\[threshold\]"):
        presence.main([*args, "min_confidence=0.6", "parts_off=[threshold]"])
