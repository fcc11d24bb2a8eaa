"""Checkpoint-like files: every way a file can fail to be a checkpoint is an error naming
the file; weights with NaN or inf are refused; an evaluation directory resumes only with
the very same checkpoint file (by sha256); exports never clobber a shared base."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from mosam_train import tasks
from mosam_train.checkpoint_files import (
    CheckpointFileError,
    displaced_path,
    load_checkpoint_file,
    sha256_of,
)
from mosam_train.lit.checkpoint_io import AtomicCheckpointIO
from mosam_train.lit.module import MoSAMModule
from mosam_train.models.sam2_builder import WeightsMismatchError, read_sam2_state_dict
from mosam_train.tasks.export import export
from mosam_train.tasks.inference_model import load_module


@pytest.fixture(scope="module")
def not_checkpoints(micro, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Files that are not checkpoints, with what the error must say about each."""
    root = tmp_path_factory.mktemp("bad")
    full = micro(seed=0, object_score_bias=None, path=root / "full.pt").read_bytes()
    files = {
        "text": (b"these are not weights\n", "is not a PyTorch checkpoint"),
        "truncated": (full[: len(full) // 2], "is a truncated or corrupt PyTorch archive"),
        "empty": (b"", "is empty"),
    }
    out = {}
    for name, (content, message) in files.items():
        (root / f"{name}.pt").write_bytes(content)
        out[name] = (root / f"{name}.pt", message)
    torch.save([torch.zeros(2)], root / "list.pt")
    out["list"] = (root / "list.pt", "holds a list, not a dict")
    return out


def eval_cfg(compose_config, ckpt: Path, root: Path, out: Path, *extra: str):
    return compose_config(
        "eval", f"ckpt={ckpt}", "sam2=micro", f"data.root={root}", "data.synthetic=false",
        "data.val_max_videos=1", "plots.videos=0", *extra, out=out,
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["text", "truncated", "empty", "list"])
def test_every_loader_names_a_file_that_is_not_a_checkpoint(
    compose_config, not_checkpoints, kind, tmp_path
):
    path, message = not_checkpoints[kind]
    loaders = {
        "load_checkpoint_file": load_checkpoint_file,
        "model.sam2.weights=": read_sam2_state_dict,
        "ckpt= (eval, predict)": lambda p: load_module(
            eval_cfg(compose_config, p, tmp_path, tmp_path)
        ),
        "ckpt_path= / resume=": AtomicCheckpointIO().load_checkpoint,
    }
    for entry, load in loaders.items():
        with pytest.raises(CheckpointFileError) as e:
            load(path)
        assert str(path) in str(e.value) and message in str(e.value), (entry, str(e.value))
        assert "Fix:" in str(e.value)


def test_wrong_keys_are_named(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": {"w": torch.zeros(2)}}, path)
    with pytest.raises(WeightsMismatchError, match="holds neither SAM 2 weights"):
        read_sam2_state_dict(path)
    with pytest.raises(CheckpointFileError, match=r"no 'state_dict', 'global_step'"):
        AtomicCheckpointIO().load_checkpoint(path)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["text", "truncated"])
def test_eval_py_names_a_broken_checkpoint(run_script, not_checkpoints, kind, tmp_path):
    path, message = not_checkpoints[kind]
    proc = run_script(
        "eval.py", f"ckpt={path}", "sam2=micro", f"hydra.run.dir={tmp_path}", ok=False, timeout=300
    )
    assert proc.returncode != 0
    assert str(path) in proc.stderr and message in proc.stderr, proc.stderr[-2000:]
    assert (
        "KeyError" not in proc.stderr and "PytorchStreamReader" not in proc.stderr.split(message)[0]
    )


def test_weights_with_nan_are_refused_naming_the_file(micro, tmp_path):
    official = micro(seed=0, object_score_bias=None, path=tmp_path / "nan.pt")
    sd = torch.load(official, weights_only=True)
    sd["model"]["obj_ptr_proj.layers.0.weight"][0, 0] = float("nan")
    torch.save(sd, official)
    with pytest.raises(CheckpointFileError, match=r"obj_ptr_proj\.layers\.0\.weight") as e:
        read_sam2_state_dict(official)
    assert str(official) in str(e.value)

    module = MoSAMModule(sam2={"variant": "sam2.1_micro"})
    lightning = tmp_path / "nan.ckpt"
    state = {k: v.clone() for k, v in module.state_dict().items()}
    state["model.sam2.no_mem_embed"].fill_(float("inf"))
    torch.save(
        {
            "state_dict": state,
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": L.__version__,
        },
        lightning,
    )
    with pytest.raises(CheckpointFileError, match=r"model\.sam2\.no_mem_embed") as e:
        load_module(OmegaConf.create({"ckpt": str(lightning)}))
    assert str(lightning) in str(e.value)


@pytest.mark.slow
def test_eval_resume_with_a_swapped_checkpoint_is_refused(
    compose_config, micro, small_synthetic, tmp_path
):
    ckpt = micro(seed=0, object_score_bias=None, path=tmp_path / "model.pt")
    first_sha = sha256_of(ckpt)
    out = tmp_path / "eval"
    tasks.evaluate(eval_cfg(compose_config, ckpt, small_synthetic, out))
    recorded = json.loads((out / "eval_weights.json").read_text())
    assert recorded == {"path": str(ckpt), "sha256": first_sha}
    tasks.evaluate(eval_cfg(compose_config, ckpt, small_synthetic, out))  # the same file resumes
    micro(seed=1, object_score_bias=None, path=ckpt)  # another model at the same path
    with pytest.raises(ValueError, match="holds results of another model") as e:
        tasks.evaluate(eval_cfg(compose_config, ckpt, small_synthetic, out))
    assert first_sha in str(e.value) and sha256_of(ckpt) in str(e.value)


def _trainer(step: int, best: str = "") -> SimpleNamespace:
    return SimpleNamespace(
        global_step=step,
        fast_dev_run=False,
        checkpoint_callback=SimpleNamespace(best_model_path=best),
    )


def test_export_publishes_only_a_full_schedule_and_keeps_the_old_base(micro, tmp_path):
    module = MoSAMModule(sam2={"variant": "sam2.1_micro"})
    shared = tmp_path / "checkpoints"
    shared.mkdir()
    old = micro(seed=7, object_score_bias=None, path=shared / "base.pt")
    old_sha = sha256_of(old)

    def cfg(run: str) -> OmegaConf:
        return OmegaConf.create(
            {
                "paths": {"output_dir": str(tmp_path / run)},
                "export": {"name": "base.pt", "publish_dir": str(shared), "publish_min_steps": 10},
            }
        )

    export(cfg("short"), _trainer(4), module)  # a short trial: its own copy only
    assert (tmp_path / "short" / "export" / "base.pt").is_file()
    assert sha256_of(old) == old_sha and sorted(p.name for p in shared.iterdir()) == ["base.pt"]

    export(cfg("full"), _trainer(10), module)  # the whole schedule: published
    new_sha = sha256_of(tmp_path / "full" / "export" / "base.pt")
    assert sha256_of(shared / "base.pt") == new_sha
    kept = displaced_path(shared / "base.pt", old_sha)
    assert kept.name == f"base.{old_sha[:8]}.pt" and sha256_of(kept) == old_sha
