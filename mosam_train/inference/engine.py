"""Streaming semi-supervised propagation: the one inference path of the project.

Validation, `eval.py` and the demo all call `VideoPropagator.propagate`. It follows
`SAM2VideoPredictor.propagate_in_video` (built with the same settings) step for step:
an object is prompted with a mask (`add_new_mask`) or with clicks and/or a box
(`add_new_points_or_box`, see `inference.prompts`), prompted frames are encoded into
memory from their low-resolution mask, memory features are stored in bfloat16, and
objects that share a prompt frame and prompt kind are tracked as a batch.
Unlike the reference it reads frames lazily and keeps only the memory entries a later
frame can still use, so memory stays flat however long the video is.

Optical flow (for a model or rule that needs it) depends only on the images of two
consecutive frames, never on predictions: a provider that runs on the host
(`runs_on_host`, e.g. OpenCV's Farneback, which releases the GIL) computes the flow of
frame t + 1 in a worker thread while the model runs frame t, so on a GPU machine (or a
second CPU core) the flow leaves the critical path. Frames are still read in order, once
each, in the calling thread; a provider on the model's device (RAFT) runs inline.

What enters memory, what a frame attends to, which of SAM 2's candidate masks a tracked
frame outputs and what is dropped are a `TrackerRule`'s decisions (`inference.rules`; SAM 2's own by default); the engine names no variant.
A rule may follow several hypotheses per object (`TrackerRule.hypotheses`: rows of the
group's batch) and decide a frame's output later (`TrackerRule.decided`); the engine then
yields each frame once, in order, when every group has decided it, so a consumer (the eval
writer, predict, the demo) sees the same stream, only later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from sam2.modeling.sam2_base import NO_OBJ_SCORE

from mosam_train.inference.prompts import PointPrompt, Prompt
from mosam_train.inference.rules import MemoryBank, TrackerRule
from mosam_train.models.video_sam import FlowFn, VideoSAM


class FrameSource(Protocol):
    """Frames of one video, preprocessed for the model on demand.

    A source of an annotated video (`sources.RecordFrames`) also says so: `name`,
    `has_ground_truth` and `ground_truth(t, object_ids)` (bool [O, H, W], or None where
    frame t is not annotated), which the engine reads for a rule that needs ground truth;
    a source without them has none."""

    num_frames: int
    height: int
    width: int
    frame_step: int  # video frames between consecutive frames here (VideoRecord.frame_step)

    # A source may also say `live = True`: its frames arrive one at a time, each only
    # after the previous frame's result was handed out (a TraX session), so the engine
    # never reads a frame ahead; `num_frames` is then an upper bound, not the length.

    def image(self, t: int) -> torch.Tensor:
        """Frame `t` as a normalised float tensor [3, S, S]."""
        ...


def video_logits(low_res: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Low-resolution mask logits [N, 1, h, w] -> [N, 1, H, W] at the video's size, as the
    engine reports (and eval scores) them."""
    return F.interpolate(low_res, size=size, mode="bilinear", align_corners=False)


@dataclass
class FrameResult:
    """Mask logits of every object on one frame, at the video's resolution.

    logits: [O, H, W] in `object_ids` order; objects not yet started are NO_OBJ_SCORE.
    """

    frame_idx: int
    object_ids: list[int]
    logits: torch.Tensor
    object_scores: torch.Tensor


@dataclass
class _Group:
    """Objects prompted on the same frame with the same kind of prompt (masks, or point
    sets of one size): tracked together as one batch. Point sets of different sizes are
    not padded into one batch: SAM 2's prompt encoder embeds a -1 label as a learnt
    "not a point" token (it is not ignored) and picks multimask output from the point
    count, so padding would change the masks; separate batches keep them exact."""

    start: int
    object_ids: list[int]
    mask_inputs: torch.Tensor | None = None
    point_inputs: dict[str, torch.Tensor] | None = None
    bank: MemoryBank = field(init=False)

    def __post_init__(self) -> None:
        self.bank = MemoryBank(self.object_ids)


def _num_stored_tensors_bytes(entry: Mapping[str, Any]) -> int:
    total = 0
    for v in entry.values():
        if isinstance(v, torch.Tensor):
            total += v.numel() * v.element_size()
    return total


class FlowAhead:
    """A host flow provider's next call, run in a worker thread: `start` it as soon as both
    frames are read, take its `result` when the frame it belongs to is processed."""

    def __init__(self, provider: FlowFn, device: torch.device) -> None:
        self.provider, self.device = provider, device
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="optical-flow")
        self._pending: Future | None = None

    def start(self, current: torch.Tensor, previous: torch.Tensor) -> None:
        self._pending = self._worker.submit(self.provider, current, previous)

    def result(self) -> torch.Tensor:
        """The flow of the last `start`, on the model's device (waits for it if need be)."""
        assert self._pending is not None, "FlowAhead.result before start"
        flow, self._pending = self._pending.result(), None
        return flow.to(self.device)

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)


class VideoPropagator:
    """Propagates first-frame (or first-appearance) masks through a video with `model`,
    under `rule` (default: SAM 2's, `TrackerRule()`)."""

    def __init__(
        self,
        model: VideoSAM,
        rule: TrackerRule | None = None,
        memory_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        self.model = model
        self.rule = rule if rule is not None else TrackerRule()
        self.memory_dtype = memory_dtype
        # optical flow once per frame, for the model and/or the rule (the model's provider
        # first: it is the one the model was trained with)
        self.flow_provider = None
        if model.needs_flow or self.rule.needs_flow:
            providers = (model.flow_provider, self.rule.flow_provider)
            self.flow_provider = next((p for p in providers if p is not None), None)
            if self.flow_provider is None:
                raise ValueError(
                    f"tracker rule {type(self.rule).__name__} needs optical flow, but neither "
                    f"it nor the model has a flow provider. Fix: give the rule a "
                    f"flow_provider, or use a model that computes flow (model.flow)."
                )
        self._require_candidates()
        self.groups: list[_Group] = []
        # Inspection: each is called after every step of the model with (frame, the group's
        # object ids, the model's whole output of that step, whose rows are the group's
        # objects, times the rule's hypotheses where it keeps several). Diagnostics read
        # there what frame results do not carry (e.g. MoSAM's visibility gate, bench.presence).
        self.observers: list[Callable[[int, list[int], dict[str, Any]], None]] = []

    def _require_candidates(self) -> None:
        """A rule that chooses among SAM 2's candidate masks runs only on a model that
        tracks with several (checked before the first frame)."""
        if self.rule.needs_candidates and self.model.tracking_candidates < 2:
            raise ValueError(
                f"tracker rule {type(self.rule).__name__} chooses among SAM 2's three "
                f"candidate masks on tracked frames (needs_candidates), but this model tracks "
                f"with one (SAM 2 setting multimask_output_for_tracking=false, as the micro "
                f"base has it). Fix: build or train the model with "
                f"+model.sam2.overrides.multimask_output_for_tracking=true (a checkpoint "
                f"keeps the setting it was trained with; the official SAM 2.1 configs have "
                f"it on), or a rule that keeps SAM 2's choice (tracker=sam2, or this rule "
                f"with its candidate choice off)."
            )

    # ------------------------------------------------------------------ memory window
    def _prune(self, group: _Group, frame_idx: int, num_frames: int, frame_step: int) -> None:
        """Drop what no later frame can use: old entries, and memory of pointer-only frames."""
        model_horizon = self.model.memory_horizon(frame_idx + 1, num_frames, frame_step)
        group.bank.drop_older(*self.rule.horizon(group.bank, frame_idx + 1, model_horizon))

    def memory_entries(self) -> int:
        """Number of frame entries held across all groups (for flat-memory checks)."""
        return sum(len(g.bank.cond) + len(g.bank.non_cond) for g in self.groups)

    def memory_bytes(self) -> int:
        return sum(
            _num_stored_tensors_bytes(e)
            for g in self.groups
            for d in g.bank.output_dict.values()
            for e in d.values()
        )

    # ------------------------------------------------------------------ ground truth
    def _require_ground_truth(self, frames: FrameSource) -> None:
        """A rule that reads ground truth runs only on a video that has it (checked before
        the first frame)."""
        if self._model_reads_truth and not getattr(frames, "has_ground_truth", False):
            name = getattr(frames, "name", None) or "this video"
            raise ValueError(
                f"the model reads the ground truth (eval's rules.visibility=truth or "
                f"rules.motion=truth|trusted, oracle bounds), but {name} has none. Fix: run "
                f"it with eval.py on an annotated split, or without those rules."
            )
        if self.rule.needs_ground_truth and not getattr(frames, "has_ground_truth", False):
            name = getattr(frames, "name", None) or "this video"
            raise ValueError(
                f"tracker rule {type(self.rule).__name__} reads the ground truth "
                f"(needs_ground_truth), but {name} has none (no annotated frame besides the "
                f"prompts). Fix: run it with eval.py on a split whose videos are annotated "
                f"(e.g. data.split=val), or choose a rule without ground truth (tracker=sam2)."
            )

    @property
    def _model_reads_truth(self) -> bool:
        """A model that reads each frame's ground truth (an oracle bound)."""
        return bool(getattr(self.model, "needs_ground_truth", False))

    def _require_causal(self, frames: FrameSource) -> None:
        """A live source sends frame t + 1 only after frame t's answer, so a rule that
        decides late would wait for a frame that never comes (checked before the first
        frame)."""
        if getattr(frames, "live", False) and self.rule.delay > 0:
            raise ValueError(
                f"tracker rule {type(self.rule).__name__} decides each frame's masks "
                f"{self.rule.delay} frames late, but {getattr(frames, 'name', 'this source')} "
                f"sends a frame only after the previous frame's answer. Fix: tracker.delay=0 "
                f"(each frame decided at once, from the best hypothesis so far)."
            )

    @staticmethod
    def _ground_truth(
        frames: FrameSource, t: int, object_ids: list[int], device: torch.device
    ) -> torch.Tensor | None:
        """Frame `t`'s masks of `object_ids` (bool [O, H, W]), read once for every group."""
        truth = frames.ground_truth(t, object_ids)  # type: ignore[attr-defined]
        return None if truth is None else torch.from_numpy(truth).to(device)

    # ------------------------------------------------------------------ propagation
    def _compact(self, out: dict[str, Any]) -> dict[str, Any]:
        return self.model.memory_entry(out, self.memory_dtype)

    def _prepare_mask_inputs(self, masks: list[np.ndarray], device: torch.device) -> torch.Tensor:
        """Prompt masks at video resolution -> [N, 1, S, S] as SAM2VideoPredictor.add_new_mask."""
        size = self.model.image_size
        m = torch.as_tensor(np.stack(masks), dtype=torch.float32, device=device)[:, None]
        if m.shape[-2:] != (size, size):
            m = F.interpolate(
                m, size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
            m = (m >= 0.5).float()
        return m

    def _prepare_point_inputs(
        self, prompts: list[PointPrompt], video_size: tuple[int, int], device: torch.device
    ) -> dict[str, torch.Tensor]:
        """Equal-size point sets -> SAM 2's point_inputs ([N, K, 2] coords, [N, K] labels)."""
        pairs = [p.model_inputs(video_size, self.model.image_size) for p in prompts]
        return {
            "point_coords": torch.stack([c for c, _ in pairs]).to(device),
            "point_labels": torch.stack([lb for _, lb in pairs]).to(device),
        }

    def _make_groups(
        self,
        prompts: Mapping[int, Mapping[int, Prompt]],
        video_size: tuple[int, int],
        device: torch.device,
    ) -> list[_Group]:
        """One group per (first prompt frame, prompt kind); later prompts of an object that
        is already tracked are ignored, as before (first-appearance prompting)."""
        seen: set[int] = set()
        groups = []
        for t in sorted(prompts):
            masks: list[tuple[int, np.ndarray]] = []
            points: dict[int, list[tuple[int, PointPrompt]]] = {}
            for oid, prompt in sorted(prompts[t].items()):
                if oid in seen:
                    continue
                seen.add(oid)
                if isinstance(prompt, PointPrompt):
                    points.setdefault(prompt.num_points, []).append((oid, prompt))
                else:
                    mask = np.asarray(prompt)
                    if mask.shape != video_size:
                        raise ValueError(
                            f"mask prompt of object {oid} on frame {t} is {mask.shape}, "
                            f"the video is {video_size}"
                        )
                    masks.append((oid, mask))
            if masks:
                ids = [oid for oid, _ in masks]
                m = self._prepare_mask_inputs([m for _, m in masks], device)
                groups.append(_Group(t, ids, mask_inputs=m))
            for _, members in sorted(points.items()):
                ids = [oid for oid, _ in members]
                pts = self._prepare_point_inputs([p for _, p in members], video_size, device)
                groups.append(_Group(t, ids, point_inputs=pts))
        return groups

    def _frames_and_flow(
        self, frames: FrameSource, start: int, device: torch.device
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None]]:
        """(t, image [1, 3, S, S] on `device`, flow of frame t to frame t - 1 or None) for
        every frame from `start` on; frames are read in order, once each.

        A host provider computes the next frame's flow in a worker thread while the caller
        runs the model on this one (the next frame is read one step early for that); any
        other provider, and every provider on a `live` source (whose next frame does not
        exist yet), runs inline."""
        provider = self.flow_provider
        num_frames = frames.num_frames
        if provider is None:
            for t in range(start, num_frames):
                yield t, frames.image(t).to(device, torch.float32)[None], None
            return
        if not getattr(provider, "runs_on_host", False) or getattr(frames, "live", False):
            previous = None
            for t in range(start, num_frames):
                image = frames.image(t).to(device, torch.float32)[None]
                flow = provider(image, previous) if previous is not None else None
                previous = image
                yield t, image, flow
            return

        def read(t: int) -> tuple[torch.Tensor, torch.Tensor]:
            # (host image for the provider, the same on the model's device); one host
            # object per frame for both calls that use it (as current, then as previous),
            # so a provider can reuse its work on it (FarnebackFlow's grey image)
            host = frames.image(t).to("cpu", torch.float32)[None]
            return host, host.to(device)

        ahead = FlowAhead(provider, device)
        try:
            image = read(start)
            for t in range(start, num_frames):
                flow = ahead.result() if t > start else None
                following = read(t + 1) if t + 1 < num_frames else None
                if following is not None:
                    ahead.start(following[0], image[0])
                yield t, image[1], flow  # the model runs frame t while frame t + 1's flow runs
                image = following
        finally:
            ahead.close()

    @torch.inference_mode()
    def propagate(
        self,
        frames: FrameSource,
        prompts: Mapping[int, Mapping[int, np.ndarray]],
    ) -> Iterator[FrameResult]:
        """Yield every frame's logits, from the first prompted frame to the end of the video.

        prompts: {frame_idx: {object_id: prompt}}, a prompt being a bool mask [H, W] at
        video resolution or a `PointPrompt` (clicks and/or a box in video pixels). An
        object joins tracking at its first prompted frame (YouTube-VOS style mid-video
        objects). Objects are reported in (first prompt frame, id) order.
        """
        if not prompts or not any(prompts.values()):
            raise ValueError("propagate needs at least one prompted object")
        self._require_ground_truth(frames)
        self._require_causal(frames)
        model_truth = self._model_reads_truth
        read_truth = self.rule.needs_ground_truth or model_truth
        choosing = self.rule.needs_candidates
        device = next(self.model.parameters()).device
        num_frames = frames.num_frames
        video_size = (frames.height, frames.width)
        self.groups = self._make_groups(prompts, video_size, device)
        for g in self.groups:
            g.bank.state = self.rule.initial_state(len(g.object_ids), device)
        order = sorted((g.start, oid) for g in self.groups for oid in g.object_ids)
        object_ids = [oid for _, oid in order]
        row = {oid: k for k, oid in enumerate(object_ids)}
        rows = [torch.tensor([row[o] for o in g.object_ids], device=device) for g in self.groups]
        start = min(g.start for g in self.groups)
        frame_step = frames.frame_step
        hyp = self.rule.hypotheses
        # decided outputs not yet yielded: frame -> group index -> (masks, scores)
        pending: dict[int, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {}
        next_out = start
        for t, image, flow in self._frames_and_flow(frames, start, device):
            feats = self.model.encode_images(image)
            truth = self._ground_truth(frames, t, object_ids, device) if read_truth else None
            for gi, (g, g_rows) in enumerate(zip(self.groups, rows, strict=True)):
                if g.start > t:
                    continue
                n = len(g.object_ids) * hyp
                g_feats = feats.expand(n)
                g_flow = flow.expand(n, -1, -1, -1) if flow is not None else None
                prompted = t == g.start
                memory = self.rule.visible(g.bank, t, g_flow)
                if prompted:
                    out = self.model.track(
                        t,
                        g_feats,
                        memory,
                        num_frames,
                        is_init_cond_frame=True,
                        point_inputs=_rows(g.point_inputs, hyp),
                        mask_inputs=_rows(g.mask_inputs, hyp),
                        memory_from_low_res=True,
                    )
                else:
                    # the ground truth (None: frame not annotated), only for a model that
                    # asks (others need not take `truth=`)
                    oracle = {}
                    if model_truth:
                        oracle["truth"] = None if truth is None else _rows(truth[g_rows], hyp)
                    out = self.model.track(
                        t,
                        g_feats,
                        memory,
                        num_frames,
                        **oracle,
                        flow=g_flow if self.model.needs_flow else None,
                        frame_step=frame_step,
                        spatial=self.rule.select(g.bank, t, memory),
                        choose=partial(self.rule.choose, g.bank, t) if choosing else None,
                    )
                for observe in self.observers:
                    observe(t, g.object_ids, out)
                entry = self._compact(out)
                # ground truth only for a rule that asks (others need not take `truth=`)
                g_truth = {"truth": None if truth is None else truth[g_rows]} if read_truth else {}
                self.rule.remember(g.bank, t, entry, out, prompted=prompted, flow=g_flow, **g_truth)
                self._prune(g, t, num_frames, frame_step)
                last = t == num_frames - 1
                for ft, masks, g_scores in self.rule.decided(g.bank, t, out, last=last):
                    pending.setdefault(ft, {})[gi] = (masks, g_scores)
            # every frame whose output each started group has decided, in order
            while next_out <= t and all(
                gi in pending.get(next_out, {})
                for gi, g in enumerate(self.groups)
                if g.start <= next_out
            ):
                decided = pending.pop(next_out)
                yield self._frame_result(next_out, object_ids, rows, decided, video_size, device)
                next_out += 1
        if next_out != num_frames:
            raise RuntimeError(
                f"tracker rule {type(self.rule).__name__} left frames {next_out}.. of "
                f"{num_frames} undecided at the video's end. Fix: its `decided` must return "
                f"every open frame when called with last=True."
            )

    @staticmethod
    def _frame_result(
        t: int,
        object_ids: list[int],
        rows: list[torch.Tensor],
        decided: dict[int, tuple[torch.Tensor, torch.Tensor]],
        video_size: tuple[int, int],
        device: torch.device,
    ) -> FrameResult:
        """Frame `t`'s result from each started group's decided masks and scores
        (objects not yet started: NO_OBJ_SCORE)."""
        low_res: torch.Tensor | None = None
        scores = torch.full((len(object_ids),), NO_OBJ_SCORE, device=device)
        for gi, (masks, g_scores) in sorted(decided.items()):
            if low_res is None:
                low_res = torch.full(
                    (len(object_ids), *masks.shape[1:]),
                    NO_OBJ_SCORE,
                    dtype=masks.dtype,
                    device=device,
                )
            low_res[rows[gi]] = masks
            scores[rows[gi]] = g_scores.to(scores.dtype)
        assert low_res is not None
        return FrameResult(t, object_ids, video_logits(low_res, video_size)[:, 0], scores)


def _rows(inputs: Any, hypotheses: int) -> Any:
    """A group's prompt inputs (a tensor [N, ...] or a dict of them, or None) with each
    object's row repeated for its `hypotheses` rows."""
    if inputs is None or hypotheses == 1:
        return inputs
    if isinstance(inputs, dict):
        return {k: v.repeat_interleave(hypotheses, 0) for k, v in inputs.items()}
    return inputs.repeat_interleave(hypotheses, 0)
