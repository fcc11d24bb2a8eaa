"""Validation under DDP gives exactly the single-process J&F, on every rank.

Two `train.py` runs on the small synthetic set, `trainer=ddp_cpu` (2 processes, gloo) and
`trainer=cpu` (1 process), validate the SAME weights: the learning rates are 0, so the two
training steps (which see different batches in the two runs) change nothing, and the one
validation at step 2 scores the initial weights in both runs. The final checkpoints are
compared to prove it.

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
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

REPO = Path(__file__).resolve().parents[1]
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


def train(root: Path, out: Path, trainer: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    overrides = [
        f"trainer={trainer}",
        f"data.root={root}",
        "data.synthetic=false",
        "data.num_workers=0",
        "data.samples_per_epoch=8",
        "data.clip_len=4",
        f"data.val_max_videos={VAL_VIDEOS}",
        "model.optim.lr=0",
        "model.optim.lr_image_encoder=0",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "trainer.log_every_n_steps=1",
        "callbacks.rich_progress_bar=null",
        "+callbacks.rank_probe._target_=tests.test_ddp.RankProbe",
        f"+callbacks.rank_probe.out={out / 'probe'}",
        "export_sam2_weights=null",
        f"hydra.run.dir={out}",
    ]
    proc = subprocess.run(
        [sys.executable, "train.py", *overrides],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def logged_val_jf(out: Path) -> list[float]:
    rows = csv.DictReader((out / "csv" / "version_0" / "metrics.csv").open())
    return [float(r["val/jf"]) for r in rows if r.get("val/jf")]


def probes(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "probe").glob("step2_rank*.json"))]


def state(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)[
        "state_dict"
    ]


@pytest.mark.slow
def test_ddp_validation_equals_single_process(small_synthetic, tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    train(small_synthetic, single, "cpu")
    train(small_synthetic, ddp, "ddp_cpu")

    # Same weights were validated (learning rate 0), so J&F must match exactly.
    s_state, d_state = state(single), state(ddp)
    assert s_state.keys() == d_state.keys()
    for k in s_state:
        assert torch.equal(s_state[k], d_state[k]), k

    # One validation per run, logged by rank 0, equal between the runs.
    s_logged, d_logged = logged_val_jf(single), logged_val_jf(ddp)
    assert len(s_logged) == 1 and len(d_logged) == 1
    assert d_logged == s_logged

    # Every rank computed that value, over all 3 videos, from its own share of them.
    (s_probe,) = probes(single)
    d_probes = probes(ddp)
    assert [p["world_size"] for p in d_probes] == [2, 2]
    for p in d_probes:
        assert p["result"] == s_probe["result"]
        assert p["result"]["num_videos"] == VAL_VIDEOS
    assert float(np.float32(s_probe["result"]["JF"])) == pytest.approx(s_logged[0], abs=1e-4)
    shares = [{row[0] for row in p["local"]} for p in d_probes]
    assert all(len(s) < VAL_VIDEOS for s in shares)  # sharded, not every video on every rank
    assert set().union(*shares) == {row[0] for row in s_probe["local"]}
    repeated = shares[0] & shares[1]
    assert len(repeated) == 1  # the sampler's padding repeat, removed by VideoJF
    # the per-video plot gathers rows from both ranks (a collective) and rank 0 draws it
    assert (ddp / "plots" / "val_step000002_jf_per_video.png").is_file()

    # The comparison can fail: counting the repeated video twice changes J&F.
    rows = s_probe["local"]
    jf = {(v, o): (j + f) / 2 for v, o, j, f in rows}
    twice = list(jf.values()) + [jf[k] for k in jf if k[0] in repeated]
    assert 100 * np.mean(twice) != pytest.approx(s_probe["result"]["JF"], abs=1e-3)
