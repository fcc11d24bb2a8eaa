"""SAM 2 as a per-frame tracker: the one step used by training clips and the streaming engine.

`VideoSAM.track` runs SAM 2's own `_track_step` (memory attention + SAM heads) and memory
encoder for one frame of a batch of objects, and returns every output the losses, the
memory bank and later the memory-selection heads need. Training (`forward_clip`) and
inference (`mosam_train.inference.engine`) both go through it, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from sam2.modeling.sam2_base import SAM2Base
from torch import nn

OutputDict = dict[str, dict[int, dict[str, Any]]]


def new_output_dict() -> OutputDict:
    """SAM 2's memory bank layout: outputs of prompted and of tracked frames by frame index."""
    return {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}


@dataclass
class FrameFeatures:
    """Flattened backbone features of a batch of images (SAM 2's `_prepare_backbone_features`).

    vision_feats / vision_pos: one tensor per feature level, [HW, N, C].
    """

    vision_feats: list[torch.Tensor]
    vision_pos: list[torch.Tensor]
    feat_sizes: list[tuple[int, int]]

    def select(self, index: torch.Tensor) -> FrameFeatures:
        """Features of images `index` (one column per object that looks at that image)."""
        return FrameFeatures(
            [x.index_select(1, index) for x in self.vision_feats],
            [x.index_select(1, index) for x in self.vision_pos],
            self.feat_sizes,
        )

    def expand(self, n: int) -> FrameFeatures:
        """One image's features shared by `n` objects (no copy)."""
        return FrameFeatures(
            [x.expand(-1, n, -1) for x in self.vision_feats],
            [x.expand(-1, n, -1) for x in self.vision_pos],
            self.feat_sizes,
        )


class VideoSAM(nn.Module):
    """A SAM 2 model (any `SAM2Base`, or a subclass that overrides its hook points)."""

    def __init__(self, sam2: SAM2Base) -> None:
        super().__init__()
        self.sam2 = sam2

    @property
    def image_size(self) -> int:
        return int(self.sam2.image_size)

    def encode_images(self, images: torch.Tensor) -> FrameFeatures:
        """Backbone features of normalised images [N, 3, S, S]."""
        backbone_out = self.sam2.forward_image(images)
        _, feats, pos, sizes = self.sam2._prepare_backbone_features(backbone_out)
        return FrameFeatures(list(feats), list(pos), list(sizes))

    def track(
        self,
        frame_idx: int,
        feats: FrameFeatures,
        output_dict: OutputDict,
        num_frames: int,
        *,
        is_init_cond_frame: bool = False,
        point_inputs: dict[str, torch.Tensor] | None = None,
        mask_inputs: torch.Tensor | None = None,
        run_mem_encoder: bool = True,
        memory_from_low_res: bool = False,
    ) -> dict[str, Any]:
        """One frame for a batch of objects; the result is ready to be stored in `output_dict`.

        `memory_from_low_res` encodes memory from the low-resolution mask upsampled to the
        image size, which is what `SAM2VideoPredictor` does for prompted frames.
        """
        sam2 = self.sam2
        current_out, sam_outputs, _, _ = sam2._track_step(
            frame_idx,
            is_init_cond_frame,
            feats.vision_feats,
            feats.vision_pos,
            feats.feat_sizes,
            point_inputs,
            mask_inputs,
            output_dict,
            num_frames,
            False,
            None,
        )
        (
            _low_res_multimasks,
            high_res_multimasks,
            ious,
            low_res_masks,
            high_res_masks,
            obj_ptr,
            object_score_logits,
        ) = sam_outputs
        current_out.update(
            pred_masks=low_res_masks,
            pred_masks_high_res=high_res_masks,
            multimasks_high_res=high_res_multimasks,
            ious=ious,
            obj_ptr=obj_ptr,
            object_score_logits=object_score_logits,
            maskmem_features=None,
            maskmem_pos_enc=None,
        )
        if run_mem_encoder and sam2.num_maskmem > 0:
            masks_for_mem = high_res_masks
            if memory_from_low_res:
                size = (sam2.image_size, sam2.image_size)
                masks_for_mem = F.interpolate(
                    low_res_masks, size=size, mode="bilinear", align_corners=False
                )
            feats_mem, pos_mem = sam2._encode_new_memory(
                current_vision_feats=feats.vision_feats,
                feat_sizes=feats.feat_sizes,
                pred_masks_high_res=masks_for_mem,
                object_score_logits=object_score_logits,
                is_mask_from_pts=memory_from_low_res or point_inputs is not None,
            )
            current_out["maskmem_features"] = feats_mem
            current_out["maskmem_pos_enc"] = pos_mem
        return current_out

    def forward_clip(
        self,
        frames: torch.Tensor,
        object_clip: torch.Tensor,
        first_frame_prompt: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """Track N objects through their clips, prompted on frame 0; nothing is detached.

        frames: [B, T, 3, S, S]; object_clip: [N] clip index of each object;
        first_frame_prompt: {"point_inputs": ...} or {"mask_inputs": [N, 1, S, S]}.
        Returns one output dict per frame ([N, ...] tensors).
        """
        t = frames.shape[1]
        all_feats = self.encode_images(frames.flatten(0, 1))
        output_dict = new_output_dict()
        outputs = []
        for i in range(t):
            feats = all_feats.select(object_clip * t + i)
            if i == 0:
                out = self.track(
                    i,
                    feats,
                    output_dict,
                    t,
                    is_init_cond_frame=True,
                    point_inputs=first_frame_prompt.get("point_inputs"),
                    mask_inputs=first_frame_prompt.get("mask_inputs"),
                )
                output_dict["cond_frame_outputs"][i] = out
            else:
                out = self.track(i, feats, output_dict, t)
                output_dict["non_cond_frame_outputs"][i] = out
            outputs.append(out)
        return outputs
