"""Training and validation under DDP match a single process.

Two `train.py` runs on the small synthetic set with the same seed and global batch 2:
`trainer=ddp_cpu` (2 processes over gloo, 1 clip each per step) and `trainer=cpu` (1
process, 2 clips per step). `ClipSampler` gives step k the same two clips in both runs
(rank r takes the permutation's entries r, r+2, ...), SAM 2's loss divides by the number
of objects across all ranks, and DDP averages the gradients, so both runs take the same
optimizer steps up to float rounding (a batch of 2 against two batches of 1). Dropout is
off: each process draws its own random stream (`StepSeed`), so dropout masks would differ
between the runs by design. Tolerances: the two runs' weight updates differ by at most
1e-3 of the update's norm (measured: 9e-5), `val/jf` within 0.5 points (it thresholds
masks, so a rounding-level change can flip a few boundary pixels; measured: equal).

The DDP run is started without `hydra.run.dir`: its second process must write into the
first one's run directory (its own log file there), leaving no run folder of its own.

3 validation videos over 2 ranks: Lightning's DistributedSampler pads rank 1 with a repeat
of video 0, so rank 0 scores videos {0, 2} and rank 1 {1, 0}. `VideoJF` gathers the rows
and keeps each (video, object) once; the test checks that this repeat really happened
(else the dedup is not exercised) and that counting it twice would have changed J&F (else
the comparison could not fail). A probe callback records what each rank computed; the
logged `val/jf` comes from rank 0's CSV logger.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything

from mosam_train.lit.module import MoSAMModule

VAL_VIDEOS = 3  # odd: the DistributedSampler must pad


class RankProbe(Callback):
    """Writes, per rank and validation, the rank's own rows and the J&F it computed.

    Runs before the module's `on_validation_epoch_end` (Lightning calls callbacks first);
    `compute()` syncs across ranks and caches, so the module logs this same result.
    """

    def __init__(self, out: str) -> None:
        self.out = Path(out)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metric = pl_module.val_jf
        local = [[r.video, r.object_id, r.j_mean, r.f_mean] for r in metric.rows()]
        result = metric.compute()
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"step{trainer.global_step}_rank{trainer.global_rank}.json"
        path.write_text(
            json.dumps(
                {"world_size": trainer.world_size, "local": local, "result": result},
            )
        )


def train(run_script, root: Path, logs: Path, trainer: str) -> Path:
    """Runs train.py with `paths.log_dir=logs`; returns the one run directory it made."""
    overrides = [
        f"trainer={trainer}",
        f"data.root={root}",
        "data.synthetic=false",
        "data.num_workers=0",
        "data.samples_per_epoch=8",
        "data.clip_len=4",
        f"data.val_max_videos={VAL_VIDEOS}",
        "data.batch_size=2",
        "++model.sam2.overrides={memory_attention.layer.dropout:0.0,"
        "memory_attention.layer.self_attention.dropout:0.0,"
        "memory_attention.layer.cross_attention.dropout:0.0}",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "trainer.log_every_n_steps=1",
        "callbacks.rich_progress_bar=null",
        "+callbacks.rank_probe._target_=tests.test_ddp.RankProbe",
        f"+callbacks.rank_probe.out={logs / 'probe'}",
        "export.name=null",
        f"paths.log_dir={logs}",
    ]
    run_script("train.py", *overrides, env={"PYTHONHASHSEED": "0"}, one_thread=True)
    (run,) = (logs / "train" / "runs").iterdir()  # one run folder, whatever the processes
    return run


def logged_val_jf(out: Path) -> list[float]:
    rows = csv.DictReader((out / "csv" / "version_0" / "metrics.csv").open())
    return [float(r["val/jf"]) for r in rows if r.get("val/jf")]


def probes(logs: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((logs / "probe").glob("step2_rank*.json"))]


def state(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)[
        "state_dict"
    ]


@pytest.mark.slow
def test_ddp_training_and_validation_match_single_process(run_script, small_synthetic, tmp_path):
    single_logs, ddp_logs = tmp_path / "single", tmp_path / "ddp"
    single = train(run_script, small_synthetic, single_logs, "cpu")
    ddp = train(run_script, small_synthetic, ddp_logs, "ddp_cpu")
    assert sorted(p.name for p in ddp.glob("*.log")) == ["train.log", "train_rank1.log"]

    # Both runs trained and took the same steps.
    s_state, d_state = state(single), state(ddp)
    assert s_state.keys() == d_state.keys()
    seed_everything(0)  # the initial weights of both runs: train.py seeds, then builds
    hparams = torch.load(ddp / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    init = dict(MoSAMModule(**hparams).named_parameters())
    s_update = torch.cat([(s_state[k] - p).flatten() for k, p in init.items()])
    d_update = torch.cat([(d_state[k] - p).flatten() for k, p in init.items()])
    assert 0 < s_update.abs().max() < 1e-3  # 2 small steps from these very initial weights
    assert (s_update - d_update).norm() <= 1e-3 * s_update.norm()

    # One validation per run, logged by rank 0, equal between the runs within 0.5.
    s_logged, d_logged = logged_val_jf(single), logged_val_jf(ddp)
    assert len(s_logged) == 1 and len(d_logged) == 1
    assert d_logged[0] == pytest.approx(s_logged[0], abs=0.5)

    # Every rank computed the same value, over all 3 videos, from its own share of them.
    (s_probe,) = probes(single_logs)
    d_probes = probes(ddp_logs)
    assert [p["world_size"] for p in d_probes] == [2, 2]
    assert d_probes[0]["result"] == d_probes[1]["result"]
    for p in d_probes:
        assert p["result"]["num_videos"] == VAL_VIDEOS
    assert float(np.float32(s_probe["result"]["JF"])) == pytest.approx(s_logged[0], abs=1e-4)
    shares = [{row[0] for row in p["local"]} for p in d_probes]
    assert all(len(s) < VAL_VIDEOS for s in shares)  # sharded, not every video on every rank
    assert set().union(*shares) == {row[0] for row in s_probe["local"]}
    repeated = shares[0] & shares[1]
    assert len(repeated) == 1  # the sampler's padding repeat, removed by VideoJF
    # the per-video plot gathers rows from both ranks (a collective) and rank 0 draws it
    assert (ddp / "plots" / "val_step000002_jf_per_video.png").is_file()

    # The deduplication can fail: counting the repeated video twice changes J&F.
    rows = d_probes[0]["local"] + d_probes[1]["local"]
    jf = {(v, o): (j + f) / 2 for v, o, j, f in rows}
    twice = list(jf.values()) + [jf[k] for k in jf if k[0] in repeated]
    assert 100 * np.mean(twice) != pytest.approx(d_probes[0]["result"]["JF"], abs=1e-3)
