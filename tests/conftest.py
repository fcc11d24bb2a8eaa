"""Shared fixtures: the small synthetic dataset, micro SAM 2 weights, entry points run in a
subprocess, and configs composed as the entry points compose them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from sam2.modeling.sam2_base import SAM2Base

from mosam_train.data.synthetic import ensure_synthetic
from mosam_train.models.sam2_builder import build_sam2
from mosam_train.startup import start

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SMALL = dict(num_train=8, num_val=8, train_frames=16, val_frames=32)

start()  # as the entry points do before Hydra starts

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Workers share the cores (pyproject's addopts): one thread each, and for the entry
    # points they start, so that no core runs two threads of the suite at once.
    torch.set_num_threads(1)
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory) -> Path:
    """8 train videos x 16 frames, 8 val videos x 32 frames (2 per tag), seed 0."""
    root = tmp_path_factory.mktemp("syn") / "synthetic"
    return ensure_synthetic(root, seed=0, progress=False, workers=1, **SMALL)


def micro_sam2(
    seed: int = 0, object_score_bias: float | None = 5.0, multimask: bool = False
) -> SAM2Base:
    """A seed-`seed` random-init micro SAM 2.1, in eval mode. Its object-score head says
    "no object" almost everywhere, so its masks are empty; a positive `object_score_bias`
    keeps them non-empty on most frames (None: left as initialised). `multimask`: the same
    weights, tracking with SAM 2's three candidate masks (what candidate-choosing rules
    need)."""
    torch.manual_seed(seed)
    sam = build_sam2("sam2.1_micro").eval()
    if object_score_bias is not None:
        with torch.no_grad():
            sam.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(object_score_bias)
    if multimask:
        tracking = build_sam2("sam2.1_micro", overrides={"multimask_output_for_tracking": True})
        tracking.load_state_dict(sam.state_dict())
        sam = tracking.eval()
    return sam


def write_micro_weights(path: Path, seed: int = 0, object_score_bias: float | None = 5.0) -> Path:
    """`micro_sam2`'s weights in the official format ({"model": state_dict})."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": micro_sam2(seed, object_score_bias).state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def micro(tmp_path_factory) -> Callable[..., SAM2Base | Path]:
    """`micro(seed=0, object_score_bias=5.0, multimask=False)`: the model;
    `micro(..., path=P)`: its weights written to P."""

    def make(
        seed: int = 0,
        object_score_bias: float | None = 5.0,
        path: Path | None = None,
        multimask: bool = False,
    ) -> SAM2Base | Path:
        if path is None:
            return micro_sam2(seed, object_score_bias, multimask)
        return write_micro_weights(path, seed, object_score_bias)

    return make


def save_as_trained(module, path: Path) -> Path:
    """`module` (a MoSAMModule) saved as a training run's checkpoint is."""
    import lightning as L

    saved = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
             "pytorch-lightning_version": L.__version__}  # fmt: skip
    module.on_save_checkpoint(saved)  # what a training run's checkpoint keeps
    torch.save(saved, path)
    return path


def write_mosam_checkpoint(path: Path, weights: Path, mgp: dict, stms: dict) -> Path:
    """A fresh MoSAM on the micro `weights`, saved as a training run's checkpoint is."""
    from mosam_train.lit.module import MoSAMModule

    sam2 = {"variant": "sam2.1_micro", "image_size": 128, "weights": str(weights)}
    return save_as_trained(MoSAMModule(sam2=sam2, mgp=mgp, stms=stms, freeze_sam2=True), path)


@pytest.fixture(scope="session")
def save_checkpoint() -> Callable[..., Path]:
    return save_as_trained


@pytest.fixture(scope="session")
def mosam_checkpoint() -> Callable[..., Path]:
    return write_mosam_checkpoint


@pytest.fixture(scope="session")
def micro_weights(tmp_path_factory) -> Path:
    """Seed-0 micro SAM 2.1 weights with object-score bias 5.0, written once."""
    return write_micro_weights(tmp_path_factory.mktemp("micro") / "micro.pt")


def run_entry_point(
    script: str,
    *args: str,
    ok: bool = True,
    env: dict[str, str] | None = None,
    one_thread: bool = False,
    inherit_env: bool = True,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """`python <script> <args>` in the repository, as a user runs it. `ok`: it must exit 0
    (else the test fails with the end of its output); `env`: added to this process's
    environment (`inherit_env=False`: the whole environment); `one_thread`: float results
    that must not depend on how many threads other tests set."""
    extra = dict(env or {})
    if one_thread:
        extra.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, script, *args],
        cwd=REPO,
        env=dict(os.environ, **extra) if inherit_env else extra,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.fixture(scope="session")
def run_script() -> Callable[..., subprocess.CompletedProcess]:
    """`run_entry_point` (see there)."""
    return run_entry_point


def compose_job(name: str, *overrides: str, out: Path, job: bool = True) -> DictConfig:
    """configs/<name>.yaml as `python <name>.py <overrides>` composes it, run from
    `out`'s parent into the run directory `out` (`${hydra:...}` resolves as in the running
    app, so `paths.*` lie under `out`'s parent). `job`: without the `hydra` node, as the
    app passes the config to its task."""
    start()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose(name, overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.runtime.cwd = str(out.parent)
    HydraConfig.instance().set_config(cfg)
    if not job:
        return cfg
    task_cfg = cfg.copy()
    with open_dict(task_cfg):
        del task_cfg["hydra"]
    return task_cfg


@pytest.fixture(scope="session")
def compose_config() -> Callable[..., DictConfig]:
    """`compose_job` (see there)."""
    return compose_job


@pytest.fixture(scope="session")
def small_data(small_synthetic) -> Callable[..., list[str]]:
    """`small_data(samples_per_epoch=8, val_videos=2)`: the overrides that train and
    validate on `small_synthetic` in seconds (4-frame clips, no workers)."""

    def overrides(samples_per_epoch: int = 8, val_videos: int = 2) -> list[str]:
        return [
            f"data.root={small_synthetic}",
            "data.synthetic=false",
            "data.num_workers=0",
            f"data.samples_per_epoch={samples_per_epoch}",
            "data.clip_len=4",
            f"data.val_max_videos={val_videos}",
        ]

    return overrides


class NoiseFrames:
    """Random frames [3, 128, 128] made on demand (seeded by index), as a lazy reader
    delivers them, for a 64x80 video."""

    height, width = 64, 80
    frame_step = 1

    def __init__(self, num_frames: int) -> None:
        self.num_frames = num_frames

    def image(self, t: int) -> torch.Tensor:
        return torch.randn(3, 128, 128, generator=torch.Generator().manual_seed(t))


@pytest.fixture(scope="session")
def noise_frames() -> type[NoiseFrames]:
    """`noise_frames(num_frames)`: a `NoiseFrames` video."""
    return NoiseFrames
