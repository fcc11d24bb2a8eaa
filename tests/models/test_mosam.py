"""MoSAM on SAM 2: exact when off or fresh, and every part changes what it should when set."""

import numpy as np
import pytest
import torch

from mosam_train.data.formats.davis import read_davis
from mosam_train.inference.engine import VideoPropagator
from mosam_train.inference.sources import RecordFrames
from mosam_train.inference.vos import first_appearance_prompts
from mosam_train.models.memory.attention import key_bias
from mosam_train.models.memory.selection import MemorySelection
from mosam_train.models.mosam import MoSAMTracker
from mosam_train.models.motion.sparse import mask_keypoints
from mosam_train.models.sam2_builder import build_sam2
from mosam_train.models.video_sam import VideoSAM, new_output_dict
from mosam_train.trackers import build_tracker

PREDICTOR = "sam2.sam2_video_predictor.SAM2VideoPredictor"
ALL_ON = {"sparse": True, "dense": True}
SAM2_WINDOW = {"stride": 1, "candidates": 6, "top_k": 6, "frame": True, "pixel": True}


@pytest.fixture(scope="module")
def record(small_synthetic):
    records = read_davis(small_synthetic, "val")
    return max(records, key=lambda r: len(r.object_ids))


def run_engine(model, record) -> dict[int, torch.Tensor]:
    engine = VideoPropagator(model.eval())
    prompts = first_appearance_prompts(record)
    return {r.frame_idx: r.logits for r in engine.propagate(RecordFrames(record, 128), prompts)}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[t] - b[t]).abs().max().item() for t in a)


@pytest.fixture(scope="module")
def reference_logits(micro, record):
    """SAM2VideoPredictor's logits and the foundation engine's, same weights."""
    sam = micro()
    predictor = build_sam2("sam2.1_micro", target=PREDICTOR).eval()
    predictor.load_state_dict(sam.state_dict())
    state = predictor.init_state(str(record.frame_path(0).parent))
    for oid, mask in first_appearance_prompts(record)[0].items():
        predictor.add_new_mask(state, 0, oid, mask)
    expected = {t: lg[:, 0].clone() for t, _, lg in predictor.propagate_in_video(state)}
    engine = run_engine(VideoSAM(sam), record)
    assert max_diff(engine, expected) <= 1e-3
    return expected, engine


def test_all_parts_off_is_sam2(micro, record, reference_logits):
    expected, engine = reference_logits
    logits = run_engine(MoSAMTracker(micro()), record)
    assert max_diff(logits, engine) == 0.0
    assert max_diff(logits, expected) <= 1e-3


def test_fresh_mosam_as_sam2_window_passes_through(micro, record, reference_logits):
    expected, engine = reference_logits
    model = MoSAMTracker(micro(), mgp=ALL_ON, stms=SAM2_WINDOW)
    logits = run_engine(model, record)
    non_empty = sum(int((v > 0).flatten(1).any(1).sum()) for v in logits.values())
    assert non_empty > 0.8 * sum(v.shape[0] for v in logits.values())
    diff = max_diff(logits, engine)
    print(
        f"fresh MoSAM vs foundation engine: {diff:.2e}; vs SAM2VideoPredictor: "
        f"{max_diff(logits, expected):.2e}"
    )
    assert diff <= 1e-4
    assert max_diff(logits, expected) <= 1e-3


def test_top_k_above_memory_slots_is_refused(micro):
    with pytest.raises(ValueError, match=r"top_k=7.*6 memory slots"):
        MoSAMTracker(micro(), stms={"top_k": 7, "candidates": 8})


def _entries(scores: list[list[float]]) -> dict[int, dict]:
    """Fake memory entries for frames 9, 8, ... with per-object frame scores."""
    return {
        9 - i: {
            "maskmem_features": torch.full((len(s), 16, 8, 8), float(9 - i)),
            "frame_score": torch.tensor(s),
        }
        for i, s in enumerate(scores)
    }


def _kept(memory, obj: int) -> list[int]:
    """The frames object `obj` keeps (the fake entries hold their frame index)."""
    frame = lambda e: int(e["maskmem_features"][0, 0, 0, 0])  # noqa: E731
    if memory.index is None:
        return [frame(e) for e in memory.entries]
    return [frame(memory.entries[i]) for i in memory.index[:, obj]]


def test_selection_follows_confidence_and_defaults_to_recency():
    sel = MemorySelection(
        num_maskmem=7, mem_dim=16, stride=1, candidates=8, top_k=3, pixel=False,
        keep_previous=False,
    )  # fmt: skip
    # equal scores: the three most recent frames
    assert _kept(sel.select(10, _entries([[0.0, 0.0]] * 8)), 0) == [9, 8, 7]
    # object 0 trusts frames 8, 5, 2; object 1 frames 9, 3, 2
    scores = [[0, 5], [5, 0], [0, 0], [0, 0], [5, 0], [0, 0], [0, 5], [5, 5]]
    memory = sel.select(10, _entries(scores))
    assert _kept(memory, 0) == [8, 5, 2]
    assert _kept(memory, 1) == [9, 3, 2]


def test_frame_t_minus_1_is_always_kept_when_the_stride_skips_it():
    # stride 2: without t-1 the candidates are 8, 6, 4, ...; it is rated worst here
    scores = [[-9.0], [5.0], [0.0], [5.0], [0.0], [5.0], [0.0], [5.0], [0.0]]  # frames 9..1
    pool = _entries(scores)
    sel = MemorySelection(num_maskmem=7, mem_dim=16, stride=2, candidates=4, top_k=2, pixel=False)
    assert sel.candidates(10) == [9, 8, 6, 4, 2]
    assert _kept(sel.select(10, pool), 0) == [9, 8]
    # the ablation (model.stms.keep_previous=false): t-1 is not even a candidate
    old = MemorySelection(
        num_maskmem=7, mem_dim=16, stride=2, candidates=4, top_k=2, pixel=False,
        keep_previous=False,
    )  # fmt: skip
    assert old.candidates(10) == [8, 6, 4, 2]
    assert _kept(old.select(10, pool), 0) == [8, 6]


def test_frames_rated_below_the_threshold_are_left_out_and_recency_orders_the_rest():
    # frames 9..2; logits: object 0 rates 9 bad, 8 and 7 good, 6 bad, 5..2 good (5 best);
    # object 1 rates only 3 and 2 good
    scores = [[-3.0, -3.0], [1.0, -3.0], [1.0, -3.0], [-3.0, -3.0], [4.0, -3.0], [1.0, -3.0]]
    scores += [[1.0, 2.0], [1.0, 2.0]]
    pool = _entries(scores)
    kw = {"num_maskmem": 7, "mem_dim": 16, "stride": 1, "candidates": 8, "top_k": 3, "pixel": False}
    # by score (Rate & Rank) with the threshold: t-1 forced in and left out, then the best
    by_score = MemorySelection(**kw, min_confidence=0.5).select(10, pool)
    assert _kept(by_score, 0) == [9, 8, 5]
    assert by_score.valid[:, 0].tolist() == [False, True, True]
    # by recency among the good ones: 8 and 7, not the better but older 5
    recent = MemorySelection(**kw, order="recency", min_confidence=0.5).select(10, pool)
    assert _kept(recent, 0) == [9, 8, 7] and recent.valid[:, 0].tolist() == [False, True, True]
    assert _kept(recent, 1) == [9, 3, 2] and recent.valid[:, 1].tolist() == [False, True, True]
    assert recent.pointers is None  # SAM 2's pointer window unless asked
    kept = MemorySelection(**kw, order="recency", min_confidence=0.5, pointers="kept")
    memory = kept.select(10, pool)
    assert memory.pointers.distance.T.tolist() == [[1, 2, 3], [1, 7, 8]]
    assert torch.equal(memory.pointers.valid, memory.valid)
    # fewer candidates than top_k: still thresholded
    few = MemorySelection(**kw, min_confidence=0.5).select(10, _entries(scores[:2]))
    assert few.valid[:, 0].tolist() == [False, True]
    # the defaults are Rate & Rank as it was: no rows left out, SAM 2's pointers
    plain = MemorySelection(**kw).select(10, pool)
    assert plain.valid is None and plain.pointers is None


def test_selection_settings_that_cannot_work_are_refused():
    kw = {"num_maskmem": 7, "mem_dim": 16}
    with pytest.raises(ValueError, match=r"model\.stms\.order='newest'"):
        MemorySelection(**kw, order="newest")
    with pytest.raises(ValueError, match=r"model\.stms\.pointers='all'"):
        MemorySelection(**kw, pointers="all")
    with pytest.raises(ValueError, match=r"min_confidence=1\.5.*between 0 and 1"):
        MemorySelection(**kw, min_confidence=1.5)
    with pytest.raises(ValueError, match=r"model\.stms\.frame=false.*Fix"):
        MemorySelection(**kw, frame=False, min_confidence=0.5)
    with pytest.raises(ValueError, match=r"order=recency.*needs the threshold.*Fix"):
        MemorySelection(**kw, order="recency")


def test_mosam_tracks_with_frames_left_out_and_the_kept_frames_pointers(micro, record):
    # a fresh frame head rates every frame 0.5: at 0.6 every past frame is left out with its
    # pointer, so MoSAM tracks from the prompted frame alone, as the oracle's cond_only test
    stms = {"stride": 1, "candidates": 6, "top_k": 6, "pixel": False}
    strict = MoSAMTracker(
        micro(), stms={**stms, "order": "recency", "min_confidence": 0.6, "pointers": "kept"}
    ).eval()
    lenient = MoSAMTracker(
        micro(), stms={**stms, "order": "recency", "min_confidence": 0.4, "pointers": "kept"}
    ).eval()
    plain = MoSAMTracker(micro(), stms=stms).eval()
    prompts = first_appearance_prompts(record)

    def logits(model):
        return [
            r.logits for r in VideoPropagator(model).propagate(RecordFrames(record, 128), prompts)
        ]

    cond_only = VideoPropagator(VideoSAM(micro()), build_tracker({"name": "cond_only"}))
    alone = [r.logits for r in cond_only.propagate(RecordFrames(record, 128), prompts)]
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(logits(strict), alone, strict=True))
    # every frame good enough: the same frames as SAM 2's window, read through the explicit
    # per-object assembly (pointers of the six kept frames instead of fifteen)
    found = logits(lenient)
    sam2_window = logits(plain)
    assert any(not torch.equal(a, b) for a, b in zip(found, sam2_window, strict=True))
    # pointers=window: SAM 2's fifteen pointers less the frames left out; every frame good
    # enough leaves them as SAM 2 reads them, every frame wrong leaves none
    window = {**stms, "order": "recency", "pointers": "window"}
    lenient = MoSAMTracker(micro(), stms={**window, "min_confidence": 0.4}).eval()
    strict = MoSAMTracker(micro(), stms={**window, "min_confidence": 0.6}).eval()
    assert all(
        torch.allclose(a, b, atol=1e-5) for a, b in zip(logits(lenient), sam2_window, strict=True)
    )
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(logits(strict), alone, strict=True))
    with pytest.raises(ValueError, match=r"model\.stms\.pointers=window.*min_confidence"):
        MoSAMTracker(micro(), stms={**stms, "pointers": "window"})


def test_kept_frames_take_slots_by_rank_or_by_true_distance():
    pool = _entries([[0.0]] * 9)  # frames 9..1, all rated alike: the most recent are kept
    rank = MemorySelection(num_maskmem=7, mem_dim=16, stride=4, candidates=3, top_k=3, frame=False)
    assert _kept(rank.select(10, pool), 0) == [9, 6, 2] and rank.select(10, pool).slots is None
    distance = MemorySelection(
        num_maskmem=7, mem_dim=16, stride=4, candidates=3, top_k=3, frame=False,
        slots="distance",
    )  # fmt: skip
    assert distance.select(10, pool).slots.tolist() == [1, 4, 8]
    with pytest.raises(ValueError, match=r"model\.stms\.slots"):
        MemorySelection(num_maskmem=7, mem_dim=16, slots="time")


def test_strided_candidates_and_clip_step():
    sel = MemorySelection(num_maskmem=7, mem_dim=16, stride=4, candidates=3, top_k=2)
    assert sel.candidates(20) == [19, 16, 12, 8]
    # clips whose steps are 4 engine frames apart (SA-V annotations) use every clip step
    assert sel.candidates(20, frame_step=4) == [19, 18, 17]
    assert sel.candidates(5) == [4, 1]


def test_selected_memory_differs_from_sam2_last_six_when_confidences_differ(micro, record):
    sam = micro()
    model = MoSAMTracker(
        sam, stms={"stride": 1, "candidates": 12, "top_k": 6, "frame": True, "pixel": False}
    ).eval()
    head = model.stms.frame_head.mlp[-1]
    with torch.no_grad():  # rate frames by their object-score logit, strongly
        head.weight.normal_(0, 1.0)
        head.bias.zero_()
    engine = VideoPropagator(model)
    seen = []
    original = model._selected_memory

    def spy(frame_idx, output_dict, frame_step):
        pool = output_dict["non_cond_frame_outputs"]
        memory = model.stms.select(frame_idx, pool, frame_step)
        entries, index = memory.entries, memory.index
        if index is not None:
            ts = {id(e): t for t, e in pool.items()}
            seen.append((frame_idx, sorted(ts[id(entries[i])] for i in index[:, 0].tolist())))
        return original(frame_idx, output_dict, frame_step)

    model._selected_memory = spy
    prompts = first_appearance_prompts(record)
    for _ in engine.propagate(RecordFrames(record, 128), prompts):
        pass
    assert seen, "no frame had more candidates than top_k"
    last_six = [(t, list(range(t - 6, t))) for t, _ in seen]
    assert any(kept != sam2 for (_, kept), (_, sam2) in zip(seen, last_six, strict=True))


def test_pixel_map_changes_memory_attention_output(micro):
    sam = micro()
    model = MoSAMTracker(sam, stms={"stride": 1, "candidates": 6, "top_k": 6}).eval()
    n, hw, c = 2, 64, sam.hidden_dim
    curr = [torch.randn(hw, n, c)]
    pos = [torch.randn(hw, n, c)]
    memory = torch.randn(3 * hw, n, sam.mem_dim)
    memory_pos = torch.randn(3 * hw, n, sam.mem_dim)
    base = sam.memory_attention(curr=curr, curr_pos=pos, memory=memory, memory_pos=memory_pos)
    head = model.stms.pixel_head
    z = torch.randn(n, 1, 8, 8) * 3
    assert torch.equal(head.bias(z), torch.zeros_like(z))  # the fresh map passes everything
    with torch.no_grad():
        head.gate.fill_(1.0)
    bias = torch.cat([head.bias(z).flatten(1)] * 3, 1)
    with key_bias(sam.memory_attention, bias):
        filtered = sam.memory_attention(
            curr=curr, curr_pos=pos, memory=memory, memory_pos=memory_pos
        )
    assert (filtered - base).abs().max() > 1e-3
    # the bias is cleared afterwards
    again = sam.memory_attention(curr=curr, curr_pos=pos, memory=memory, memory_pos=memory_pos)
    assert torch.equal(again, base)


def _square(s: int, x0: int, y0: int, w: int = 30) -> np.ndarray:
    m = np.zeros((s, s), bool)
    m[y0 : y0 + w, x0 : x0 + w] = True
    return m


def assert_moved_towards(moved: torch.Tensor, still: torch.Tensor, new_x: int, old_x: int):
    """The logits gained where the object is forecast (columns new_x.., rows 50..80), far
    more than where it was (old_x..new_x), and the gain is centred on the forecast."""
    gain = moved - still
    at_new = gain[50:80, new_x : new_x + 30].mean()
    at_old = gain[50:80, old_x:new_x].mean()
    assert at_new > 0 and at_new > 3 * at_old.abs(), (at_new, at_old)
    g = gain.clamp(min=0)
    xs = torch.arange(g.shape[-1], dtype=torch.float32)
    centre = float((g.sum(0) * xs).sum() / g.sum())
    assert new_x <= centre <= new_x + 30, centre


def _dense_towards_logits(model: MoSAMTracker, strength: float = 4.0) -> None:
    """Dense encoder weights that write `prior x v` into SAM 2's dense prompt, where v is
    the dense-embedding direction that raises the mask logits."""
    sam = model.sam2
    d = sam.sam_prompt_embed_dim
    e = sam.sam_image_embedding_size
    feats = torch.randn(1, d, e, e)
    offset = torch.zeros(1, d, 1, 1, requires_grad=True)
    sparse, dense = sam.sam_prompt_encoder(
        points=(torch.zeros(1, 1, 2), -torch.ones(1, 1)), boxes=None, masks=None
    )
    low, *_ = sam.sam_mask_decoder(
        feats,
        sam.sam_prompt_encoder.get_dense_pe(),
        sparse,
        dense + offset,
        False,
        False,
        high_res_features=[
            torch.zeros(1, d // 8, 4 * e, 4 * e),
            torch.zeros(1, d // 4, 2 * e, 2 * e),
        ],
    )
    low.mean().backward()
    v = offset.grad.flatten() / offset.grad.norm()
    net = model.mgp.dense.net
    with torch.no_grad():
        for conv in (net[0], net[2], net[4]):
            conv.weight.zero_()
            conv.bias.zero_()
        net[0].weight[0, 0] = 1 / 9  # channel 0: local mean of the warped prior
        net[2].weight[0, 0] = 1 / 9
        net[4].weight[:, 0, 0, 0] = strength * 8 * v


def test_flow_forecast_moves_the_prediction_towards_it(micro):
    """Frame 1 shows the object 24 px right of frame 0; a flow that says so pulls the
    prediction right, compared with the same model without motion."""
    s = 128
    frames = torch.randn(2, 3, s, s) * 0.2
    model = MoSAMTracker(micro(), mgp={"sparse": False, "dense": True}).eval()
    _dense_towards_logits(model)
    plain = VideoSAM(model.sam2)

    def second_frame_logits(tracker, flow):
        with torch.no_grad():
            out_dict = new_output_dict()
            f0 = tracker.encode_images(frames[:1])
            mask = torch.from_numpy(_square(s, 20, 50))[None, None].float()
            out_dict["cond_frame_outputs"][0] = tracker.track(
                0, f0, out_dict, 2, is_init_cond_frame=True, mask_inputs=mask
            )
            f1 = tracker.encode_images(frames[1:])
            return tracker.track(1, f1, out_dict, 2, flow=flow)["pred_masks_high_res"][0, 0]

    flow = torch.zeros(1, 2, s, s)
    flow[:, 0] = -24.0  # current -> previous: content at x came from x - 24
    moved = second_frame_logits(model, flow)
    still = second_frame_logits(plain, None)
    assert_moved_towards(moved, still, new_x=44, old_x=20)


def test_parts_switch_off_in_a_trained_model(micro, record):
    """eval's parts_off: without MGP's prompts a model whose MGP pushes tracks as the same
    model with MGP's output layers at zero (its forecast still feeds the frame head); a
    part the model lacks is refused, naming those it has."""
    stms = {**SAM2_WINDOW, "order": "recency", "min_confidence": 0.4, "pixel": False}
    model = MoSAMTracker(micro(), mgp=ALL_ON, stms=stms)
    torch.manual_seed(0)
    with torch.no_grad():  # MGP that pushes
        for layer in (model.mgp.sparse.to_tokens[-1], model.mgp.dense.net[-1]):
            layer.weight.normal_(0, 0.5)
    silent = MoSAMTracker(micro(), mgp=ALL_ON, stms=stms)
    silent.load_state_dict(model.state_dict())
    with torch.no_grad():
        for layer in (silent.mgp.sparse.to_tokens[-1], silent.mgp.dense.net[-1]):
            layer.weight.zero_()
    pushed, quiet = run_engine(model, record), run_engine(silent, record)
    model.switch_off("mgp_prompts")
    assert max_diff(run_engine(model, record), quiet) == 0.0
    assert max_diff(pushed, quiet) > 1e-3
    model.switch_off("dense")
    assert model.mgp.dense is None and model.needs_flow is False
    with pytest.raises(ValueError, match="sparse is MGP's last branch"):
        model.switch_off("sparse")
    with pytest.raises(ValueError, match=r"'pixel' is not a part.*mgp, mgp_prompts, sparse"):
        model.switch_off("pixel")
    model.leave_out_below(0.6)  # eval's min_confidence: a threshold chosen on val
    assert model.stms.min_confidence == 0.6
    with pytest.raises(ValueError, match=r"min_confidence=1.5: a probability"):
        model.leave_out_below(1.5)
    model.switch_off("threshold")
    assert model.stms.min_confidence == 0.0
    with pytest.raises(ValueError, match=r"leaves no frame out.*trained without a threshold"):
        no_threshold = {**stms, "order": "score", "min_confidence": None}
        MoSAMTracker(micro(), mgp=ALL_ON, stms=no_threshold).leave_out_below(0.5)
    model.switch_off("mgp")
    assert model.mgp is None and model.flow_provider is None


def test_rules_set_in_a_trained_model_track_as_a_model_built_with_them(micro, record):
    """eval's rules: each fix reverted in the trained weights (slots by true distance, t-1
    not always kept, top-k by score, sparse MGP from an empty mask's zeros) and the
    visibility gate off track exactly as a model built with that setting; a rule set that
    cannot run is refused as a new model's would be."""
    stms = {"stride": 2, "candidates": 6, "order": "recency", "min_confidence": 0.4}
    mgp = {**ALL_ON, "visibility": "learned"}
    torch.manual_seed(0)
    trained = MoSAMTracker(micro(), mgp=mgp, stms=stms)
    with torch.no_grad():  # MGP that pushes, a gate that reads it, a frame head that rates
        for layer in (
            trained.mgp.sparse.to_tokens[-1],
            trained.mgp.sparse.correction[-1],
            trained.mgp.visibility_head[-1],
            trained.stms.frame_head.mlp[-1],
        ):
            layer.weight.normal_(0, 0.5)
    weights = trained.state_dict()
    base, changed = run_engine(trained, record), []
    for rules, built in (
        ({"slots": "distance"}, {"stms": {**stms, "slots": "distance"}}),
        ({"keep_previous": False}, {"stms": {**stms, "keep_previous": False}}),
        ({"order": "score"}, {"stms": {**stms, "order": "score"}}),
        ({"hold_last_visible": False}, {"mgp": {**mgp, "hold_last_visible": False}}),
    ):
        model = MoSAMTracker(micro(), mgp=mgp, stms=stms)
        model.load_state_dict(weights)
        model.set_rules({**rules, "pointers": None})  # null keeps the trained rule
        reference = MoSAMTracker(micro(), **{"mgp": mgp, "stms": stms, **built})
        reference.load_state_dict(weights)
        logits = run_engine(model, record)
        assert max_diff(logits, run_engine(reference, record)) == 0.0, rules
        changed += list(rules) if max_diff(logits, base) > 1e-3 else []
    assert {"keep_previous", "order"} <= set(changed)  # the rules do act here
    ungated = MoSAMTracker(micro(), mgp={**mgp, "visibility": "none"}, stms=stms)
    ungated.load_state_dict(weights, strict=False)
    model = MoSAMTracker(micro(), mgp=mgp, stms=stms)
    model.load_state_dict(weights)
    model.set_rules({"visibility": "none"})
    assert max_diff(run_engine(model, record), run_engine(ungated, record)) == 0.0
    with pytest.raises(ValueError, match=r"visibility=learned: not a gate.*object_score, none"):
        model.set_rules({"visibility": "learned"})  # its head is gone
    with pytest.raises(ValueError, match=r"model\.stms\.slots=.time.: unknown"):
        model.set_rules({"slots": "time"})
    model.switch_off("threshold")  # min_confidence 0: pointers=window still has a threshold
    model.set_rules({"pointers": "window"})
    with pytest.raises(ValueError, match="rules: stride unknown"):
        model.set_rules({"stride": 4})
    plain = MoSAMTracker(micro(), mgp={"sparse": False, "dense": True})
    with pytest.raises(ValueError, match=r"trained without\. Fix: leave them null"):
        plain.set_rules({"slots": "distance"})
    with pytest.raises(ValueError, match=r"rules\.hold_last_visible sets sparse MGP"):
        plain.set_rules({"hold_last_visible": False})


def test_the_oracle_rules_read_the_ground_truth_from_the_engine(micro, record):
    """rules.visibility=truth: the engine hands the model each tracked frame's ground truth,
    whose presence (its rows in order) becomes MGP's gate; rules.motion=truth: MGP's
    trajectory and warped mask are the ground truth's of past frames, not the predictions'.
    A video without ground truth is refused before the first frame."""
    model = MoSAMTracker(micro(), mgp={**ALL_ON, "visibility": "learned"})
    assert not model.needs_ground_truth
    model.set_rules({"visibility": "truth"})
    assert model.needs_ground_truth
    seen = []
    forward = model.mgp.forward

    def spy(traj, present, prev_logits, flow, encoder, scores, presence):
        seen.append((traj[:, -1].clone(), (prev_logits > 0).clone(), presence.tolist()))
        return forward(traj, present, prev_logits, flow, encoder, scores, presence)

    model.mgp.forward = spy
    run_engine(model, record)
    frames = RecordFrames(record, 128)
    assert set(first_appearance_prompts(record)) == {0}  # one group: a gate per frame
    ids = list(record.object_ids)
    truth = [frames.ground_truth(t, ids) for t in range(record.num_frames)]
    assert [p for *_, p in seen] == [m.any((1, 2)).tolist() for m in truth[1:]]
    assert any(not all(p) for *_, p in seen)  # the record hides one
    by_predictions = seen[:]
    seen.clear()
    model.set_rules({"motion": "truth"})
    run_engine(model, record)
    for t in range(2, record.num_frames):  # frame t reads frame t - 1's masks
        low = torch.nn.functional.interpolate(
            torch.from_numpy(truth[t - 1])[:, None].float(), size=(32, 32), mode="area"
        )
        keypoints, _ = mask_keypoints(torch.where(low >= 0.5, 10.0, -10.0))
        assert torch.equal(seen[t - 1][0], keypoints)
        assert torch.equal(seen[t - 1][1].any((1, 2, 3)), (low >= 0.5).any((1, 2, 3)))
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(seen, by_predictions, strict=True))
    with pytest.raises(ValueError, match=r"reads the ground truth.*has none"):
        engine = VideoPropagator(model.eval())
        frames.has_ground_truth = False
        next(iter(engine.propagate(frames, first_appearance_prompts(record))))
    with pytest.raises(ValueError, match=r"rules\.motion=flow: unknown"):
        model.set_rules({"motion": "flow"})


def test_the_trusted_motion_oracle_switches_mgp_off_after_a_wrong_prediction(
    micro, record, monkeypatch
):
    """rules.motion=trusted: MGP reads the predictions, and pushes nothing for an object
    whose previous prediction has a true IoU below 0.5 (against that frame's ground truth,
    at the predictions' size); with every prediction trusted it tracks exactly as
    rules.motion=predictions."""
    torch.manual_seed(0)
    model = MoSAMTracker(micro(), mgp={**ALL_ON, "visibility": "none"})
    with torch.no_grad():  # MGP that pushes
        for layer in (model.mgp.sparse.to_tokens[-1], model.mgp.sparse.correction[-1]):
            layer.weight.normal_(0, 0.5)
    by_predictions = run_engine(model, record)
    model.set_rules({"motion": "trusted"})
    assert model.needs_ground_truth
    frames = RecordFrames(record, 128)
    ids = list(record.object_ids)
    motion_prompt, seen = model._motion_prompt, []

    def spy(frame_idx, output_dict, flow):
        out = output_dict
        prev = out["non_cond_frame_outputs"].get(frame_idx - 1)
        prev = prev or out["cond_frame_outputs"][frame_idx - 1]
        model.motion_source = "predictions"
        pushed = motion_prompt(frame_idx, output_dict, flow)
        model.motion_source = "trusted"
        gated = motion_prompt(frame_idx, output_dict, flow)
        if frame_idx - 1 in out["cond_frame_outputs"]:  # the prompt: trusted, not rated
            assert "motion_trusted" not in prev
            seen.append((torch.ones(len(ids), dtype=torch.bool), pushed, gated))
            return gated
        truth = torch.from_numpy(frames.ground_truth(frame_idx - 1, ids))[:, None].float()
        true = torch.nn.functional.interpolate(truth, size=(32, 32), mode="area") >= 0.5
        pred = prev["pred_masks"] > 0
        inter, union = (pred & true).sum((1, 2, 3)), (pred | true).sum((1, 2, 3))
        iou = torch.where(union > 0, inter / union.clamp(min=1), 1.0)
        assert torch.equal(prev["motion_trusted"], iou >= 0.5)
        seen.append((prev["motion_trusted"], pushed, gated))
        return gated

    model._motion_prompt = spy
    run_engine(model, record)
    kinds = set()
    for trusted, pushed, gated in seen:
        for n, ok in enumerate(trusted.tolist()):
            for branch in ("sparse", "dense"):
                a, b = getattr(pushed, branch)[n], getattr(gated, branch)[n]
                assert torch.equal(b, a) if ok else not b.any(), (n, branch)
            assert ok or pushed.sparse[n].any()  # the gate did switch a push off
            kinds.add(ok)
    assert kinds == {True, False}  # both happen on this video
    del model._motion_prompt
    monkeypatch.setattr("mosam_train.models.mosam.TRUSTED_IOU", 0.0)  # every one trusted
    assert max_diff(run_engine(model, record), by_predictions) == 0.0
    with pytest.raises(ValueError, match=r"rules\.motion=flow: unknown.*truth, trusted"):
        model.set_rules({"motion": "flow"})


def test_sparse_forecast_moves_the_prediction_towards_it(micro):
    """Keypoints moving right by 16 px a frame: the forecast (constant velocity) lies right
    of the last mask, and carried by the dense encoder's forecast-box channel it pulls the
    prediction right."""
    s = 128
    model = MoSAMTracker(micro(), mgp={"sparse": True, "dense": True, "history": 3}).eval()
    _dense_towards_logits(model)
    with torch.no_grad():  # read the forecast-box channel instead of the warped prior
        w = model.mgp.dense.net[0].weight
        w[0, 1], w[0, 0] = w[0, 0].clone(), 0
    frames = torch.randn(4, 3, s, s) * 0.2
    with torch.no_grad():
        out_dict = new_output_dict()
        for t in range(3):
            feats = model.encode_images(frames[t : t + 1])
            mask = torch.from_numpy(_square(s, 10 + 16 * t, 50))[None, None].float()
            out = model.track(t, feats, out_dict, 4, is_init_cond_frame=t == 0, mask_inputs=mask)
            key = "cond_frame_outputs" if t == 0 else "non_cond_frame_outputs"
            out_dict[key][t] = out
        assert all(
            out_dict[k][t]["present"].all()
            for k, t in [
                ("cond_frame_outputs", 0),
                ("non_cond_frame_outputs", 1),
                ("non_cond_frame_outputs", 2),
            ]
        )
        prompt = model._motion_prompt(3, out_dict, torch.zeros(1, 2, s, s))
        last_cx = float(out_dict["non_cond_frame_outputs"][2]["keypoints"][0, 0, 0])
        assert float(prompt.forecast[0, 0, 0]) == pytest.approx(last_cx + 16 / s, abs=1e-5)
        feats = model.encode_images(frames[3:])
        moved = model.track(3, feats, out_dict, 4, flow=torch.zeros(1, 2, s, s))
        model.mgp.dense.net[4].weight.zero_()  # the same forecast, no dense prompt
        still = model.track(3, feats, out_dict, 4, flow=torch.zeros(1, 2, s, s))
    # last mask at x 42..72; forecast box at x 58..88
    assert_moved_towards(
        moved["pred_masks_high_res"][0, 0], still["pred_masks_high_res"][0, 0], 58, 42
    )
