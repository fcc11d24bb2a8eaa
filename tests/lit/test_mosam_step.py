"""The frozen-base MoSAM training step, pinned: its losses and its gradients on a fixed
batch, so that making the step cheaper cannot change what it trains.

Regenerate only for an intended change of behaviour (and say so in the commit):

    MOSAM_UPDATE_GOLDENS=1 python -m pytest tests/lit/test_mosam_step.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from sam2.modeling.sam2_base import SAM2Base

from mosam_train.data.video import ClipBatch
from mosam_train.lit.module import MoSAMModule

GOLDEN = Path(__file__).parents[1] / "goldens" / "mosam_step_micro.json"
UPDATE = os.environ.get("MOSAM_UPDATE_GOLDENS") == "1"
MICRO = {"variant": "sam2.1_micro", "image_size": 128, "weights": None, "overrides": {}}
MOSAM = {  # configs/model/mosam.yaml, with selection active within an 8-frame clip
    "prompts": {"prob_mask": 0.5, "prob_box": 0.5},
    "loss": {"weight_mask": 20.0, "weight_frame_conf": 1.0, "weight_pixel_conf": 1.0},
    "optim": {"lr": 1e-3, "lr_image_encoder": 0.0, "weight_decay": 0.01},
    "mgp": {"sparse": True, "dense": True, "history": 4},
    "stms": {"stride": 1, "candidates": 8, "top_k": 3},
    "flow": {"name": "farneback"},
    "freeze_sam2": True,
}
STEPS = 3


def gliding_squares(b: int = 2, t: int = 8, o: int = 2, s: int = 128) -> ClipBatch:
    """Squares gliding 6 px right per frame over a gradient, one per object slot, with
    their exact flow (current -> previous: 6 px to the left)."""
    ramp = torch.linspace(-1.5, 0.5, s)
    frames = ramp.expand(b, t, 3, s, s).clone()
    masks = torch.zeros(b, t, o, s, s, dtype=torch.bool)
    for i in range(b):
        for k in range(o):
            for j in range(t):
                y, x = 16 + 56 * k, 8 + 6 * j + 24 * i
                masks[i, j, k, y : y + 28, x : x + 28] = True
                frames[i, j, k % 3, y : y + 28, x : x + 28] = 1.5
    flows = torch.zeros(b, t, 2, s, s)
    flows[:, 1:, 0] = -6.0
    valid = torch.ones(b, o, dtype=torch.bool)
    valid[1, 1] = False  # a padded object slot
    meta = [{"frame_step": 1}] * b
    return ClipBatch(
        frames, masks, valid, ["a", "b"], [list(range(t))] * b, [[1, 2]] * b, meta, flows
    )


def run_steps(base: SAM2Base) -> dict[str, list[float]]:
    """STEPS optimizer steps of a seed-0 frozen MoSAM on SAM 2 `base` and
    `gliding_squares`: each step's loss terms and each trainable parameter's gradient norm."""
    torch.manual_seed(0)
    module = MoSAMModule(sam2=MICRO, **MOSAM)
    module.model.sam2.load_state_dict(base.state_dict())
    module.train()
    module.log = lambda *a, **k: None  # no trainer attached
    cfg = module.optimizer_config(STEPS)
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    batch = gliding_squares()
    found: dict[str, list[float]] = {}
    for step in range(STEPS):
        torch.manual_seed(100 + step)  # the prompt simulation's draws
        loss = module.training_step(batch, step)
        opt.zero_grad()
        loss.backward()
        for name, value in module.step_losses.items():
            found.setdefault(name, []).append(float(value))
        for name, p in module.model.named_parameters():
            if p.requires_grad:
                norm = 0.0 if p.grad is None else float(p.grad.norm())
                found.setdefault(f"grad/{name}", []).append(norm)
        opt.step()
        sched.step()
    return found


def test_frozen_mosam_step_losses_and_gradients_are_pinned(micro):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # float sums depend on the thread count
    try:
        found = run_steps(micro())  # masks not empty: gradients flow
    finally:
        torch.set_num_threads(threads)
    grads = [k for k in found if k.startswith("grad/")]
    assert grads and all(k.startswith(("grad/mgp.", "grad/stms.")) for k in grads)
    assert any(v[-1] > 0 for k, v in found.items() if k.startswith("grad/mgp.dense"))
    if UPDATE:
        GOLDEN.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        return
    expected = json.loads(GOLDEN.read_text())
    assert found.keys() == expected.keys()
    for key, values in expected.items():
        assert found[key] == pytest.approx(values, rel=1e-5, abs=1e-8), key


def test_a_frozen_image_encoder_runs_without_autograd_and_a_trained_one_with():
    seen = {}
    for frozen in (True, False):
        torch.manual_seed(0)
        extra = MOSAM if frozen else {"prompts": {"prob_mask": 1.0}}
        module = MoSAMModule(sam2=MICRO, **extra)
        module.train()
        module.log = lambda *a, **k: None  # no trainer attached
        encode = module.model.encode_images

        def spy(images, encode=encode, frozen=frozen):
            seen[frozen] = torch.is_grad_enabled()
            return encode(images)

        module.model.encode_images = spy
        module.training_step(gliding_squares(t=3), 0).backward()
    assert seen == {True: False, False: True}
