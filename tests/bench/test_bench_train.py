"""The training-step benchmark runs end to end (tiny mode: this checks the command and
its output, not speed)."""

from __future__ import annotations

import json

from mosam_train.bench import train as bench


def test_bench_prints_a_table_and_one_json_line(tmp_path, capsys):
    summary = bench.main(["--tiny", "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "one optimizer step" in out and "fine-tune" in out
    line = json.loads(out.strip().splitlines()[-1])
    assert line == json.loads(json.dumps(summary)) and line["bench"] == "train"
    micro = line["sizes"]["micro"]
    for variant in bench.VARIANTS:
        v = micro[variant]
        assert v["s_per_step"] > 0 and v["peak_mb"] >= v["before_mb"] > 0
    # frozen SAM 2: MoSAM trains only its own parts
    assert 0 < micro["mosam"]["trained_params"] < micro["sam2"]["trained_params"]
    assert micro["ratio_time"] > 0 and micro["loader_flow_s_per_batch"] > 0
