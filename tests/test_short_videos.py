"""Videos too short to score (J&F leaves out the first and the last annotated frame): named
as unscorable in the log and in metrics.json, their predictions still written, the other
videos scored; validation leaves them out of J&F the same way."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from layouts.davis import write_davis, write_sequence, write_split

from mosam_train import tasks
from mosam_train.data.formats.davis import read_davis
from mosam_train.lit.module import MoSAMModule

MICRO = {"variant": "sam2.1_micro", "image_size": 128, "weights": None, "overrides": {}}


@pytest.fixture
def davis_with_short_videos(tmp_path) -> Path:
    """DAVIS val: seq0 and seq1 (5 frames), `pair` (2 frames) and `single` (1 frame)."""
    root = tmp_path / "DAVIS"
    write_davis(root, "val", num_videos=2)
    lbl = np.zeros((24, 32), np.uint8)
    lbl[2:8, 2:8] = 1
    write_sequence(root, "pair", [lbl, lbl])
    write_sequence(root, "single", [lbl])
    write_split(root, "val", ["seq0", "pair", "seq1", "single"])
    return root


def test_eval_names_short_videos_as_unscorable_and_scores_the_others(
    compose_config, davis_with_short_videos, tmp_path, caplog
):
    cfg = compose_config(
        "eval",
        "baseline=copy_first",
        "data=davis",
        f"data.root={davis_with_short_videos}",
        "plots.videos=0",
        out=tmp_path / "out",
    )
    with caplog.at_level(logging.WARNING):
        result = tasks.evaluate(cfg)
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    assert sorted(metrics["unscorable_videos"]) == ["pair", "single"]
    assert "at least 3" in metrics["unscorable_videos"]["pair"]
    assert metrics["num_videos_without_gt"] == 0 and metrics["gt_available"] is True
    assert metrics["num_videos"] == result["num_videos"] == 2  # seq0 and seq1 scored
    rows = (out / "per_object.csv").read_text()
    assert "seq0" in rows and "seq1" in rows and "pair" not in rows
    for name in ("pair", "single"):  # each named in a warning, its predictions written
        assert any(name in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert sorted(p.name for p in (out / "predictions" / "pair").glob("*.png")) == [
        "00000.png",
        "00001.png",
    ]
    assert (out / "predictions" / "single" / "00000.png").is_file()


def test_eval_refuses_val_max_videos_0_before_writing(
    compose_config, davis_with_short_videos, tmp_path
):
    cfg = compose_config(
        "eval",
        "baseline=copy_first",
        "data=davis",
        f"data.root={davis_with_short_videos}",
        "data.val_max_videos=0",
        out=tmp_path / "out",
    )
    # Hydra's instantiate wraps the datamodule's ValueError, message kept
    with pytest.raises(InstantiationException, match=r"data\.val_max_videos=0 evaluates no video"):
        tasks.evaluate(cfg)
    assert not (tmp_path / "out" / "submission.zip").exists()
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_validation_leaves_short_videos_out_of_jf_with_one_warning(davis_with_short_videos, caplog):
    records = {r.name: r for r in read_davis(davis_with_short_videos, "val")}
    torch.manual_seed(0)
    module = MoSAMModule(sam2=MICRO).eval()
    with torch.no_grad(), caplog.at_level(logging.WARNING):
        for epoch in range(2):  # warned about in the first validation only
            for i, name in enumerate(["seq0", "pair", "single"]):
                module.validation_step(records[name], i)
            if epoch == 0:
                result = module.val_jf.compute()
                module.val_jf.reset()
    assert result["num_videos"] == 1 and not np.isnan(result["JF"])
    assert sorted(module.val_unscorable) == ["pair", "single"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("pair" in m for m in warned) == 1 and sum("single" in m for m in warned) == 1
