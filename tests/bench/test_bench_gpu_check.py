"""The GPU check's CPU dry run (tiny mode: the command and its output, not speed)."""

from __future__ import annotations

import json

from mosam_train.bench import gpu_check


def test_gpu_check_dry_run_prints_one_table_and_one_json_line(capsys):
    result = gpu_check.main(["--tiny", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "GPU check on CPU" in out
    line = json.loads(out.strip().splitlines()[-1])
    assert line == json.loads(json.dumps(result)) and line["device"] == "cpu"
    assert "ms_per_frame_bf16" not in line  # bf16 autocast only on CUDA
    times = line["ms_per_frame_32"]
    assert set(times) == {"SAM2VideoPredictor", "engine", "MoSAM, all parts"}
    assert all(ms > 0 for ms in times.values())
    assert line["train_step"]["s_per_step"] > 0 and line["train_step"]["peak_mib"] > 0
    assert line["loader_clips_per_s"] > 0
