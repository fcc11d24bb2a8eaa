"""SLURM launcher of mosam-train: `python train.py -m hydra/launcher=slurm ...` (README,
"Multi-node / SLURM"; settings in configs/hydra/launcher/slurm.yaml).

Hydra only accepts launchers defined under the `hydra_plugins` package, and imports every
module here at start-up: this one imports nothing heavy (no torch, no mosam_train).

One requeue mechanism: submitit's. SLURM sends SIGUSR2 `signal_delay_s` seconds before the
time limit (`#SBATCH --signal=USR2@...`); submitit's handler on global rank 0 asks the
launcher for a `checkpoint()` (the same job again), requeues the job with `scontrol
requeue` and exits; `max_num_timeout` bounds how often. Lightning's own SLURM requeue
(SIGUSR1, an `hpc_ckpt_N.ckpt` written inside the signal handler, mid-step, with
collectives under DDP) is switched off: every job's trainer gets
`SLURMEnvironment(auto_requeue=False)`.

Nothing is saved at the signal. The requeued job runs the same Hydra job again (same
overrides, same job number; the sweep directory's `${now:...}` travels resolved in the
pickled config), so it lands in the same directory; when that directory holds
`checkpoints/last.ckpt`, the job runs as `resume=<job dir>` (the run's saved config, its
`last.ckpt`, its logs and wandb run): the same path as `python train.py resume=<run_dir>`
after a kill. At most `every_n_train_steps` steps are trained again, and the run ends as an
uninterrupted one would. A job SLURM requeues by itself (node failure, preemption; the
script asks for `--requeue`) resumes the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

SLURM_ENVIRONMENT = "lightning.fabric.plugins.environments.SLURMEnvironment"
# mosam_train.runs.LAST_CHECKPOINT (not imported: this module loads at every Hydra start)
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


def requeue_overrides(job_dir: Path, overrides: list[str]) -> list[str]:
    """The overrides a (re)started job runs with: its own; or, once its directory holds
    `checkpoints/last.ckpt` (it ran before and SLURM started it again), only
    `resume=<job dir>`: the run's saved config holds every other override, and `resume=`
    refuses config-group choices on top of a saved config."""
    if (job_dir / LAST_CHECKPOINT).is_file():
        return [f"resume={job_dir}"]
    return list(overrides)


def with_cluster_environment(cfg: DictConfig, environment: dict[str, Any]) -> None:
    """Adds `environment` (a `_target_` dict of Lightning's SLURM cluster environment) to
    `cfg.trainer.plugins`, replacing one already there: the trainer then reads ranks and
    nodes from SLURM with this requeue setting instead of Lightning's default (on)."""
    if "trainer" not in cfg:
        return
    target = environment["_target_"]
    plugins = [
        p
        for p in (cfg.trainer.get("plugins") or [])
        if not (isinstance(p, DictConfig) and p.get("_target_") == target)
    ]
    with open_dict(cfg.trainer):
        cfg.trainer.plugins = [*plugins, environment]


def _check_environment(environment: Any) -> dict[str, Any]:
    if OmegaConf.is_config(environment):
        environment = OmegaConf.to_container(environment, resolve=True)
    if not isinstance(environment, dict) or environment.get("_target_") != SLURM_ENVIRONMENT:
        raise ValueError(
            f"hydra.launcher.lightning_environment must be {{_target_: {SLURM_ENVIRONMENT}, "
            f"auto_requeue: false}}, got {environment!r}"
        )
    if environment.get("auto_requeue", True):
        raise ValueError(
            "hydra.launcher.lightning_environment.auto_requeue must be false: submitit "
            "requeues these jobs, and Lightning's requeue would be a second mechanism."
        )
    return dict(environment)


try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
        SlurmLauncher as _SubmititSlurmLauncher,
    )
except ImportError:  # the `cluster` extra is not installed

    class SlurmLauncher(Launcher):
        """Stands in for the SLURM launcher when hydra-submitit-launcher is missing."""

        def __init__(self, **params: Any) -> None:
            raise ImportError(
                "hydra/launcher=slurm needs hydra-submitit-launcher, which is not installed. "
                "Fix: pip install -e '.[cluster]' (or pip install hydra-submitit-launcher)."
            )

        def setup(self, **kwargs: Any) -> None:  # pragma: no cover - never constructed
            raise NotImplementedError

        def launch(self, job_overrides: Any, initial_job_idx: int) -> Any:  # pragma: no cover
            raise NotImplementedError

else:

    class SlurmLauncher(_SubmititSlurmLauncher):
        """Hydra's submitit SLURM launcher whose jobs run with Lightning's SLURM environment
        (`lightning_environment`, requeue off) and resume from their own `last.ckpt` when
        SLURM starts them again (see the module docstring)."""

        def __init__(self, lightning_environment: Any, **params: Any) -> None:
            self.lightning_environment = _check_environment(lightning_environment)
            super().__init__(**params)

        def job_dir(self, sweep_overrides: list[str], job_num: int) -> Path:
            """Where Hydra's `run_job` runs job `job_num`: sweep dir / sweep subdir."""
            assert self.hydra_context is not None and self.config is not None
            loader = self.hydra_context.config_loader
            cfg = loader.load_sweep_config(self.config, list(sweep_overrides))
            with open_dict(cfg.hydra.job):
                cfg.hydra.job.num = job_num
            previous = HydraConfig.instance().cfg
            HydraConfig.instance().set_config(cfg)  # the subdir may use ${hydra:...}
            try:
                base = str(OmegaConf.select(cfg, "hydra.sweep.dir"))
                return Path(base, str(OmegaConf.select(cfg, "hydra.sweep.subdir"))).absolute()
            finally:
                HydraConfig.instance().cfg = previous

        def __call__(
            self,
            sweep_overrides: list[str],
            job_dir_key: str,
            job_num: int,
            job_id: str,
            singleton_state: dict[type, Singleton],
        ) -> JobReturn:
            import submitit

            assert self.hydra_context is not None and self.config is not None
            assert self.task_function is not None
            Singleton.set_state(singleton_state)
            setup_globals()
            job_dir = self.job_dir(sweep_overrides, job_num)
            overrides = requeue_overrides(job_dir, sweep_overrides)
            if overrides != list(sweep_overrides):
                log.info("job %d started again: resuming %s from its last.ckpt", job_num, job_dir)
            loader = self.hydra_context.config_loader
            sweep_config = loader.load_sweep_config(self.config, overrides)
            with open_dict(sweep_config.hydra.job):
                sweep_config.hydra.job.id = submitit.JobEnvironment().job_id
                sweep_config.hydra.job.num = job_num
            with_cluster_environment(sweep_config, self.lightning_environment)
            return run_job(
                hydra_context=self.hydra_context,
                task_function=self.task_function,
                config=sweep_config,
                job_dir_key=job_dir_key,
                job_subdir_key="hydra.sweep.subdir",
            )
