"""Each candidate-choosing rule runs through eval.py to a metrics.json on a micro base that
tracks with three candidate masks, with its published defaults recorded."""

import json
import math

import pytest


@pytest.mark.parametrize(
    ("rule", "setting", "default"),
    [("samurai", "kf_weight", 0.25), ("sam2long", "pathways", 3), ("dam4sam", "stride", 5)],
)
def test_eval_runs_the_rule_on_a_multimask_checkpoint(
    rule, setting, default, run_script, micro_weights, small_synthetic, tmp_path
):
    out = tmp_path / "eval"
    run_script(
        "eval.py", f"ckpt={micro_weights}", "sam2=micro",
        "+model.sam2.overrides.multimask_output_for_tracking=true", f"tracker={rule}",
        f"data.root={small_synthetic}", "data.synthetic=false", "data.num_workers=0",
        "data.val_max_videos=2", f"hydra.run.dir={out}",
        one_thread=True,
    )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tracker"]["name"] == rule and metrics["tracker"][setting] == default
    assert metrics["num_objects"] > 0 and 0 <= metrics["JF"] <= 100
    assert not math.isnan(metrics["JF"])
