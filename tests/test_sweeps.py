"""Multiruns of train.py: every job in its own directory with its own checkpoints, logs and
wandb run; a job that fails does not stop or spoil the next; the Optuna search runs the
shipped config and reads the metric train.py returns."""

from __future__ import annotations

import csv
import json
import os
import struct
from pathlib import Path

import pytest
import torch
import yaml

from mosam_train.models.losses import LOSS_TERMS

COMMON = [
    "trainer.log_every_n_steps=1",
    "callbacks.rich_progress_bar=null",
    "export.name=null",
]


def wandb_records(path: Path) -> list:
    """The records of an offline run's `.wandb` file: W&B's header (":W&B", magic,
    version), then LevelDB log records (crc32c, length, type; FULL / FIRST / MIDDLE / LAST
    chunks inside 32 KiB blocks) holding `wandb_internal_pb2.Record` messages."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    block, pos, chunk, out = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:  # zero padding to the block's end
            pos += left
            continue
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, LAST
            record = pb.Record()
            record.ParseFromString(chunk)
            out.append(record)
            chunk = b""
    return out


def read_wandb_run(run_dir: Path) -> dict:
    """Run id, name, group, config, history keys, last summary and exit code of an
    offline wandb run directory."""
    (path,) = run_dir.glob("run-*.wandb")
    run: dict = {"history": set(), "summary": {}, "config": {}, "exit_code": None}
    for r in wandb_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run.update(id=r.run.run_id, name=r.run.display_name, group=r.run.run_group)
        elif kind == "config":
            run["config"].update({c.key: json.loads(c.value_json) for c in r.config.update})
        elif kind == "history":
            run["history"] |= {"/".join(i.nested_key) or i.key for i in r.history.item}
        elif kind == "summary":
            for i in r.summary.update:
                run["summary"]["/".join(i.nested_key) or i.key] = json.loads(i.value_json)
        elif kind == "exit":
            run["exit_code"] = r.exit.exit_code
    return run


@pytest.mark.slow
def test_failed_job_leaves_the_next_job_its_own_run_and_wandb_run(run_script, small_data, tmp_path):
    """Job 0 fails inside `fit` (AdamW refuses beta 2.0), after its wandb run started; job
    1 must still train, in its own directory, into a wandb run of its own (not job 0's, which
    a WandbLogger would reuse if it were left open), and the command must report job 0."""
    sweep = tmp_path / "sweep"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_SILENT="true",  # no network: offline mode must come from logger.wandb.offline
        WANDB_CONFIG_DIR=str(tmp_path / "wandb_config"),
        WANDB_CACHE_DIR=str(tmp_path / "wandb_cache"),
        WANDB_DATA_DIR=str(tmp_path / "wandb_data"),
    )
    proc = run_script(
        "train.py",
        "-m",
        *small_data(samples_per_epoch=4, val_videos=1),
        *COMMON,
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "logger=wandb",
        "logger.wandb.offline=true",
        "model.optim.betas=[2.0,0.999],[0.9,0.999]",
        f"hydra.sweep.dir={sweep}",
        env=env,
        inherit_env=False,
        ok=False,
        timeout=900,
    )
    log = proc.stdout + proc.stderr
    # the sweep ends with job 0's error (Hydra re-raises it after the last job)
    assert proc.returncode != 0, log[-3000:]
    assert "Invalid beta parameter" in proc.stderr, log[-3000:]
    failed, ok = sweep / "0", sweep / "1"
    assert "job 0 failed (ValueError: Invalid beta parameter" in (failed / "train.log").read_text()
    assert not list((failed / "checkpoints").glob("step*.ckpt"))

    # job 1: its own checkpoints, logs, pictures
    assert (ok / "checkpoints" / "last.ckpt").is_file()
    best = next((ok / "checkpoints").glob("step000002-*.ckpt"))
    assert torch.load(best, map_location="cpu", weights_only=True)["global_step"] == 2
    assert "validation plots:" in (ok / "train.log").read_text()  # the job's own log
    overlays = list((ok / "plots" / "overlays").glob("val_step000002_*.png"))
    assert len(overlays) == 1  # overlay_videos: 1

    # one wandb run per job, each finished, with its own id
    (run0,) = (failed / "wandb").glob("offline-run-*")
    (run1,) = (ok / "wandb").glob("offline-run-*")
    r0, r1 = read_wandb_run(run0), read_wandb_run(run1)
    assert r0["id"] != r1["id"]
    assert r0["exit_code"] == 1 and r1["exit_code"] == 0
    assert r1["name"].startswith("1:") and "model.optim.betas=[0.9,0.999]" in r1["name"]
    assert r0["group"] == r1["group"] == f"train/{sweep.name}"
    # the resolved config, per-term losses, learning rates, val/* and the pictures as media
    assert r1["config"]["model"]["optim"]["betas"] == [0.9, 0.999]
    assert r1["config"]["trainer"]["max_steps"] == 2
    expected = {"train/loss", "val/jf", "val/j", "val/f", "val/jf_best", "trainer/global_step"}
    expected |= {f"train/{t}" for t in LOSS_TERMS}  # loss_mask, loss_dice, ...
    assert expected <= r1["history"], expected - r1["history"]
    assert any(k.startswith("lr-AdamW") for k in r1["history"]), r1["history"]
    video = overlays[0].stem.removeprefix("val_step000002_")
    for key in ("val/jf_per_video", f"val/overlay/{video}"):
        assert r1["summary"][f"{key}/_type"] == "images/separated"
        for name in r1["summary"][f"{key}/filenames"]:
            assert (run1 / "files" / name).is_file(), name
    assert r1["summary"]["val/jf"] == pytest.approx(r1["summary"]["val/jf_best"])


@pytest.fixture(scope="module")
def mosam_base(micro, tmp_path_factory) -> Path:
    return micro(object_score_bias=None, path=tmp_path_factory.mktemp("base") / "sam2_micro.pt")


def _metric(job: Path, key: str) -> float:
    rows = csv.DictReader((job / "csv" / "version_0" / "metrics.csv").open())
    return max(float(r[key]) for r in rows if r.get(key))


@pytest.mark.slow
def test_optuna_search_runs_each_trial_in_its_own_directory(
    run_script, small_data, mosam_base, tmp_path
):
    """hparams_search=mosam_optuna with 2 trials: two run directories with their own
    checkpoints and logs, and the study's best value is the best trial's val/jf_best, which
    only reaches Optuna as the value train.py returns."""
    sweep = tmp_path / "optuna"
    run_script(
        "train.py",
        "-m",
        "experiment=mosam_synthetic",
        "hparams_search=mosam_optuna",
        "hydra.sweeper.n_trials=2",
        f"model.sam2.weights={mosam_base}",
        *small_data(samples_per_epoch=4, val_videos=1),
        *COMMON,
        "trainer.max_steps=1",
        "trainer.val_check_interval=1",
        f"hydra.sweep.dir={sweep}",
        timeout=900,
    )
    jobs = [sweep / "0", sweep / "1"]
    params = []
    for job in jobs:
        assert (job / "checkpoints" / "last.ckpt").is_file()
        assert list((job / "checkpoints").glob("step000001-*.ckpt"))
        assert (job / "train.log").is_file()
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        params.append(dict(o.split("=", 1) for o in overrides if o.startswith("model.")))
    assert params[0]["model.optim.lr"] != params[1]["model.optim.lr"]
    for p in params:
        assert 1e-5 <= float(p["model.optim.lr"]) <= 3e-3
        assert 0.1 <= float(p["model.loss.weight_frame_conf"]) <= 3.0
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    scores = [_metric(job, "val/jf_best") for job in jobs]
    assert result["best_value"] == pytest.approx(max(scores), abs=1e-4)
    best = params[scores.index(max(scores))]
    assert {k: float(v) for k, v in result["best_params"].items()} == pytest.approx(
        {k: float(v) for k, v in best.items() if k in result["best_params"]}
    )
