"""`python train.py -m hydra/launcher=slurm ...` with no cluster: a stand-in `sbatch` keeps
the job script submitit writes and refuses it. The script must ask SLURM for what the
trainer config runs (nodes, GPUs = tasks per node, time, partition), the chosen requeue
signal and logs under the sweep directory; the job submitit pickled, unpickled as a
(re)started job on a node would, must land in its own run directory, run with Lightning's
SLURM environment (requeue off, ranks from SLURM) and, once that directory holds a
`last.ckpt`, run as `resume=<its directory>`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hydra_plugins.mosam_train_slurm import requeue_overrides

REPO = Path(__file__).resolve().parents[1]

# What a job does on a node, run in a fresh process: unpickle the submission, run it with a
# task that only records its config (twice: fresh, then as a requeued job), then build the
# trainer from the recorded config under SLURM's variables for rank 5 of 8.
JOB_SIDE = textwrap.dedent(
    """
    import json, os, pickle, sys
    from pathlib import Path

    from omegaconf import OmegaConf, open_dict

    folder, out = Path(sys.argv[1]), {}
    subs = sorted(
        (pickle.loads(p.read_bytes()) for p in folder.glob("*.pkl")), key=lambda d: d.args[2]
    )
    seen = []

    def task(cfg):
        from hydra.core.hydra_config import HydraConfig

        seen.append({
            "output_dir": HydraConfig.get().runtime.output_dir,
            "overrides": list(HydraConfig.get().overrides.task),
            "resume": cfg.get("resume"),
            "trainer": OmegaConf.to_container(cfg.trainer),
        })
        return 1.0

    os.environ.update(SUBMITIT_EXECUTOR="slurm", SLURM_JOB_ID="42", SLURM_PROCID="0",
                      SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_NTASKS="8",
                      SLURM_JOB_NUM_NODES="2", SLURM_JOB_NODELIST="node[1-2]")
    job = subs[1]
    launcher = job.function
    launcher.task_function = task
    out["job_dir"] = str(launcher.job_dir(job.args[0], job.args[2]))
    launcher(*job.args)                                   # first start
    ckpt = Path(out["job_dir"]) / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    launcher(*job.args)                                   # started again by SLURM
    out["runs"] = seen

    # Lightning under SLURM, rank 5 of 2 nodes x 4 tasks, with the job's trainer config
    # (on CPU here: the GPU accelerator and bf16 are swapped out, nothing else).
    import lightning as L
    from hydra.utils import instantiate
    os.environ.update(SLURM_PROCID="5", SLURM_LOCALID="1", SLURM_NODEID="1",
                      SLURM_NTASKS_PER_NODE="4", SLURM_NNODES="2", SLURM_JOB_NAME="train")
    trainer_cfg = OmegaConf.create(seen[0]["trainer"])
    with open_dict(trainer_cfg):
        trainer_cfg.accelerator, trainer_cfg.precision = "cpu", "32-true"
        trainer_cfg.default_root_dir = str(folder)
    trainer = instantiate(trainer_cfg, logger=False)
    env = trainer.strategy.cluster_environment
    out["lightning"] = {
        "environment": type(env).__name__, "auto_requeue": env.auto_requeue,
        "world_size": trainer.world_size, "global_rank": trainer.global_rank,
        "local_rank": trainer.local_rank, "node_rank": trainer.node_rank,
    }
    print("RESULT" + json.dumps(out))
    """
)


def submit(tmp_path: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, Path]:
    """Runs the multirun with the stand-in sbatch/srun; returns it and the script dir."""
    bin_dir, scripts = tmp_path / "bin", tmp_path / "scripts"
    bin_dir.mkdir()
    scripts.mkdir()
    (bin_dir / "sbatch").write_text(
        '#!/bin/sh\ncp "$1" "$SBATCH_SCRIPTS/"\n'
        'echo "sbatch: error: no cluster here (test stand-in)" >&2\nexit 1\n'
    )
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for it
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    env["SBATCH_SCRIPTS"] = str(scripts)
    proc = subprocess.run(
        [sys.executable, "train.py", "-m", "hydra/launcher=slurm", *overrides],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, scripts


@pytest.mark.slow
def test_slurm_job_script_and_requeued_job(tmp_path):
    logs = tmp_path / "logs"
    proc, scripts = submit(
        tmp_path,
        "trainer=ddp",
        "trainer.num_nodes=2",
        "trainer.devices=4",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.timeout_min=600",
        f"paths.log_dir={logs}",
        "model.optim.lr=1e-4,3e-4",
    )
    assert proc.returncode != 0 and "no cluster here" in proc.stderr, proc.stderr[-3000:]
    (script,) = scripts.iterdir()
    text = script.read_text()
    (sweep_dir,) = (logs / "train" / "multiruns").iterdir()  # ${now:...}, resolved once
    flags = dict(
        line.removeprefix("#SBATCH --").partition("=")[::2]
        for line in text.splitlines()
        if line.startswith("#SBATCH --")
    )
    submitit = sweep_dir / ".submitit"
    assert flags["nodes"] == "2"  # trainer.num_nodes
    assert flags["ntasks-per-node"] == "4"  # trainer.devices: one process per GPU
    assert flags["gpus-per-node"] == "4"
    assert flags["time"] == "600"
    assert flags["partition"] == "gpu"
    assert flags["array"] == "0-1%2"  # one array task per sweep job
    assert flags["signal"] == "USR2@120"  # submitit's requeue signal, not Lightning's USR1
    assert "requeue" in flags
    assert flags["output"] == f"{submitit}/%A_%a/%A_%a_0_log.out"
    assert flags["error"] == f"{submitit}/%A_%a/%A_%a_0_log.err"
    assert text.rstrip().endswith(f"-m submitit.core._submit {submitit}/%j")
    assert "srun --unbuffered" in text

    time.sleep(1.1)  # a job that re-resolved ${now:...} would get another directory
    job = subprocess.run(
        [sys.executable, "-c", JOB_SIDE, str(submitit)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-5000:]
    out = json.loads(job.stdout.split("RESULT", 1)[1])
    job_dir = str(sweep_dir / "1")
    assert out["job_dir"] == job_dir
    first, again = out["runs"]
    assert first["output_dir"] == again["output_dir"] == job_dir
    assert first["resume"] is None and "model.optim.lr=0.0003" in first["overrides"]
    assert again["resume"] == job_dir and again["overrides"] == [f"resume={job_dir}"]
    env_plugins = [
        p for p in first["trainer"]["plugins"] if p["_target_"].endswith("SLURMEnvironment")
    ]
    assert env_plugins == [
        {
            "_target_": "lightning.fabric.plugins.environments.SLURMEnvironment",
            "auto_requeue": False,
        }
    ]
    assert out["lightning"] == {
        "environment": "SLURMEnvironment",
        "auto_requeue": False,
        "world_size": 8,
        "global_rank": 5,
        "local_rank": 1,
        "node_rank": 1,
    }


def test_requeue_overrides(tmp_path):
    overrides = ["trainer=ddp", "model.optim.lr=1e-4"]
    assert requeue_overrides(tmp_path, overrides) == overrides
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert requeue_overrides(tmp_path, overrides) == [f"resume={tmp_path}"]
