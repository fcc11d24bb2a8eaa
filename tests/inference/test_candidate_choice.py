"""A rule chooses among SAM 2's three candidate masks on tracked frames (`TrackerRule.choose`):
the chosen candidate's mask, object pointer and memory are exactly what SAM 2's own
`track_step` gives when its IoU argmax lands on that candidate; no choice is SAM 2's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mosam_train.inference.engine import VideoPropagator
from mosam_train.inference.rules import TrackerRule
from mosam_train.lit.module import MoSAMModule
from mosam_train.models.mosam import MoSAMTracker
from mosam_train.models.video_sam import Candidates, VideoSAM, new_output_dict
from mosam_train.trackers import TRACKERS, register_tracker

MULTIMASK = {"multimask_output_for_tracking": True}


@pytest.fixture(scope="module")
def model(micro) -> VideoSAM:
    """The seed-0 micro weights, tracking with three candidate masks."""
    return VideoSAM(micro(multimask=True))


class Fixed(TrackerRule):
    """Test rule: object k takes candidate `picks[k]` (None: SAM 2's choice); remembers the
    chosen predicted IoU and the candidates' IoUs it saw in `choose` (via bank.state)."""

    needs_candidates = True

    def __init__(self, picks: list[int] | None = None, echo: bool = False) -> None:
        self.picks, self.echo = picks, echo
        self.calls: list[tuple[int, tuple[int, ...]]] = []

    def choose(self, bank, frame_idx, candidates):
        self.calls.append((frame_idx, tuple(candidates.high_res_masks.shape)))
        bank.state["seen_ious"] = candidates.ious
        if self.echo:
            return candidates.sam2_choice
        if self.picks is None:
            return None
        return torch.tensor(self.picks[: candidates.ious.shape[0]])

    def remember(self, bank, frame_idx, entry, out, *, prompted, flow=None):
        if not prompted:
            chosen = Candidates.take(out["candidates"].ious, out["choice"])
            entry = {**entry, "best_iou": chosen, "seen_ious": bank.state["seen_ious"]}
        super().remember(bank, frame_idx, entry, out, prompted=prompted, flow=flow)


def prompt_masks(n: int, size: int = 128) -> torch.Tensor:
    m = torch.zeros(n, 1, size, size)
    m[0, :, 30:90, 20:70] = 1
    m[1:, :, 10:50, 60:120] = 1
    return m


class SteerArgmax:
    """SAM 2's own path choosing `choice` [N]: while active, the mask decoder reports a
    one-hot IoU on the chosen candidate, so `SAM2Base._forward_sam_heads` takes that mask
    and derives the object pointer from that output token itself."""

    def __init__(self, sam2, choice: torch.Tensor) -> None:
        self.sam2, self.choice = sam2, choice

    def __enter__(self) -> SteerArgmax:
        def hook(module, args, output):
            masks, ious, tokens, scores = output
            return (
                masks,
                torch.nn.functional.one_hot(self.choice, ious.shape[1]).float(),
                tokens,
                scores,
            )

        self.handle = self.sam2.sam_mask_decoder.register_forward_hook(hook)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


@pytest.mark.parametrize("picks", [[0, 0], [1, 1], [2, 2], [0, 2]], ids=str)
def test_the_chosen_candidate_is_sam2s_own_output_for_it(model, noise_frames, picks):
    sam2 = model.sam2
    frames = noise_frames(2)
    n, t = 2, 2
    out0_dict = new_output_dict()
    with torch.inference_mode():
        feats = [model.encode_images(frames.image(i)[None]).expand(n) for i in range(t)]
        out0 = model.track(
            0,
            feats[0],
            out0_dict,
            t,
            is_init_cond_frame=True,
            mask_inputs=prompt_masks(n),
            memory_from_low_res=True,
        )
        out0_dict["cond_frame_outputs"][0] = model.memory_entry(out0, torch.float32)
        choice = torch.tensor(picks)
        ours = model.track(1, feats[1], out0_dict, t, choose=lambda c: choice)
        with SteerArgmax(sam2, choice):
            theirs = sam2.track_step(
                1,
                False,
                feats[1].vision_feats,
                feats[1].vision_pos,
                feats[1].feat_sizes,
                None,
                None,
                out0_dict,
                t,
            )
        # every candidate's pointer is SAM 2's for that candidate
        for j in range(3):
            with SteerArgmax(sam2, torch.full((n,), j)):
                ptr_j = sam2.track_step(
                    1,
                    False,
                    feats[1].vision_feats,
                    feats[1].vision_pos,
                    feats[1].feat_sizes,
                    None,
                    None,
                    out0_dict,
                    t,
                    run_mem_encoder=False,
                )["obj_ptr"]
            torch.testing.assert_close(ours["candidates"].obj_ptrs[:, j], ptr_j, rtol=0, atol=1e-6)

    cands = ours["candidates"]
    assert cands.high_res_masks.shape == (n, 3, 128, 128) and cands.obj_ptrs.shape[:2] == (n, 3)
    # the candidates differ (the choice matters) and SAM 2 itself would pick otherwise somewhere
    assert not torch.equal(cands.low_res_masks[:, 0], cands.low_res_masks[:, 2])
    assert not torch.allclose(cands.obj_ptrs[:, 0], cands.obj_ptrs[:, 2])
    assert torch.equal(ours["choice"], choice)
    assert torch.equal(ours["pred_masks"], theirs["pred_masks"])
    assert torch.equal(ours["pred_masks_high_res"], theirs["pred_masks_high_res"])
    assert torch.equal(ours["pred_masks"][:, 0], Candidates.take(cands.low_res_masks, choice))
    torch.testing.assert_close(ours["obj_ptr"], theirs["obj_ptr"], rtol=0, atol=1e-6)
    # the memory encoder encoded the chosen candidate's mask
    assert torch.equal(ours["maskmem_features"], theirs["maskmem_features"])
    # the candidate set itself is SAM 2's (all three masks, IoUs, object score)
    assert torch.equal(ours["ious"], cands.ious) and torch.equal(
        ours["multimasks_high_res"], cands.high_res_masks
    )


def video_prompts() -> dict[int, dict[int, np.ndarray]]:
    """Objects 1, 2 from frame 0, object 3 from frame 4 (two groups) on a 64x80 video."""
    mask = np.zeros((64, 80), bool)
    mask[10:30, 20:50] = True
    return {0: {1: mask, 2: ~mask}, 4: {3: mask}}


def run(engine: VideoPropagator, frames) -> dict[int, torch.Tensor]:
    return {r.frame_idx: r.logits for r in engine.propagate(frames, video_prompts())}


def test_no_choice_is_sam2s_choice_exactly(model, noise_frames):
    frames = noise_frames(8)
    sam2 = run(VideoPropagator(model), frames)
    rule = Fixed(None)
    keeps_sam2s = run(VideoPropagator(model, rule), frames)
    echoes_sam2s = run(VideoPropagator(model, Fixed(echo=True)), frames)
    for t in sam2:
        assert torch.equal(keeps_sam2s[t], sam2[t]), t
        assert torch.equal(echoes_sam2s[t], sam2[t]), t
    # choose runs on tracked frames only, once per group, on all objects of the group at once
    expected = []
    for t in range(1, 8):
        expected.append((t, (2, 3, 128, 128)))  # objects 1 and 2, prompted on frame 0
        if t > 4:
            expected.append((t, (1, 3, 128, 128)))  # object 3, prompted on frame 4
    assert rule.calls == expected


def test_a_rule_choice_changes_the_output_and_reaches_remember(model, noise_frames):
    frames = noise_frames(8)
    sam2 = run(VideoPropagator(model), frames)
    engine = VideoPropagator(model, Fixed([2, 2]))
    picked = run(engine, frames)
    assert any(not torch.equal(picked[t], sam2[t]) for t in sam2)
    for g in engine.groups:
        assert g.bank.non_cond  # what remember stored: the chosen IoU, choose's scores
        for entry in g.bank.non_cond.values():
            if "maskmem_features" not in entry:  # past the window: pointer only
                continue
            assert torch.equal(entry["best_iou"], entry["seen_ious"][:, 2])


def test_a_rule_that_needs_candidates_is_refused_on_a_one_mask_model(micro):
    one_mask = VideoSAM(micro())
    assert one_mask.tracking_candidates == 1
    with pytest.raises(
        ValueError,
        match=r"Fixed chooses .*model\.sam2\.overrides\.multimask_output_for_tracking=true",
    ):
        VideoPropagator(one_mask, Fixed([2, 2]))
    # the same rule with its choice off runs there, as SAM 2
    off = Fixed([2, 2])
    off.needs_candidates = False
    VideoPropagator(one_mask, off)


def test_a_choice_of_the_wrong_shape_is_refused(model, noise_frames):
    with pytest.raises(ValueError, match=r"long tensor \[2\]"):
        run(VideoPropagator(model, Fixed([2])), noise_frames(3))


def test_training_with_such_a_rule_on_a_one_mask_model_stops_before_it_trains(monkeypatch):
    monkeypatch.setattr(TRACKERS, "registered", {})
    register_tracker("test_fixed_choice", Fixed)
    tracker = {"name": "test_fixed_choice", "picks": [2, 2]}
    micro = {"variant": "sam2.1_micro", "image_size": 128}
    with pytest.raises(ValueError, match="multimask_output_for_tracking"):
        MoSAMModule(sam2={**micro, "overrides": {}}, tracker=tracker).setup("fit")
    MoSAMModule(sam2={**micro, "overrides": MULTIMASK}, tracker=tracker).setup("fit")


def test_mosams_frame_head_reads_the_chosen_candidates_iou(micro, noise_frames):
    mosam = MoSAMTracker(micro(multimask=True), stms={"frame": True, "pixel": False}).eval()
    seen = []
    mosam.stms.frame_head.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    engine = VideoPropagator(mosam, Fixed([2, 2]))
    run(engine, noise_frames(6))
    entries = [e for e in engine.groups[0].bank.non_cond.values() if "best_iou" in e]
    assert entries
    for e in entries:  # the frame head saw the chosen IoU, not SAM 2's highest
        assert any(torch.equal(e["best_iou"], iou) for iou in seen)
    assert any(not torch.equal(e["best_iou"], e["seen_ious"].amax(1)) for e in entries)
