"""A GPU trainer on a machine without CUDA stops before anything is built, saying which
trainer option to use and whether the data and weights the run reads are there."""

from __future__ import annotations

import pytest
import torch

from mosam_train import tasks
from mosam_train.preflight import check_train_setup
from mosam_train.tasks import training


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_gpu_experiment_without_gpu_names_the_fix_the_data_and_the_weights(
    compose_config, tmp_path, no_gpu, monkeypatch
):
    cfg = compose_config(
        "train",
        "experiment=mosam_sav",
        f"paths.data_dir={tmp_path / 'data'}",
        f"paths.checkpoint_dir={tmp_path / 'ckpt'}",
        out=tmp_path / "out",
    )

    def built(*args, **kwargs):
        raise AssertionError("instantiated something before the check")

    monkeypatch.setattr(training, "instantiate", built)
    with pytest.raises(RuntimeError) as e:
        tasks.train(cfg)
    msg = str(e.value)
    assert "experiment=mosam_sav asks for trainer.accelerator=gpu (trainer=ddp)" in msg
    assert "Fix: add trainer=cpu" in msg and "trainer=ddp_cpu" in msg
    assert f"data.root {tmp_path / 'data' / 'SA-V'} does not exist" in msg
    weights = tmp_path / "ckpt" / "sam2.1_hiera_base_plus.pt"
    assert f"model.sam2.weights {weights} does not exist" in msg
    assert "python -m mosam_train.models.download sam2.1_hiera_base_plus" in msg


def test_with_the_data_and_weights_in_place_it_says_so(compose_config, tmp_path, no_gpu):
    for d in ("SA-V", "YouTubeVOS2019", "MOSE"):
        (tmp_path / "data" / d).mkdir(parents=True)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "sam2.1_hiera_base_plus.pt").write_bytes(b"")
    cfg = compose_config(
        "train",
        "experiment=mosam_sav",
        "data=mix",
        f"paths.data_dir={tmp_path / 'data'}",
        f"paths.checkpoint_dir={tmp_path / 'ckpt'}",
        out=tmp_path / "out",
    )
    with pytest.raises(RuntimeError, match="trainer=cpu") as e:
        check_train_setup(cfg)
    assert "does not exist" not in str(e.value)
    for key in ("data.mix.sav.root", "data.mix.ytvos.root", "data.mix.mose.root"):
        assert key in str(e.value)


@pytest.mark.parametrize("trainer", ["cpu", "ddp_cpu", "default"])
def test_cpu_trainers_pass(compose_config, tmp_path, no_gpu, trainer):
    cfg = compose_config(
        "train", "experiment=mosam_sav", f"trainer={trainer}", out=tmp_path / "out"
    )
    check_train_setup(cfg)  # missing data is the datamodule's to report, as before
