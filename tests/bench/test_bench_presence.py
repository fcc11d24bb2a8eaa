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

    scores, present = presence.presence_scores(Truthful(), record, 64)
    first = record.first_appearance()
    expected = sum(record.num_frames - 1 - first[oid] for oid in record.object_ids)
    assert len(scores) == len(present) == expected
    assert not all(present) and scores == [5.0 if p else -5.0 for p in present]


def test_a_checkpoint_runs_through_the_eval_model(small_synthetic, micro_weights, capsys):
    presence.main(["data=synthetic", f"data.root={small_synthetic}", "data.synthetic=false",
                   "data.num_workers=0", "data.val_max_videos=2", f"ckpt={micro_weights}",
                   "sam2=micro"])  # fmt: skip
    out = capsys.readouterr().out
    found = json.loads(out.strip().splitlines()[-1])
    assert 0.0 <= found["auroc"] <= 1.0 and found["frames_absent"] > 0
    assert "ROC AUC" in out
