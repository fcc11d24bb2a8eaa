"""A run killed with SIGKILL mid-epoch and continued with `resume=<run_dir>` ends where an
uninterrupted run with the same seed ends: same weights, same loss curve, one run folder.

8 clips per epoch, global batch 2: 4 steps per epoch, 8 steps in all; `last.ckpt` every 3
steps, so the kill (as soon as the first `last.ckpt` exists) leaves a checkpoint in the
middle of an epoch (step 3 or 6), and the resumed run must continue that epoch's clips.
Tolerance: max |weight difference| <= 1e-6 and losses equal to 1e-6 relative (the same
float32 ops run in the same order on CPU; in practice they are bitwise equal).
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
STEPS, STEPS_PER_EPOCH, EVERY = 8, 4, 3
ENV = dict(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")


def overrides(root: Path) -> list[str]:
    return [
        f"data.root={root}",
        "data.synthetic=false",
        "data.num_workers=0",
        f"data.samples_per_epoch={2 * STEPS_PER_EPOCH}",
        "data.batch_size=2",
        "data.clip_len=4",
        "data.val_max_videos=1",
        f"trainer.max_steps={STEPS}",
        "trainer.check_val_every_n_epoch=null",
        f"trainer.val_check_interval={STEPS}",
        "trainer.log_every_n_steps=1",
        "callbacks.rich_progress_bar=null",
        f"callbacks.last_checkpoint.every_n_train_steps={EVERY}",
        "export.name=null",
    ]


def weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == STEPS
    return ckpt["state_dict"]


def curve(run: Path, key: str) -> dict[int, float]:
    rows = list(csv.DictReader((run / "csv" / "version_0" / "metrics.csv").open()))
    steps = [int(r["step"]) for r in rows if r.get(key)]
    assert len(steps) == len(set(steps)), f"{key}: a step logged twice in {run}"
    return {int(r["step"]): float(r[key]) for r in rows if r.get(key)}


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(
    run_script, small_synthetic, tmp_path
):
    whole, killed = tmp_path / "runs" / "whole", tmp_path / "runs" / "killed"
    run_script("train.py", *overrides(small_synthetic), f"hydra.run.dir={whole}", env=ENV)

    proc = subprocess.Popen(
        [sys.executable, "train.py", *overrides(small_synthetic), f"hydra.run.dir={killed}"],
        cwd=REPO, env=dict(os.environ, **ENV), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert step < STEPS and step % STEPS_PER_EPOCH != 0, f"not killed mid-epoch (step {step})"
    saved_config = (killed / ".hydra" / "config.yaml").read_text()

    run_script("train.py", f"resume={killed}", env=ENV)

    # same weights
    a, b = weights(whole), weights(killed)
    assert a.keys() == b.keys()
    diff = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    assert diff <= 1e-6, diff
    # same loss curve, every step logged once, in the run's one CSV file
    loss_a, loss_b = curve(whole, "train/loss"), curve(killed, "train/loss")
    assert sorted(loss_a) == list(range(STEPS)) and loss_a.keys() == loss_b.keys()
    for s in loss_a:
        assert loss_b[s] == pytest.approx(loss_a[s], rel=1e-6), s
    assert curve(killed, "val/jf") == pytest.approx(curve(whole, "val/jf"), rel=1e-6)
    # in the same run directory, with its config kept and no stray run folder
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["killed", "whole"]
    assert (killed / ".hydra" / "config.yaml").read_text() == saved_config
    assert len(list((killed / ".hydra").glob("resume_*/overrides.yaml"))) == 1
    assert not list((killed / "checkpoints").glob(".*.tmp"))  # no torn temporary files


def test_resume_refuses_a_directory_without_a_run(run_script, tmp_path):
    proc = run_script("train.py", f"resume={tmp_path}", env=ENV, ok=False, timeout=300)
    assert proc.returncode != 0
    assert "config.yaml is missing" in proc.stderr and str(tmp_path) in proc.stderr
