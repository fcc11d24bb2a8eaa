"""The module's tracker rule: given by the task, read from older checkpoints, replaced by
eval's; and the validation-pictures hook the plots callback calls."""

from types import SimpleNamespace

import lightning as L
import pytest
import torch

from mosam_train.inference.rules import TrackerRule
from mosam_train.lit.callbacks import ValidationPlots
from mosam_train.lit.module import MoSAMModule
from mosam_train.trackers.cond_only import CondOnly

MICRO = {"variant": "sam2.1_micro", "image_size": 128, "overrides": {}}


def save_lightning_checkpoint(module: MoSAMModule, hparams: dict, path):
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": hparams,
            "pytorch-lightning_version": L.__version__,
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def module():
    return MoSAMModule(sam2=MICRO)


def test_validation_runs_the_tracker_the_task_passes():
    module = MoSAMModule(sam2=MICRO, tracker={"name": "cond_only"})
    assert module.hparams.tracker == {"name": "cond_only"}  # saved with the checkpoint
    assert isinstance(module.propagator().rule, CondOnly)
    assert type(MoSAMModule(sam2=MICRO).propagator().rule) is TrackerRule  # SAM 2's


def test_eval_hands_its_own_tracker_to_the_propagator(module):
    rule = CondOnly()
    assert module.propagator(rule).rule is rule


@pytest.mark.parametrize(
    ("memory", "name", "rule"),
    [("cond_only", "cond_only", CondOnly), ("full", "sam2", TrackerRule)],
)
def test_a_checkpoint_with_the_old_inference_memory_loads_with_its_rule(
    module, memory, name, rule, tmp_path
):
    # saved before tracker= existed: `inference: {memory: ...}`, no `tracker`
    hparams = {"sam2": MICRO, "inference": {"memory": memory}, "freeze_sam2": False}
    path = save_lightning_checkpoint(module, hparams, tmp_path / "old.ckpt")
    loaded = MoSAMModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    assert loaded.tracker_cfg == {"name": name}
    assert type(loaded.propagator().rule) is rule


def test_an_unknown_old_memory_setting_is_refused():
    with pytest.raises(ValueError, match=r"inference.memory='recent'.*tracker="):
        MoSAMModule(sam2=MICRO, inference={"memory": "recent"})


def test_a_checkpoint_naming_a_rule_this_process_lacks_still_loads(module, tmp_path):
    hparams = {"sam2": MICRO, "tracker": {"name": "not_registered_here"}}
    path = save_lightning_checkpoint(module, hparams, tmp_path / "custom.ckpt")
    loaded = MoSAMModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    assert isinstance(loaded.propagator(CondOnly()).rule, CondOnly)  # eval brings its own
    with pytest.raises(ValueError, match=r"unknown tracker rule 'not_registered_here'"):
        loaded.propagator()


def test_plots_callback_asks_for_label_maps_only_when_it_draws(module):
    plots = ValidationPlots(every_n_validations=2, overlay_videos=3)
    trainer = SimpleNamespace(sanity_checking=False)
    plots.on_validation_start(trainer, module)
    assert module.val_keep_labels == 3
    plots.count = 1  # the next validation does not draw
    plots.on_validation_start(trainer, module)
    assert module.val_keep_labels == 0
