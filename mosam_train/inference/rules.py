"""Inference-time tracker rules: the decisions the streaming engine leaves to a rule.

A model (`VideoSAM` and its subclasses) is what was trained; a rule is how it is run on a
video, and any rule applies to any checkpoint (`tracker=` in eval, predict and training's
validation). The engine calls the rule at each decision point:

- `initial_state`: the rule's own per-object state when a group of objects starts;
- `visible`: the memory a frame attends to (all of it; or a filtered or re-indexed view:
  SAM 2 gives its memory slots temporal encodings by distance to the current frame);
- `select`: optionally, which past frames' memory features each object of a tracked frame
  attends to and in which temporal slots (a `SpatialMemory`, assembled by the model), when
  a view cannot say it: a choice per object, or slots other than SAM 2's;
- `choose`: for a rule that `needs_candidates`, which of SAM 2's three candidate masks
  becomes each object's output on a tracked frame (its mask, its object pointer and the
  mask the memory encoder encodes; SAM 2 keeps the highest predicted IoU);
- `remember`: whether and how a frame's output enters memory (prompted frames as
  conditioning frames, tracked frames as ordinary ones);
- `horizon`: the oldest entries later frames can still use (older ones are dropped);
- `needs_flow` / `flow_provider`: optical flow (current -> previous frame) for `visible`
  and `remember`, computed by the engine once per frame;
- `needs_ground_truth`: the frame's ground-truth masks for `remember` (upper bounds measured
  on annotated data; the engine refuses a video without them before its first frame).
- `needs_candidates`: SAM 2's three candidates on every tracked frame, for `choose` (the
  engine refuses a model that tracks with one mask before the first frame).
- `hypotheses`: rows per object in its group's batch, each with its own memory (a search
  over several hypotheses per object; `choose` may then continue another row of the same
  object with a `Branching`);
- `decided`: which frames' outputs are final after a frame, and their masks (SAM 2: that
  frame's, at once; a rule that decides late returns earlier frames, and everything left
  at the video's last frame). The engine yields every frame once, in order, as soon as
  every object's output of it is decided.

Per-video, per-object state lives in the `MemoryBank` of each group of objects, never in
the rule, so one rule object serves every video and every group. `TrackerRule` itself is
SAM 2's rule (`tracker=sam2`): every frame is remembered, and memory is pruned to what
SAM 2's window and the model can still read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mosam_train.models.video_sam import (
    Candidates,
    FlowFn,
    OutputDict,
    SpatialMemory,
    new_output_dict,
)


@dataclass
class MemoryBank:
    """The memory of one group of objects tracked together on one video.

    output_dict: SAM 2's layout ({"cond_frame_outputs": {t: entry}, "non_cond_frame_outputs":
    {t: entry}}, each entry's tensors [N, ...] in `object_ids` order), which the model reads;
    state: the rule's per-object state (tensors with the objects on dim 0), from
    `TrackerRule.initial_state`.
    """

    object_ids: list[int]
    output_dict: OutputDict = field(default_factory=new_output_dict)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def cond(self) -> dict[int, dict[str, Any]]:
        """Prompted (conditioning) frames' entries by frame index."""
        return self.output_dict["cond_frame_outputs"]

    @property
    def non_cond(self) -> dict[int, dict[str, Any]]:
        """Tracked frames' entries by frame index."""
        return self.output_dict["non_cond_frame_outputs"]

    def drop_older(self, oldest_mem: int, oldest_ptr: int) -> None:
        """Drop tracked frames older than both horizons, and the maps (memory features,
        masks) of those older than `oldest_mem` only: they keep their per-object vectors,
        the object pointer and the frame's scores, which a pointer rule may read."""
        non_cond = self.non_cond
        for t in list(non_cond):
            if t < oldest_mem and t < oldest_ptr:
                del non_cond[t]
            elif t < oldest_mem and "maskmem_features" in non_cond[t]:
                non_cond[t] = {
                    k: v
                    for k, v in non_cond[t].items()
                    if isinstance(v, torch.Tensor) and v.dim() <= 2
                }


class TrackerRule:
    """SAM 2's rule; subclass it and override the decision points a variant changes
    (register the subclass with `mosam_train.trackers.register_tracker`).

    A rule holds only its settings (constructor arguments, from the `tracker=` config);
    whatever it learns about a video goes into the `MemoryBank` it is handed.
    """

    #: whether `visible` / `remember` read optical flow (then the model's provider is used
    #: when it has one, else `flow_provider`)
    needs_flow: bool = False
    flow_provider: FlowFn | None = None
    #: whether `remember` reads each frame's ground truth (`truth=`); such a rule runs only
    #: on annotated videos (eval), never on a video without ground truth (the demo)
    needs_ground_truth: bool = False
    #: whether `choose` runs: the rule sees SAM 2's candidate masks on every tracked frame
    #: and may choose among them; it needs a model that tracks with three
    #: (`multimask_output_for_tracking`). A rule whose choice is switched off sets it False
    #: (per instance): it then runs exactly as SAM 2, on any model.
    needs_candidates: bool = False
    #: rows each object takes in its group's batch: object r's hypothesis h is row
    #: r * hypotheses + h, with its own memory (the bank's tensors are [N * hypotheses, ...]);
    #: `choose` sees every row's candidates and `decided` reduces the rows to one output per
    #: object. 1: one row per object (SAM 2).
    hypotheses: int = 1
    #: frames between tracking a frame and deciding its output (`decided`); 0: at once.
    #: A source whose frames arrive one at a time, each after the previous frame's answer
    #: (a TraX session), needs 0.
    delay: int = 0

    def initial_state(self, num_objects: int, device: torch.device) -> dict[str, Any]:
        """The rule's per-object state for `num_objects` objects starting together."""
        return {}

    def visible(
        self, bank: MemoryBank, frame_idx: int, flow: torch.Tensor | None = None
    ) -> OutputDict:
        """The memory frame `frame_idx` attends to, in SAM 2's layout (the model picks its
        conditioning frames, recent frames and object pointers from it by frame index)."""
        return bank.output_dict

    def select(self, bank: MemoryBank, frame_idx: int, memory: OutputDict) -> SpatialMemory | None:
        """Which past frames' memory features each object of tracked frame `frame_idx`
        attends to, and their temporal slots (the prompted frames are always attended to);
        `memory` is what `visible` returned. None: the model chooses (SAM 2's window, or a
        model's own learned selection); object pointers always follow SAM 2's rule."""
        return None

    def choose(
        self, bank: MemoryBank, frame_idx: int, candidates: Candidates
    ) -> torch.Tensor | None:
        """Which candidate becomes each object's output on tracked frame `frame_idx`: a long
        tensor [N] of indices into the candidates (dim 1 of `candidates`' tensors), or None
        for SAM 2's choice (`candidates.sam2_choice`, the highest predicted IoU). Called
        only for a rule that `needs_candidates`, before the memory encoder runs, so the
        output mask, the object pointer and the mask encoded into memory are all the chosen
        candidate's. Work on the whole batch of objects at once (tensors [N, M, ...]) and
        keep results on the device: a Python loop over objects or a `.item()` here costs
        every frame. A score `remember` needs later (e.g. a motion IoU per candidate) goes
        into `bank.state`."""
        return None

    def remember(
        self,
        bank: MemoryBank,
        frame_idx: int,
        entry: dict[str, Any],
        out: dict[str, Any],
        *,
        prompted: bool,
        flow: torch.Tensor | None = None,
        truth: torch.Tensor | None = None,
    ) -> None:
        """Store frame `frame_idx` in `bank`: `entry` is what the model keeps of a frame
        (`VideoSAM.memory_entry`), `out` the frame's whole output (IoU predictions,
        candidate masks, object scores; for a rule that `needs_candidates`, on tracked
        frames, also "candidates" (`Candidates`) and "choice" ([N], the candidate each
        object took): e.g. `Candidates.take(out["candidates"].ious, out["choice"])` is the
        chosen predicted IoU, worth adding to `entry` for `select` to gate memory on).
        A prompted frame must stay a conditioning frame:
        SAM 2 tracks from those. `truth` (given only to a rule that `needs_ground_truth`):
        the frame's ground-truth masks, bool [N, H, W] at the video's resolution in
        `bank.object_ids` order, or None where the frame is not annotated."""
        if prompted:
            bank.cond[frame_idx] = entry
        else:
            bank.non_cond[frame_idx] = entry

    def horizon(
        self, bank: MemoryBank, next_frame: int, model_horizon: tuple[int, int]
    ) -> tuple[int, int]:
        """(oldest frame whose memory features, oldest whose object pointer) `next_frame`
        and later frames may still use; `model_horizon` is what the model itself reads. A
        rule that looks further back than the model returns older frames."""
        return model_horizon

    def decided(
        self, bank: MemoryBank, frame_idx: int, out: dict[str, Any], *, last: bool
    ) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        """The frames whose output is final once frame `frame_idx` ran (`out`, after
        `remember`), in order: (frame, low-resolution mask logits [N, 1, h, w], object
        scores [N]), N the group's objects. SAM 2 decides each frame at once; a rule that
        decides later (e.g. from the best of several hypotheses a few frames on) returns
        earlier frames, each exactly once, and at the video's `last` frame every frame
        still open."""
        return [(frame_idx, out["pred_masks"], out["object_score_logits"].view(-1))]
