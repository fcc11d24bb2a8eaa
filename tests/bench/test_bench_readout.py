"""The still-video readout: each video's first frame repeated, prompted with its masks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mosam_train.bench import readout
from mosam_train.data.formats.davis import read_davis
from mosam_train.inference.baselines import CopyFirstMask


def _data(root) -> list[str]:
    return ["data=synthetic", f"data.root={root}", "data.synthetic=false",
            "data.num_workers=0", "data.val_max_videos=2"]  # fmt: skip


def test_copying_the_prompt_holds_it_on_every_frame_of_a_still_video(small_synthetic, capsys):
    readout.main([*_data(small_synthetic), "baseline=copy_first", "--frames", "1,3"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    records = read_davis(small_synthetic, "val")[:2]
    present = sum(int(r.load_masks(0).any(axis=(1, 2)).sum()) for r in records)
    assert result == {"J_at": {k: {"J": 1.0, "objects": present} for k in ("1", "3")}}


def test_a_model_is_scored_against_the_first_frame_it_is_shown_again(small_synthetic):
    record = read_davis(small_synthetic, "val")[0]

    class Shifted(CopyFirstMask):
        """The prompt moved 3 pixels right on every later frame: J below 1, known exactly."""

        def propagate(self, frames, prompts):
            for result in super().propagate(frames, prompts):
                if result.frame_idx > 0:
                    result.logits = result.logits.roll(3, dims=-1)
                yield result

    found = readout.readout_j(Shifted(), record, 64, [2])
    present = [m for m in record.load_masks(0) if m.any()]
    shifted = [np.roll(m, 3, axis=-1) for m in present]
    expected = [(m & s).sum() / (m | s).sum() for m, s in zip(present, shifted, strict=True)]
    assert found[2] == pytest.approx(expected)


def test_frames_must_come_after_the_prompt():
    with pytest.raises(SystemExit):
        readout.main(["--frames", "0,2"])


def test_a_checkpoint_runs_through_the_eval_model(small_synthetic, micro_weights, capsys):
    readout.main([*_data(small_synthetic), f"ckpt={micro_weights}", "sam2=micro",
                  "--frames", "2"])  # fmt: skip
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["J_at"]["2"]
    assert result["objects"] > 0 and 0.0 <= result["J"] < 1.0
