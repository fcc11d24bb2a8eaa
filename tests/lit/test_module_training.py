"""MoSAMModule training: one-batch overfit, optimiser groups, weight export."""

import functools

import pytest
import torch

from mosam_train.data.video import ClipBatch
from mosam_train.lit.module import MoSAMModule
from mosam_train.models.sam2_builder import read_sam2_state_dict

MICRO = {"variant": "sam2.1_micro", "image_size": 128, "weights": None, "overrides": {}}


def moving_square_batch(b: int = 2, t: int = 4, o: int = 2, s: int = 128) -> ClipBatch:
    """Bright squares moving right over a dark background, one per object slot."""
    frames = torch.full((b, t, 3, s, s), -1.5)
    masks = torch.zeros(b, t, o, s, s, dtype=torch.bool)
    for i in range(b):
        for k in range(o):
            for j in range(t):
                y, x = 20 + 50 * k, 10 + 8 * j + 20 * i
                masks[i, j, k, y : y + 30, x : x + 30] = True
                frames[i, j, :, y : y + 30, x : x + 30] = 1.0 + k
    valid = torch.ones(b, o, dtype=torch.bool)
    valid[1, 1] = False  # a padded object slot must be ignored
    return ClipBatch(frames, masks, valid, ["a", "b"], [list(range(t))] * b, [[1, 2]] * b)


def test_one_batch_overfit_lowers_loss():
    torch.manual_seed(0)
    module = MoSAMModule(
        sam2=MICRO,
        prompts={"prob_mask": 1.0},
        optim={"lr": 1e-3, "lr_image_encoder": 1e-3, "weight_decay": 0.0},
    )
    module.train()
    batch = moving_square_batch()
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        clip_idx, obj_idx = batch.object_valid.nonzero(as_tuple=True)
        targets = batch.masks[clip_idx, :, obj_idx].transpose(0, 1)
        prompt = module.prompt_sim.sample(targets[0])
        outputs = module.model.forward_clip(batch.frames, clip_idx, prompt)
        loss = module.criterion(outputs, targets)
        opt.zero_grad()
        loss["loss"].backward()
        opt.step()
        losses.append(loss["loss_dice"].item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_training_step_uses_valid_objects_only_and_backprops_through_memory():
    torch.manual_seed(0)
    module = MoSAMModule(sam2=MICRO, prompts={"prob_mask": 0.0, "prob_box": 1.0})
    module.train()
    batch = moving_square_batch()
    module.log = lambda *a, **k: None  # no trainer attached
    loss = module.training_step(batch, 0)
    loss.backward()
    # Memory attention only acts on frames after the first: its gradient proves the clip
    # is tracked through memory with nothing detached.
    grads = [p.grad for p in module.model.sam2.memory_attention.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_one_frame_clips_train_on_the_prompted_frame():
    """Image training (`data.clip_len=1`, box or point prompts, as SAM 2's image stage):
    the step logs its IoU on the prompted frame, the only one it has."""
    torch.manual_seed(0)
    module = MoSAMModule(sam2=MICRO, prompts={"prob_mask": 0.0, "prob_box": 1.0})
    module.train()
    logged = {}
    module.log = lambda name, value, **k: logged.__setitem__(name, value)
    loss = module.training_step(moving_square_batch(t=1), 0)
    loss.backward()
    assert torch.isfinite(loss) and 0 <= float(logged["train/iou"]) <= 100
    grads = [p.grad for p in module.model.sam2.sam_mask_decoder.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_export_writes_official_format(tmp_path):
    module = MoSAMModule(sam2=MICRO)
    path = module.export_sam2_weights(tmp_path / "w.pt")
    sd = read_sam2_state_dict(path)
    assert set(sd) == set(module.model.sam2.state_dict())
    raw = torch.load(path, weights_only=True)
    assert list(raw) == ["model"]


# MoSAM with its pixel filter acting: the memory cross-attention reads a key bias that is
# set for one step and cleared before the backward pass, so the recomputation must see it
PIXEL_FILTER = {
    "stms": {"stride": 1, "candidates": 8, "top_k": 3, "frame": False, "pixel": True},
    "freeze_sam2": True,
}


@pytest.mark.parametrize("parts", [{}, PIXEL_FILTER], ids=["sam2", "mosam_pixel_filter"])
def test_activation_checkpointing_gives_the_same_loss_and_gradients(parts):
    def grads(checkpointing: bool) -> tuple[float, dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        module = MoSAMModule(
            sam2=MICRO, prompts={"prob_mask": 1.0}, activation_checkpointing=checkpointing,
            **parts,
        )  # fmt: skip
        if module.model.added_parameter_prefixes:  # a trained filter, not the pass-through
            with torch.no_grad():
                for name, p in module.model.named_parameters():
                    if name.startswith(module.model.added_parameter_prefixes):
                        p.copy_(torch.randn_like(p) * 0.3)
        module.train()
        module.log = lambda *a, **k: None  # no trainer attached
        torch.manual_seed(1)  # the same dropout draws in both runs
        loss = module.training_step(moving_square_batch(), 0)
        loss.backward()
        return loss.item(), {n: p.grad for n, p in module.named_parameters() if p.grad is not None}

    from sam2.modeling.backbones.hieradet import MultiScaleBlock

    probe = MoSAMModule(sam2=MICRO, activation_checkpointing=True)
    assert any(
        isinstance(m, MultiScaleBlock) and isinstance(m.forward, functools.partial)
        for m in probe.modules()
    )
    loss_plain, plain = grads(False)
    loss_ckpt, ckpt = grads(True)
    assert loss_ckpt == loss_plain
    assert plain.keys() == ckpt.keys() and len(plain) >= (5 if parts else 10)
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)


def test_trainable_prefixes_train_those_parameters_only():
    """`model.trainable`: the optimiser holds the named parameters only, a step moves
    them and nothing else, and the frozen image encoder runs without a graph."""
    torch.manual_seed(0)
    keep = ["sam2.sam_mask_decoder.", "sam2.obj_ptr_proj."]
    module = MoSAMModule(sam2=MICRO, prompts={"prob_mask": 1.0}, trainable=keep)
    module.train()
    module.log = lambda *a, **k: None
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    optimizer = module.optimizer_config(10)["optimizer"]
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    names = {n for n, p in module.model.named_parameters() if id(p) in in_optimizer}
    assert names and all(n.startswith(tuple(keep)) for n in names)
    assert not module.model.image_encoder_trains
    loss = module.training_step(moving_square_batch(), 0)
    loss.backward()
    optimizer.step()
    moved = {n for n, p in module.model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and moved <= names


def test_trainable_prefix_that_names_nothing_is_refused():
    with pytest.raises(ValueError, match=r"model.trainable=.*sam2.mask_decoder.*name no parameter"):
        MoSAMModule(sam2=MICRO, trainable=["sam2.mask_decoder."])
    with pytest.raises(ValueError, match="nothing would train"):
        MoSAMModule(sam2=MICRO, trainable=[])


def test_multimask_from_single_is_applied_with_the_initial_weights():
    """`model.sam2.multimask_from_single`: the fit's initial weights get the copies (and a
    module without the setting keeps its own tokens)."""
    sam2 = {**MICRO, "overrides": {"multimask_output_for_tracking": True}}
    for setting in (True, False):
        module = MoSAMModule(sam2={**sam2, "multimask_from_single": setting})
        module.load_initial_weights()
        tokens = module.model.sam2.sam_mask_decoder.mask_tokens.weight
        assert torch.equal(tokens[1], tokens[0]) is setting


def test_evaluating_an_official_file_applies_multimask_from_single_too(micro_weights):
    """`eval.py ckpt=<official .pt> +model.sam2.multimask_from_single=true` starts from the
    same weights a training run would (`load_module` goes through `load_initial_weights`),
    not silently from the three untrained tokens."""
    from mosam_train.tasks.inference_model import compose_eval, load_module

    overrides = [f"ckpt={micro_weights}", "sam2=micro"]
    copies = ["+model.sam2.overrides.multimask_output_for_tracking=true"]
    for extra, equal in (([], False), (["+model.sam2.multimask_from_single=true"], True)):
        module = load_module(compose_eval([*overrides, *copies, *extra]))
        tokens = module.model.sam2.sam_mask_decoder.mask_tokens.weight
        assert torch.equal(tokens[1], tokens[0]) is equal


def test_eval_sets_a_mosam_checkpoints_rules_and_refuses_them_elsewhere(
    micro_weights, mosam_checkpoint, tmp_path
):
    """`eval.py rules.*` reach the evaluated model (the method table's rows of reverted
    fixes); on SAM 2 weights they are refused."""
    from mosam_train.tasks.inference_model import compose_eval, inference_propagator

    ckpt = mosam_checkpoint(
        tmp_path / "mosam.ckpt",
        micro_weights,
        mgp={"sparse": True, "dense": False, "history": 3},
        stms={"stride": 2, "candidates": 6, "order": "recency", "min_confidence": 0.5},
    )
    rules = ["rules.slots=distance", "rules.keep_previous=false", "rules.hold_last_visible=false"]
    propagator, _ = inference_propagator(
        compose_eval([f"ckpt={ckpt}", "sam2=micro", *rules, "rules.visibility=none"])
    )
    model = propagator.model
    assert (model.stms.slots, model.stms.keep_previous, model.stms.order) == (
        "distance",
        False,
        "recency",  # null: as trained
    )
    assert model.mgp.sparse.hold_last_visible is False and model.mgp.visibility == "none"
    with pytest.raises(
        ValueError,
        match=r"rules=.*is not a MoSAM checkpoint, it has no parts, frame head or inference rules",
    ):
        inference_propagator(compose_eval([f"ckpt={micro_weights}", "sam2=micro", rules[0]]))


@pytest.mark.parametrize("pointers", ["kept", "window"])
def test_mosam_trains_with_frames_left_out_by_recency_and_their_pointers(pointers):
    """The oracle's settings as MoSAM's own selection (model.stms.order / min_confidence /
    pointers) on the training path: rows left out per object, pointers of the kept frames
    or SAM 2's less the left out, and the pixel filter still learns through the memory
    attention."""
    torch.manual_seed(0)
    stms = {"stride": 1, "candidates": 4, "top_k": 2, "order": "recency",
            "min_confidence": 0.5, "pointers": pointers}  # fmt: skip
    module = MoSAMModule(sam2=MICRO, prompts={"prob_mask": 1.0}, stms=stms, freeze_sam2=True)
    with torch.no_grad():  # a pixel filter that acts
        for name, p in module.model.named_parameters():
            if name.startswith("stms.pixel_head."):
                p.copy_(torch.randn_like(p) * 0.3)
    calls = iter(range(100))

    def rate(predicted_iou, object_score, agreement, maskmem):  # every other frame good
        return torch.full_like(object_score, 2.0 if next(calls) % 2 else -2.0)

    module.model.stms.frame_head.forward = rate
    module.train()
    module.log = lambda *a, **k: None  # no trainer attached
    left_out, pointers_left_out = [], []
    select = module.model.stms.select

    def spy(*args, **kwargs):
        memory = select(*args, **kwargs)
        if memory.valid is not None:
            left_out.append(int((~memory.valid).sum()))
        if memory.pointers is not None:
            pointers_left_out.append(int((~memory.pointers.valid).sum()))
        return memory

    module.model.stms.select = spy
    loss = module.training_step(moving_square_batch(t=8), 0)
    loss.backward()
    assert torch.isfinite(loss) and left_out and sum(left_out) > 0
    assert pointers_left_out and sum(pointers_left_out) > 0
    head = module.model.stms.pixel_head
    assert head.gate.grad is not None and head.gate.grad.abs() > 0
