"""Every checkpoint load is `torch.load(weights_only=True)`: a file whose unpickling would
run code is refused, with a message naming the file, why and the fix, and the code in it
never runs."""

from __future__ import annotations

import ast
import pathlib
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel
from omegaconf import OmegaConf

from mosam_train.lit.checkpoint_io import AtomicCheckpointIO, load_checkpoint_file
from mosam_train.lit.module import MoSAMModule
from mosam_train.models.sam2_builder import read_sam2_state_dict
from mosam_train.tasks.inference_model import load_module

REPO = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling it creates `marker`: proof that code in a checkpoint ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture
def unsafe_ckpt(tmp_path) -> tuple[Path, Path]:
    """A Lightning-shaped checkpoint with an arbitrary object inside."""
    marker = tmp_path / "code_ran"
    path = tmp_path / "unsafe.ckpt"
    torch.save(
        {
            "state_dict": {"w": torch.zeros(2)},
            "hyper_parameters": {"sam2": {"variant": "sam2.1_micro"}},
            "model": {"w": torch.zeros(2)},
            "pytorch-lightning_version": L.__version__,
            "global_step": 0,
            "epoch": 0,
            "extra": Payload(marker),
        },
        path,
    )
    return path, marker


def assert_refusal(error: BaseException, path: Path) -> None:
    text = str(error)
    assert str(path) in text
    assert "pickled Python objects beyond tensors and plain containers" in text
    assert "Fix:" in text


def test_every_entry_refuses_a_checkpoint_with_objects(unsafe_ckpt):
    path, marker = unsafe_ckpt
    with pytest.raises(ValueError) as e:
        load_checkpoint_file(path)
    assert_refusal(e.value, path)
    # eval.py / predict.py (.ckpt of this project or SAM 2 weights)
    with pytest.raises(ValueError) as e:
        load_module(OmegaConf.create({"ckpt": str(path)}))
    assert_refusal(e.value, path)
    # model.sam2.weights=... (official .pt or a checkpoint of this project)
    with pytest.raises(ValueError) as e:
        read_sam2_state_dict(path)
    assert_refusal(e.value, path)
    # train.py ckpt_path= / resume=: Lightning reads through the trainer's checkpoint IO
    trainer = L.Trainer(
        plugins=[AtomicCheckpointIO()],
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(ValueError) as e:
        trainer.fit(BoringModel(), ckpt_path=path, weights_only=True)
    assert_refusal(e.value, path)
    with pytest.raises(Exception, match="Weights only load failed"):
        MoSAMModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    assert not marker.exists()


def test_raft_weights_are_loaded_safely(unsafe_ckpt):
    from mosam_train.optical_flow import RaftFlow

    path, marker = unsafe_ckpt
    with pytest.raises(ValueError) as e:
        RaftFlow(weights=path, size="small")
    assert_refusal(e.value, path)
    assert not marker.exists()


def _loads(tree: ast.AST) -> list[tuple[int, str, ast.Call]]:
    """Calls that read a checkpoint file: torch.load, *.load_from_checkpoint, and
    fit / validate / test / predict with a ckpt_path."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        keywords = {k.arg for k in node.keywords}
        if (
            name == "torch.load"
            or name.endswith(".load_from_checkpoint")
            or (
                "ckpt_path" in keywords
                and name.split(".")[-1] in {"fit", "validate", "test", "predict"}
            )
        ):
            found.append((node.lineno, name, node))
    return found


def test_every_checkpoint_load_in_the_code_is_weights_only():
    files = [*sorted((REPO / "mosam_train").rglob("*.py")), *sorted(REPO.glob("*.py"))]
    files += sorted((REPO / "hydra_plugins").glob("*.py"))
    checked, unsafe = 0, []
    for path in files:
        for line, name, call in _loads(ast.parse(path.read_text(), str(path))):
            checked += 1
            flag = next((k.value for k in call.keywords if k.arg == "weights_only"), None)
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                unsafe.append(
                    f"{path.relative_to(REPO)}:{line}: {name}(...) without weights_only=True"
                )
    assert checked >= 4  # the audit sees the loads (load_checkpoint_file, tasks, ...)
    assert not unsafe, "\n".join(unsafe)
