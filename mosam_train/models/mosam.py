"""MoSAM: SAM 2 with Motion-Guided Prompting and Spatial-Temporal Memory Selection.

SAM 2 runs its own `_track_step` on every frame; MoSAM changes two inputs at SAM 2's hook
points, through hooks this tracker registers on SAM 2's modules:

- the prompt encoder's output (`sam_prompt_encoder`): MGP's sparse tokens and dense map are
  added to it on tracked frames (see `motion/prompting.py` for why added, not appended);
- the memory attention's input (`memory_attention`): SAM 2 assembles prompted frames, its
  last six frames and the object pointers; the spatial part (everything but the pointers)
  is replaced by the prompted frames plus the ST-MS selection (`VideoSAM`'s assembly of a
  `SpatialMemory`), with the pixel filter as an attention bias. Object pointers follow SAM
  2's own rule by default (every prompted frame's plus up to `max_obj_ptrs_in_encoder - 1`
  recent frames'): they are 4 tokens a frame, SAM 2 learned their temporal encoding on
  consecutive frames, and leaving them alone keeps MoSAM exactly SAM 2 when its selection
  is SAM 2's window; `model.stms.pointers` leaves out those of the frames rated bad.

Motion and memory state live in the per-video output dict (SAM 2's memory bank), per
object, so a new video starts clean and training clips and the streaming engine share one
path (`VideoSAM.track`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from sam2.modeling.sam2_base import SAM2Base
from sam2.modeling.sam2_utils import select_closest_cond_frames
from torch import nn

from mosam_train.models.losses import frame_target
from mosam_train.models.memory.attention import enable_key_bias
from mosam_train.models.memory.selection import MemorySelection
from mosam_train.models.motion.prompting import (
    TRUTH_GATE,
    VISIBILITY_GATES,
    MotionGuidedPrompting,
    MotionPrompt,
)
from mosam_train.models.motion.sparse import KEYPOINTS, mask_keypoints
from mosam_train.models.video_sam import (
    Candidates,
    FrameFeatures,
    OutputDict,
    SpatialMemory,
    VideoSAM,
)
from mosam_train.optical_flow import build_flow_provider

MOSAM_ENTRY_KEYS = (
    "keypoints",
    "present",
    "frame_score",
    "pixel_logits",
    "motion_masks",
    "motion_trusted",
)
#: what `MoSAMTracker.switch_off` switches off in a trained model (eval's `parts_off`)
PARTS = ("mgp", "mgp_prompts", "sparse", "dense", "pixel", "threshold")
#: inference rules eval may set in a trained model (`MoSAMTracker.set_rules`)
STMS_RULES = ("keep_previous", "slots", "order", "pointers")
MGP_RULES = ("hold_last_visible", "visibility", "motion")
#: where MGP reads past masks: the model's predictions; or (eval only, oracle bounds) the
#: ground truth's, or the predictions only where they are right (`TRUSTED_IOU`)
MOTION_SOURCES = ("predictions", "truth", "trusted")
#: rules.motion=trusted: a prediction MGP may forecast from has this true IoU at least (the
#: threshold at which an object counts as tracked, as in re-detection latency)
TRUSTED_IOU = 0.5


def _soft_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[N, 1, H, W] probabilities -> [N]."""
    ab = a * b
    inter = ab.flatten(1).sum(1)
    union = (a + b - ab).flatten(1).sum(1)
    return inter / union.clamp(min=1e-6)


class MoSAMTracker(VideoSAM):
    """mgp: MotionGuidedPrompting kwargs or None; stms: MemorySelection kwargs or None;
    flow: `build_flow_provider` kwargs (used when the dense branch is on)."""

    def __init__(
        self,
        sam2: SAM2Base,
        mgp: dict[str, Any] | None = None,
        stms: dict[str, Any] | None = None,
        flow: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(sam2)
        embed = sam2.sam_image_embedding_size
        self.mgp = (
            MotionGuidedPrompting(sam2.sam_prompt_embed_dim, (embed, embed), sam2.image_size, **mgp)
            if mgp
            else None
        )
        self.stms = (
            MemorySelection(
                sam2.num_maskmem,
                sam2.mem_dim,
                pointer_window=sam2.max_obj_ptrs_in_encoder - 1,
                **stms,
            )
            if stms
            else None
        )
        if self.stms is not None and self.stms.pixel_head is not None:
            enable_key_bias(sam2.memory_attention)
        self.flow_provider = build_flow_provider(**(flow or {})) if self.needs_flow else None
        self._motion: MotionPrompt | None = None
        self._presence: torch.Tensor | None = None  # the current frame's, for the truth gate
        self.motion_source = "predictions"  # rules.motion (MOTION_SOURCES)
        self.motion_prompts = True  # False: MGP forecasts (for the frame head), adds nothing
        sam2.sam_prompt_encoder.register_forward_hook(self._add_motion_prompt)

    def leave_out_below(self, min_confidence: float) -> None:
        """Leave out frames the trained frame head rates below `min_confidence` (eval's
        `min_confidence`): the threshold as a setting chosen on val, where a checkpoint
        otherwise keeps the one it was trained with."""
        stms = self.stms
        if stms is None or stms.frame_head is None or stms.min_confidence is None:
            raise ValueError(
                f"min_confidence={min_confidence}: this model leaves no frame out for a "
                f"frame-head rating (it was trained without "
                f"{'memory selection' if stms is None else 'a threshold'}). Fix: "
                "min_confidence=null, or a MoSAM checkpoint trained with "
                "model.stms.min_confidence set."
            )
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(
                f"min_confidence={min_confidence}: a probability. Fix: a value in [0, 1]."
            )
        stms.min_confidence = float(min_confidence)

    def switch_off(self, part: str) -> None:
        """Switch one of `PARTS` off in this model, trained as it is: what the part does in a
        checkpoint, without training it apart (the method table's rows do that).
        `mgp_prompts`: MGP still forecasts, which the frame head reads, but adds nothing to
        SAM 2's prompts; `mgp`: no MGP at all (the frame head then reads no forecast);
        `threshold`: no frame is left out for its rating (`min_confidence`)."""
        mgp, stms = self.mgp, self.stms
        needs = {  # what each part needs in this model (None: it has no such part)
            "mgp": mgp,
            "mgp_prompts": mgp,
            "sparse": mgp and mgp.sparse,
            "dense": mgp and mgp.dense,
            "pixel": stms and stms.pixel_head,
            "threshold": stms and stms.min_confidence,
        }
        if needs.get(part) is None:
            have = [p for p in PARTS if needs[p] is not None]
            raise ValueError(
                f"parts_off: {part!r} is not a part of this model. Fix: choose from "
                f"{', '.join(have) or 'none (it has no MGP and no selection)'}."
            )
        if part == "mgp":
            self.mgp, self.flow_provider = None, None
        elif part == "mgp_prompts":
            self.motion_prompts = False
        elif part in ("sparse", "dense"):
            if needs["dense" if part == "sparse" else "sparse"] is None:
                raise ValueError(f"parts_off: {part} is MGP's last branch. Fix: mgp instead.")
            setattr(mgp, part, None)
            if mgp.dense is None:
                self.flow_provider = None
        elif part == "pixel":
            stms.pixel_head = None
        else:  # threshold: every rating passes
            stms.min_confidence = 0.0

    def set_rules(self, rules: dict[str, Any]) -> None:
        """Set inference rules of this model as trained (eval's `rules`, null keeps one):
        each fix reverted in the trained weights, where retraining would also measure what
        the other parts learn around it. `STMS_RULES` set memory selection's (see
        `MemorySelection.set_rules`), `hold_last_visible` sparse MGP's after a loss,
        `visibility` how MGP's push is scaled: `learned` (a model trained with the gate),
        `object_score` (SAM 2's belief alone), `none`, or `truth` (each object's true
        presence), `motion` where MGP reads past masks: `predictions`, `truth` (the
        ground truth's: keypoints and the mask the dense branch warps) or `trusted` (the
        predictions, and MGP off for an object whose previous prediction has a true IoU
        below `TRUSTED_IOU`: what a perfect reliability gate on MGP's input could reach,
        against `truth`'s perfect input). `truth` and `trusted` are oracle bounds, on
        annotated videos only."""
        rules = {k: v for k, v in rules.items() if v is not None}
        unknown = sorted(set(rules) - set(STMS_RULES) - set(MGP_RULES))
        if unknown:
            raise ValueError(
                f"rules: {', '.join(unknown)} unknown. Fix: choose from "
                f"{', '.join(STMS_RULES + MGP_RULES)}."
            )
        stms_rules = {k: v for k, v in rules.items() if k in STMS_RULES}
        if stms_rules:
            if self.stms is None:
                raise ValueError(
                    f"rules: {', '.join(stms_rules)} set memory selection, which this model "
                    "was trained without. Fix: leave them null, or a MoSAM checkpoint with "
                    "model.stms."
                )
            self.stms.set_rules(**stms_rules)
        if "hold_last_visible" in rules:
            if self.mgp is None or self.mgp.sparse is None:
                raise ValueError(
                    "rules.hold_last_visible sets sparse MGP, which this model was trained "
                    "without. Fix: rules.hold_last_visible=null."
                )
            self.mgp.sparse.hold_last_visible = bool(rules["hold_last_visible"])
        if "visibility" in rules:
            self._set_visibility(str(rules["visibility"]))
        if "motion" in rules:
            if self.mgp is None or rules["motion"] not in MOTION_SOURCES:
                raise ValueError(
                    f"rules.motion={rules['motion']}: "
                    + ("this model has no MGP. Fix: rules.motion=null." if self.mgp is None
                       else f"unknown. Fix: one of {', '.join(MOTION_SOURCES)}.")
                )  # fmt: skip
            self.motion_source = str(rules["motion"])

    def _set_visibility(self, gate: str) -> None:
        mgp, gates = self.mgp, (*VISIBILITY_GATES, TRUTH_GATE)
        if mgp is None:
            raise ValueError(
                "rules.visibility sets MGP's gate, and this model was trained without MGP. "
                "Fix: rules.visibility=null."
            )
        if gate not in gates or (gate == "learned" and mgp.visibility_head is None):
            have = [g for g in gates if g != "learned" or mgp.visibility_head is not None]
            raise ValueError(
                f"rules.visibility={gate}: not a gate of this model. Fix: one of {', '.join(have)}."
            )
        mgp.visibility = gate
        if gate not in ("learned", TRUTH_GATE):  # the truth gate still reports the head's
            mgp.visibility_head = None

    @property
    def needs_ground_truth(self) -> bool:
        """Whether tracking reads each frame's ground truth (`rules.visibility=truth`,
        `rules.motion=truth|trusted`): the engine then hands it to `track` as `truth=`."""
        return self.mgp is not None and (
            self.mgp.visibility == TRUTH_GATE or self.motion_source != "predictions"
        )

    @property
    def needs_flow(self) -> bool:
        return self.mgp is not None and self.mgp.needs_flow

    @property
    def added_parameter_prefixes(self) -> tuple[str, ...]:
        return tuple(f"{name}." for name in ("mgp", "stms") if getattr(self, name) is not None)

    # ------------------------------------------------------------------ hooks
    def _add_motion_prompt(self, module: nn.Module, args: Any, output: Any) -> Any:
        motion = self._motion
        if motion is None:
            return output
        sparse, dense = output
        if motion.sparse is not None:
            k = motion.sparse.shape[1]
            if k == sparse.shape[1]:  # no prompt: SAM 2's two padding tokens, all of them
                sparse = sparse + motion.sparse
            else:
                sparse = torch.cat([sparse[:, :-k], sparse[:, -k:] + motion.sparse], 1)
        if motion.dense is not None:
            dense = dense + motion.dense
        return sparse, dense

    # ------------------------------------------------------------------ per frame
    def _heads(
        self,
        frame_idx: int,
        is_init_cond_frame: bool,
        feats: FrameFeatures,
        output_dict: OutputDict,
        num_frames: int,
        point_inputs: dict[str, torch.Tensor] | None,
        mask_inputs: torch.Tensor | None,
        flow: torch.Tensor | None,
        frame_step: int,
        spatial: SpatialMemory | None,
    ) -> tuple[dict[str, Any], tuple]:
        tracked = self._tracked(is_init_cond_frame, mask_inputs)
        motion = None
        if tracked and self.mgp is not None and point_inputs is None:
            motion = self._motion_prompt(frame_idx, output_dict, flow)
        if tracked and self.stms is not None and spatial is None:  # a rule's choice wins
            spatial = self._selected_memory(frame_idx, output_dict, frame_step)
        if motion is not None and not self.motion_prompts:
            motion = replace(motion, sparse=None, dense=None)
        self._motion = motion
        try:
            current_out, sam_outputs = super()._heads(
                frame_idx,
                is_init_cond_frame,
                feats,
                output_dict,
                num_frames,
                point_inputs,
                mask_inputs,
                flow,
                frame_step,
                spatial,
            )
        finally:
            self._motion = None
        if motion is not None and motion.region is not None:
            current_out["motion_region"] = motion.region
        if motion is not None and motion.visibility is not None:
            current_out["visibility_logit"] = motion.visibility
        return current_out, sam_outputs

    def track(self, *args: Any, truth: torch.Tensor | None = None, **kwargs: Any) -> dict[str, Any]:
        """VideoSAM.track; `truth` bool [N, H, W]: each object's ground-truth mask in this
        frame (None: not annotated), for the oracle settings only (see
        `needs_ground_truth`)."""
        self._presence = None if truth is None else truth.flatten(1).any(1)
        try:
            out = super().track(*args, **kwargs)
        finally:
            self._presence = None
        motion_masks = out["pred_masks"]
        if self.motion_source != "predictions" and truth is not None:
            # the ground truth at the predictions' size, where MGP reads masks
            size = tuple(motion_masks.shape[-2:])
            true = F.interpolate(truth[:, None].float(), size=size, mode="area") >= 0.5
            if self.motion_source == "truth":  # as mask logits (+-10: SAM 2's scale)
                motion_masks = out["motion_masks"] = torch.where(true, 10.0, -10.0)
            else:
                # IoU 1 where both are empty: a hidden object predicted absent is right
                iou = frame_target((motion_masks > 0)[:, 0], true[:, 0], "iou")
                out["motion_trusted"] = iou >= TRUSTED_IOU
        if self.mgp is not None and self.mgp.sparse is not None:
            out["keypoints"], out["present"] = mask_keypoints(motion_masks)
        maskmem = out.get("maskmem_features")
        if self.stms is not None and maskmem is not None:
            if self.stms.frame_head is not None:
                region = out.get("motion_region")
                agreement = None
                if region is not None:
                    agreement = _soft_iou(region, torch.sigmoid(out["pred_masks_high_res"]))
                # the predicted IoU of the output mask: SAM 2's highest, or a rule's choice
                choice = out.get("choice")
                ious = out["ious"]
                if choice is not None:
                    iou = Candidates.take(ious, choice)
                else:  # SAM 2's highest; with one candidate (the micro base), a view
                    iou = ious[:, 0] if ious.shape[1] == 1 else ious.amax(1)
                out["frame_score"] = self.stms.frame_head(
                    iou, out["object_score_logits"][:, 0], agreement, maskmem
                )
            if self.stms.pixel_head is not None:
                out["pixel_logits"] = self.stms.pixel_head(maskmem, out["pred_masks"])
        return out

    # ------------------------------------------------------------------ motion
    def _motion_prompt(
        self, frame_idx: int, output_dict: OutputDict, flow: torch.Tensor | None
    ) -> MotionPrompt:
        mgp = self.mgp
        cond, non_cond = output_dict["cond_frame_outputs"], output_dict["non_cond_frame_outputs"]
        # the last `history` frames' entries, None where the bank has none (a tracked
        # frame's entry over a prompted one's)
        history = []
        for t in range(frame_idx - mgp.history, frame_idx):
            e = non_cond.get(t)
            history.append(e if e is not None else cond.get(t))
        n = next(iter(cond.values()))["obj_ptr"].shape[0]
        device = self.sam2.no_mem_embed.device
        traj = present = None
        if mgp.sparse is not None:
            kp, seen = [], []
            for e in history:
                if e is None or "keypoints" not in e:
                    e = {
                        "keypoints": torch.zeros(n, len(KEYPOINTS), 2, device=device),
                        "present": torch.zeros(n, dtype=torch.bool, device=device),
                    }
                kp.append(e["keypoints"])
                seen.append(e["present"])
            traj, present = torch.stack(kp, 1), torch.stack(seen, 1)
        scores = None  # the visibility gate's input: object scores, held over missing frames
        if mgp.visibility != "none":
            held, rows = None, []
            for e in history:
                if e is not None and "object_score_logits" in e:
                    held = e["object_score_logits"]
                elif held is None:  # before the first frame with a score
                    held = torch.zeros(n, 1, device=device)
                rows.append(held)
            scores = torch.cat(rows, 1).float()  # [N, 1] each -> [N, L]
        prev_logits = None  # only the dense branch warps the previous mask
        prev = history[-1]
        if mgp.dense is not None and prev is not None and "pred_masks" in prev:
            size = (self.sam2.image_size, self.sam2.image_size)
            masks = prev.get("motion_masks", prev["pred_masks"])  # the truth's (an oracle)
            prev_logits = F.interpolate(
                masks.float(), size=size, mode="bilinear", align_corners=False
            )
        motion = mgp(
            traj, present, prev_logits, flow, self.sam2.sam_prompt_encoder, scores, self._presence
        )
        trusted = None if prev is None else prev.get("motion_trusted")
        if self.motion_source == "trusted" and trusted is not None:  # no push from a wrong one
            on = trusted.to(device)
            if motion.sparse is not None:
                motion.sparse = motion.sparse * on[:, None, None].to(motion.sparse.dtype)
            if motion.dense is not None:
                motion.dense = motion.dense * on[:, None, None, None].to(motion.dense.dtype)
        return motion

    # ------------------------------------------------------------------ memory
    def _selected_memory(
        self, frame_idx: int, output_dict: OutputDict, frame_step: int
    ) -> SpatialMemory:
        """Rate & Rank: the candidates each object keeps, in their temporal slots."""
        _, unselected_cond = select_closest_cond_frames(
            frame_idx, output_dict["cond_frame_outputs"], self.sam2.max_cond_frames_in_attn
        )
        # As in SAM 2, an unselected prompted frame competes as an ordinary past frame.
        pool = {**unselected_cond, **output_dict["non_cond_frame_outputs"]}
        return self.stms.select(frame_idx, pool, frame_step)

    def _memory_key_bias(
        self,
        frame_idx: int,
        output_dict: OutputDict,
        spatial: SpatialMemory,
        device: torch.device,
    ) -> torch.Tensor | None:
        """The pixel filter: no bias on the prompted frames' tokens, the pixel-confidence
        head's on the kept frames' (oldest first, as `_spatial_memory` orders them)."""
        stms = self.stms
        if stms is None or stms.pixel_head is None:
            return None
        selected_cond, _ = select_closest_cond_frames(
            frame_idx, output_dict["cond_frame_outputs"], self.sam2.max_cond_frames_in_attn
        )
        cond = [e["maskmem_features"].shape for e in selected_cond.values()]
        cond_tokens = sum(math.prod(shape[2:]) for shape in cond)
        if not spatial.entries:
            return torch.zeros(cond[0][0], cond_tokens, device=device)
        z = spatial.gather(lambda e: e["pixel_logits"], device, oldest_first=True)
        kept = stms.pixel_head.bias(z).flatten(2).permute(1, 0, 2).flatten(1)  # [N, k * hw]
        return F.pad(kept, (cond_tokens, 0))

    # ------------------------------------------------------------------ memory bank
    def memory_entry(self, out: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
        entry = super().memory_entry(out, dtype)
        entry.update({k: out[k] for k in MOSAM_ENTRY_KEYS if k in out})
        return entry

    def memory_horizon(
        self, next_frame: int, num_frames: int, frame_step: int = 1
    ) -> tuple[int, int]:
        oldest_mem, oldest_ptr = super().memory_horizon(next_frame, num_frames, frame_step)
        if self.stms is not None:
            oldest_mem = min(oldest_mem, next_frame - self.stms.horizon(frame_step))
        if self.mgp is not None:
            oldest_mem = min(oldest_mem, next_frame - self.mgp.history)
        return oldest_mem, oldest_ptr
