"""Every config option composes, and what it configures instantiates."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from mosam_train.startup import start

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def compose_cfg(name: str, overrides: list[str], tmp_path: Path):
    start()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    # Resolve ${hydra:...} as a running app would.
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path / "out")
        cfg.hydra.runtime.cwd = str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    return cfg


def resolve(cfg) -> dict:
    """Resolve the job config (the hydra node's sweep fields only exist in a running app)."""
    job = cfg.copy()
    with open_dict(job):
        del job["hydra"]
    return OmegaConf.to_container(job, resolve=True)


def test_groups_are_the_documented_ones():
    for group in [
        "data",
        "model",
        "sam2",
        "trainer",
        "callbacks",
        "logger",
        "experiment",
        "paths",
        "hydra",
        "hparams_search",
    ]:
        assert options(group), group


@pytest.mark.parametrize("name", ["train", "eval", "predict"])
def test_top_level_configs_resolve(name, tmp_path):
    cfg = compose_cfg(name, [], tmp_path)
    resolve(cfg)
    assert cfg.model.sam2.variant == "sam2.1_micro"


@pytest.mark.parametrize("option", options("sam2"))
@pytest.mark.slow
def test_every_sam2_size_builds_the_module(option, tmp_path):
    cfg = compose_cfg("train", [f"sam2={option}"], tmp_path)
    module = instantiate(cfg.model, _convert_="all")
    assert module.model.image_size == cfg.model.sam2.image_size
    assert isinstance(module.hparams.sam2, dict)  # plain dicts, loadable without Hydra


@pytest.mark.parametrize("option", options("data"))
def test_every_data_option_instantiates(option, tmp_path):
    cfg = compose_cfg("train", [f"data={option}"], tmp_path)
    dm = instantiate(cfg.data, _convert_="all")
    assert dm.hparams.image_size == 128


@pytest.mark.parametrize("option", options("trainer"))
def test_every_trainer_option_instantiates(option, tmp_path):
    # gpu / ddp options are checked for structure and built on CPU (no GPU here).
    cfg = compose_cfg("train", [f"trainer={option}"], tmp_path)
    with open_dict(cfg):
        cfg.trainer.accelerator = "cpu"
        cfg.trainer.devices = 1
        cfg.trainer.pop("strategy", None)
        cfg.trainer.pop("num_nodes", None)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert trainer.gradient_clip_val is not None


@pytest.mark.parametrize("group", ["callbacks", "logger"])
def test_callbacks_and_loggers_instantiate(group, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    for option in options(group):
        cfg = compose_cfg("train", [f"{group}={option}"], tmp_path)
        for node in (cfg.get(group) or {}).values():
            if group == "logger" and "WandbLogger" in node._target_:
                with open_dict(node):
                    node.offline = True
            assert instantiate(node) is not None


@pytest.mark.parametrize("option", options("experiment"))
def test_every_experiment_composes(option, tmp_path):
    cfg = compose_cfg("train", [f"experiment={option}"], tmp_path)
    resolve(cfg)


def test_hparams_search_composes(tmp_path):
    for option in options("hparams_search"):
        cfg = compose_cfg("train", [f"hparams_search={option}"], tmp_path)
        assert cfg.hydra.sweeper.params


def test_mix_trains_and_validates_on_the_sa_v_that_data_root_names(tmp_path):
    cfg = resolve(compose_cfg("train", ["data=mix", "data.root=/elsewhere/SA-V"], tmp_path))
    assert cfg["data"]["mix"]["sav"]["root"] == "/elsewhere/SA-V" == cfg["data"]["root"]
