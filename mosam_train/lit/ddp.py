"""DDP whose extra processes join the Hydra job that started them.

On one node Lightning's DDP starts processes 1..N-1 by running the script again. Its
Hydra support re-runs the original command line with `hydra.run.dir` set to the *run*
directory: in a multirun that is not the job's directory, and `-m` with the sweep's
comma lists comes along too, so every process would start a sweep of its own. Here the
processes run this job's own overrides (`hydra.overrides.task`: the swept values already
chosen) in RUN mode, in the job's output directory, without writing a second `.hydra/`,
each logging to `<task>_rank<k>.log` there.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers import subprocess_script
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher


def job_command(local_rank: int) -> tuple[Sequence[str], str]:
    """(command, working directory) that runs the current Hydra job as process `local_rank`."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd, to_absolute_path

    import __main__

    hc = HydraConfig.get()
    if __main__.__spec__ is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    out = hc.runtime.output_dir
    command += [
        *hc.overrides.task,
        "hydra.mode=RUN",
        f'hydra.run.dir="{out}"',
        "hydra.output_subdir=null",
        f'hydra.job_logging.handlers.file.filename="{out}/{hc.job.name}_rank{local_rank}.log"',
    ]
    return command, get_original_cwd()


class _JobScriptLauncher(_SubprocessScriptLauncher):
    def _call_children_scripts(self) -> None:
        # Lightning builds the Hydra command in one module-level function; this launcher
        # swaps in `job_command` for the duration of the launch.
        original = subprocess_script._hydra_subprocess_cmd
        subprocess_script._hydra_subprocess_cmd = job_command
        try:
            super()._call_children_scripts()
        finally:
            subprocess_script._hydra_subprocess_cmd = original


class JobDDPStrategy(DDPStrategy):
    """`DDPStrategy` (same arguments) whose script-launched processes join the Hydra job."""

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if type(self._launcher) is _SubprocessScriptLauncher:
            self._launcher = _JobScriptLauncher(
                self.cluster_environment, self.num_processes, self.num_nodes
            )
