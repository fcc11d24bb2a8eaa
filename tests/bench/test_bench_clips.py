"""What training clips hold: re-emergences and the absences before them."""

from __future__ import annotations

import json

import numpy as np

from mosam_train.bench import clips


def test_longest_return_counts_video_frames_between_sightings_across_an_absence():
    seen = np.array([[1, 1], [1, 1], [0, 1], [0, 1], [1, 0]], bool)  # frames x objects
    assert clips.longest_return(seen, [0, 2, 4, 6, 8]) == 5  # object 0: seen at 2, back at 8
    # skips alone are not absences; an object that never returns counts nothing
    assert clips.longest_return(seen[:, 1:], [0, 3, 6, 9, 12]) == 0


def test_event_clips_return_more_often_than_uniform_ones(small_synthetic, capsys):
    args = ["data=synthetic", f"data.root={small_synthetic}", "data.synthetic=false",
            "data.clip_len=6", "data.max_skip=2", "data.samples_per_epoch=8", "--clips", "16"]  # fmt: skip
    shares = []
    for prob in (0.0, 1.0):
        clips.main([*args, f"data.event_prob={prob}"])
        out = capsys.readouterr().out
        shares.append(json.loads(out.strip().splitlines()[-1])["return_after_1"])
    assert "returns after an absence" in out
    assert shares[0] < shares[1]  # 16-frame training videos: not every one has a return
