"""Multirun jobs that do not affect each other (configs/hydra/default.yaml `callbacks`).

Hydra's basic launcher runs a multirun's jobs one after another in one process and keeps
going when one fails: the job's exception is stored in its `JobReturn`, and the sweeper
re-raises the first one after the whole batch (the command then exits non-zero). The
Optuna sweeper records the trial as failed and continues (`max_failure_rate: 1.0` in
configs/hparams_search/mosam_optuna.yaml).

What such a failed job leaves behind is the problem: the stored exception's traceback
holds every frame of the job (its trainer, model, batches, CUDA tensors) until the sweep
ends, so a job that failed with CUDA out of memory makes the next one fail too.
`JobCleanup` clears those frames once the job ended and logs the failure with the job's
directory; after every job it collects garbage and returns cached CUDA memory. The job's
wandb run is finished by `tasks.train` itself (also when it fails), so the next job opens
its own.
"""

from __future__ import annotations

import gc
import logging
import sys
import traceback
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class JobCleanup(Callback):
    """Hydra callback: after each job, free what it held; report a failed job."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status == JobStatus.FAILED:
            error = job_return._return_value  # the property would raise it
            num = OmegaConf.select(config, "hydra.job.num", default=None)
            multirun = OmegaConf.select(config, "hydra.mode", default=None) == RunMode.MULTIRUN
            log.error(
                "%s failed (%s: %s); its directory: %s.%s",
                f"job {num}" if multirun else "the job", type(error).__name__, error,
                config.hydra.runtime.output_dir,
                " The sweep goes on with the next job." if multirun else "",
            )  # fmt: skip
            # Keep the tracebacks' files and lines (the sweep prints them at the end) but
            # drop every frame's local variables, chained exceptions included.
            seen: set[int] = set()
            while isinstance(error, BaseException) and id(error) not in seen:
                seen.add(id(error))
                traceback.clear_frames(error.__traceback__)
                error = error.__cause__ or error.__context__
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
