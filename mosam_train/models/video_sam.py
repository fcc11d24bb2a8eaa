"""SAM 2 as a per-frame tracker: the one step used by training clips and the streaming engine.

`VideoSAM.track` runs SAM 2's own `_track_step` (memory attention + SAM heads) and memory
encoder for one frame of a batch of objects, and returns every output the losses, the
memory bank and later the memory-selection heads need. Training (`forward_clip`) and
inference (`mosam_train.inference.engine`) both go through it, so they cannot drift apart.

Memory selection (`SpatialMemory`): SAM 2 assembles the spatial memory a frame attends to
itself, one frame per temporal slot, picked by frame index and the same for every object
of a batch. A selection that differs per object, or that gives a kept frame a slot other
than its rank (several far frames sharing SAM 2's last slot), cannot be expressed as a view
of the bank; `track(..., spatial=...)` assembles it here instead, from an explicit list of
kept frames and slots per object, and hands it to SAM 2's memory attention through a
forward pre-hook, while SAM 2 still builds the object pointers by its own rule. MoSAM's
learned selection and the inference-time rules go through this one assembly.

Candidate choice (`Candidates`): with `multimask_output_for_tracking`, SAM 2's heads give
three candidate masks on a tracked frame and keep, inside `SAM2Base._forward_sam_heads`,
the one with the highest predicted IoU (its mask, and the object pointer of its output
token). `track(..., choose=...)` lets an inference rule see every candidate and choose
another per object; the output mask, the object pointer and the mask the memory encoder
encodes are then all the chosen candidate's.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from sam2.modeling.backbones.hieradet import MultiScaleBlock
from sam2.modeling.memory_attention import MemoryAttentionLayer
from sam2.modeling.sam2_base import SAM2Base
from sam2.modeling.sam2_utils import get_1d_sine_pe, select_closest_cond_frames
from torch import nn
from torch.utils.checkpoint import checkpoint

from mosam_train.models.memory.attention import enable_key_bias, set_key_bias, set_key_scale

OutputDict = dict[str, dict[int, dict[str, Any]]]
# optical flow of frames [N, 3, S, S] to the frames before them -> [N, 2, S, S]
FlowFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def new_output_dict() -> OutputDict:
    """SAM 2's memory bank layout: outputs of prompted and of tracked frames by frame index."""
    return {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}


def enable_activation_checkpointing(sam2: SAM2Base) -> int:
    """Recompute SAM 2's image-encoder blocks and memory-attention layers in the backward
    pass instead of keeping their activations; returns how many modules it wraps.

    A long training clip at 1024 px keeps every frame's Hiera activations and every
    frame's memory attention until the backward pass; recomputing them trades about one
    extra forward for most of that memory. The forward is wrapped in place, so parameter
    names and checkpoints do not change; dropout is replayed with the same RNG state.
    """
    wrapped = 0
    for module in sam2.modules():
        if isinstance(module, MultiScaleBlock):
            module.forward = functools.partial(checkpoint, module.forward, use_reentrant=False)
            wrapped += 1
        elif isinstance(module, MemoryAttentionLayer):
            module.forward = _checkpointed_memory_layer(module)
            wrapped += 1
    return wrapped


def _checkpointed_memory_layer(layer: MemoryAttentionLayer) -> Callable[..., torch.Tensor]:
    """`layer.forward` under activation checkpointing, with the key bias (MoSAM's pixel
    filter) that its cross-attention reads at call time restored for the recomputation:
    the bias is set for one step only and cleared before the backward pass, so without it
    the recomputed attention would differ from the one whose gradients are taken."""
    forward, attention = layer.forward, layer.cross_attn_image

    def run(*args: Any, **kwargs: Any) -> torch.Tensor:
        bias = getattr(attention, "key_bias", None)

        @contextlib.contextmanager
        def as_in_forward() -> Iterator[None]:
            current = getattr(attention, "key_bias", None)
            attention.key_bias = bias
            try:
                yield
            finally:
                attention.key_bias = current

        return checkpoint(
            forward,
            *args,
            use_reentrant=False,
            context_fn=lambda: (contextlib.nullcontext(), as_in_forward()),
            **kwargs,
        )

    return run


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


@dataclass
class SpatialMemory:
    """Which past frames' memory features each object of a batch attends to, and with which
    of SAM 2's temporal slots (the prompted frames are always attended to, in their own
    slot, as in SAM 2).

    entries: candidate memory entries ([N, ...] tensors with "maskmem_features"), most
    recent first; index: [k, N] long into `entries`, row r each object's r-th most recent
    kept frame (None: every object keeps all `entries`); slots: [k] or [k, N] long, row r
    takes SAM 2's temporal slot for frame t - slots[r] (1: the slot of t-1), clamped to
    SAM 2's last slot for past frames beyond it, and 0 takes the prompted frames' own slot
    (SAM 2's t_pos 0: no relative temporal encoding, as for a conditioning frame) (None: by
    rank, slots[r] = r + 1);
    valid: bool [k, N], whether row r holds a frame for that object, where objects keep
    different numbers of frames (None: every row of every object). An invalid row's tokens
    take a key bias of -inf in the memory attention, so they weigh exactly nothing: each
    object attends as if tracked alone with its own rows.
    """

    entries: list[dict[str, Any]]
    index: torch.Tensor | None = None
    slots: torch.Tensor | None = None
    valid: torch.Tensor | None = None
    #: float [1 + k, N] or None: a scale on each memory frame's key tokens in the memory
    #: attention (`KeyBiasRoPEAttention.key_scale`), row 0 the prompted frames', row 1 + r
    #: row r's (None: unscaled, SAM 2's attention)
    key_scale: torch.Tensor | None = None
    #: the object pointers each object reads instead of SAM 2's (None: SAM 2's rule)
    pointers: PointerMemory | None = None

    #: `gather`'s flat row indices by (order, device), made once per selection
    _flat_index: dict[tuple[bool, torch.device], torch.Tensor] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def gather(
        self,
        read: Callable[[dict[str, Any]], torch.Tensor],
        device: torch.device,
        oldest_first: bool = False,
    ) -> torch.Tensor:
        """`read(entry)` ([N, ...]) of each object's kept frames -> [k, N, ...], most recent
        first (oldest first with `oldest_first`), in one gather (no host sync)."""
        if self.index is None:
            entries = self.entries[::-1] if oldest_first else self.entries
            return torch.stack([read(e) for e in entries]).to(device)
        x = torch.stack([read(e) for e in self.entries]).to(device)
        k, n = self.index.shape
        key = (oldest_first, x.device)
        flat = self._flat_index.get(key)
        if flat is None:  # row r of object i: entry index[r, i], i.e. row index * n + i
            index = self.index.flip(0) if oldest_first else self.index
            rows = torch.arange(n, device=index.device)
            flat = self._flat_index[key] = (index * n + rows).flatten().to(x.device)
        return x.flatten(0, 1).index_select(0, flat).view(k, n, *x.shape[2:])


@dataclass
class PointerMemory:
    """Which past frames' object pointers each object of a batch reads, when it is not SAM
    2's rule (the prompted frames' and the frames t-1 ... t-15, the same for every object).
    The prompted frames' pointers are read as in SAM 2.

    entries: memory entries ([N, C] "obj_ptr"), most recent first; index: [k, N] long into
    `entries`, row r each object's r-th most recent pointer; distance: [k, N] long, how many
    frames before the current one row r's frame lies (its temporal encoding, as SAM 2 gives
    a pointer); valid: bool [k, N] or None (every row), as `SpatialMemory.valid`;
    key_scale: float [1 + k, N] or None, as `SpatialMemory.key_scale` (row 0: the prompted
    frames' pointers).
    """

    entries: list[dict[str, Any]]
    index: torch.Tensor
    distance: torch.Tensor
    valid: torch.Tensor | None = None
    key_scale: torch.Tensor | None = None


@dataclass
class Branching:
    """A candidate choice that lets a batch row continue another row: row i takes candidate
    `candidate[i]` of row `source[i]` (its mask, object pointer, object score and the
    memory encoded from them), e.g. a search that follows several hypotheses per object in
    rows of one batch and keeps the best children of all of them, two of one parent.
    Every per-row output of the frame is then the source row's; moving the rows' memory
    along (`source` in the output) is the rule's."""

    source: torch.Tensor
    candidate: torch.Tensor

    def rows(self, values: torch.Tensor) -> torch.Tensor:
        """`values` [N, ...] of each row's source row."""
        return values.index_select(0, self.source.to(values.device))


@dataclass
class Candidates:
    """SAM 2's candidate outputs on one tracked frame, for a batch of N objects with M
    candidates each (3 with `multimask_output_for_tracking`, else 1).

    low_res_masks [N, M, h, w] and high_res_masks [N, M, S, S]: mask logits, NO_OBJ_SCORE
    where the object score says "absent" (as SAM 2 sets them before choosing);
    ious [N, M]: predicted IoU; object_score_logits [N, 1]: one per object, shared by its
    candidates (SAM 2's decoder scores presence from a token of its own, not per mask);
    obj_ptrs [N, M, C]: the object pointer each candidate would give; sam2_choice [N]:
    SAM 2's own choice, the highest predicted IoU.
    """

    low_res_masks: torch.Tensor
    high_res_masks: torch.Tensor
    ious: torch.Tensor
    object_score_logits: torch.Tensor
    obj_ptrs: torch.Tensor
    sam2_choice: torch.Tensor

    @property
    def num_candidates(self) -> int:
        return int(self.ious.shape[1])

    @staticmethod
    def take(values: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        """Each object's chosen candidate of `values` [N, M, ...] -> [N, ...], in one gather
        (no host sync), e.g. the chosen predicted IoU: `take(candidates.ious, choice)`."""
        rows = torch.arange(values.shape[0], device=values.device)
        return values[rows, choice.to(values.device)]

    def branch(self, branching: Branching) -> Candidates:
        """Each row's source row's candidates (`Branching`)."""
        take = branching.rows
        return Candidates(
            *(take(x) for x in (self.low_res_masks, self.high_res_masks, self.ious)),
            take(self.object_score_logits),
            take(self.obj_ptrs),
            take(self.sam2_choice),
        )


# a candidate choice on a tracked frame: the candidates -> [N] long index of each object's
# chosen candidate, a `Branching` (candidates of other rows), or None for SAM 2's (the
# highest predicted IoU)
Chooser = Callable[[Candidates], "torch.Tensor | Branching | None"]


class VideoSAM(nn.Module):
    """A SAM 2 model (any `SAM2Base`, or a subclass that overrides its hook points).

    A subclass that tracks with more than SAM 2 declares it here, so the Lightning module
    and the engine never name a variant: `needs_flow` / `flow_provider` (optical flow of
    each frame to the one before it) and `added_parameter_prefixes` (its own parameters).
    """

    def __init__(self, sam2: SAM2Base) -> None:
        super().__init__()
        self.sam2 = sam2
        self.flow_provider: FlowFn | None = None  # set by models that need flow
        # spatial memory tokens, their position encodings and key bias for the current
        # step's memory attention (`_replace_memory`), while a `SpatialMemory` is in use
        self._memory: _MemoryOverride | None = None
        sam2.memory_attention.register_forward_pre_hook(self._replace_memory, with_kwargs=True)
        # the mask decoder's output tokens, kept (`_keep_tokens`) while `track` builds
        # `Candidates` for a candidate choice; None otherwise
        self._tokens: list[torch.Tensor] | None = None
        # `_shared_pos_enc`'s stored memory position encodings, by layout
        self._pos_enc: dict[tuple, list[torch.Tensor]] = {}
        sam2.sam_mask_decoder.register_forward_hook(self._keep_tokens)

    @property
    def needs_flow(self) -> bool:
        """Whether `track` / `forward_clip` want optical flow (from `flow_provider`)."""
        return False

    @property
    def added_parameter_prefixes(self) -> tuple[str, ...]:
        """Name prefixes of the parameters this model adds to SAM 2 (e.g. "mgp."): what it
        trains on a frozen SAM 2, and all a checkpoint of such a run keeps. Empty: SAM 2
        alone has nothing of its own to train on a frozen base."""
        return ()

    @property
    def image_encoder_trains(self) -> bool:
        """Whether any image-encoder weight is trained: when none is (a frozen SAM 2),
        `forward_clip` encodes the frames without an autograd graph."""
        return any(p.requires_grad for p in self.sam2.image_encoder.parameters())

    @property
    def image_size(self) -> int:
        return int(self.sam2.image_size)

    @property
    def tracking_candidates(self) -> int:
        """Candidate masks SAM 2's heads give on a tracked frame, by SAM 2's own rule
        (`_use_multimask` for a frame without clicks): 3 with `multimask_output_for_tracking`
        (the official SAM 2.1 configs), else 1 (the micro base)."""
        sam2 = self.sam2
        if sam2._use_multimask(is_init_cond_frame=False, point_inputs=None):
            return int(sam2.sam_mask_decoder.num_multimask_outputs)
        return 1

    def _tracked(self, is_init_cond_frame: bool, mask_inputs: torch.Tensor | None) -> bool:
        """Whether a frame runs memory attention and the SAM heads (not a prompted frame,
        nor a mask SAM 2 takes as the output without its heads)."""
        return not is_init_cond_frame and not (
            mask_inputs is not None and self.sam2.use_mask_input_as_output_without_sam
        )

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
        flow: torch.Tensor | None = None,
        frame_step: int = 1,
        spatial: SpatialMemory | None = None,
        choose: Chooser | None = None,
    ) -> dict[str, Any]:
        """One frame for a batch of objects; the result is ready to be stored in `output_dict`.

        `memory_from_low_res` encodes memory from the low-resolution mask upsampled to the
        image size, which is what `SAM2VideoPredictor` does for prompted frames. `flow`
        (current -> previous, [N, 2, S, S]) and `frame_step` (engine frames per processed
        frame) are for models that use motion and strided memory; SAM 2 ignores them.
        `spatial`: the past frames a tracked frame attends to (an inference rule's choice),
        instead of SAM 2's window or the model's own selection. `choose`: on a tracked frame,
        an inference rule's choice among SAM 2's candidates (`Candidates`); the output then
        also carries "candidates" and "choice" ([N] long, the candidate each object took).
        A `Branching` choice takes candidates of other rows: the output is then every row's
        source row's (its candidates too) and also carries "source" ([N] long).
        """
        sam2 = self.sam2
        choosing = choose is not None and self._tracked(is_init_cond_frame, mask_inputs)
        self._tokens = [] if choosing else None
        try:
            current_out, sam_outputs = self._heads(
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
            tokens = self._tokens
        finally:
            self._tokens = None
        (
            _low_res_multimasks,
            high_res_multimasks,
            ious,
            low_res_masks,
            high_res_masks,
            obj_ptr,
            object_score_logits,
        ) = sam_outputs
        if choosing:
            assert choose is not None and tokens
            candidates = self._candidates(sam_outputs, tokens[-1])
            choice = choose(candidates)
            if isinstance(choice, Branching):
                # every per-row output is the source row's, then its candidate is taken
                _check_choice(choice.source, candidates)
                candidates = candidates.branch(choice)
                high_res_multimasks, ious, object_score_logits = (
                    choice.rows(x) for x in (high_res_multimasks, ious, object_score_logits)
                )
                n = candidates.ious.shape[0]
                for key, value in current_out.items():
                    if isinstance(value, torch.Tensor) and value.shape[:1] == (n,):
                        current_out[key] = choice.rows(value)
                feats = feats.select(choice.source.to(feats.vision_feats[-1].device))
                current_out["source"] = choice.source
                choice = choice.candidate
            if choice is None:  # SAM 2's choice: its own tensors, untouched
                choice = candidates.sam2_choice
            else:
                _check_choice(choice, candidates)
                low_res_masks = Candidates.take(candidates.low_res_masks, choice)[:, None]
                high_res_masks = Candidates.take(candidates.high_res_masks, choice)[:, None]
                obj_ptr = Candidates.take(candidates.obj_ptrs, choice)
            current_out.update(candidates=candidates, choice=choice)
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
        """SAM 2's own step: memory attention and SAM heads (the override point). With a
        `spatial` selection on a tracked frame, SAM 2 builds only the object pointers and the
        spatial memory is `spatial`'s (`_replace_memory`)."""
        sam2 = self.sam2
        if self._tracked(is_init_cond_frame, mask_inputs) and spatial is not None:
            device = feats.vision_feats[-1].device
            memory, memory_pos = self._spatial_memory(frame_idx, output_dict, spatial, device)
            bias = self._memory_key_bias(frame_idx, output_dict, spatial, device)
            if spatial.valid is not None and spatial.entries:
                invalid = _invalid_rows_bias(spatial, memory.shape[0], device)
                bias = invalid if bias is None else bias + invalid
            override = _MemoryOverride(memory, memory_pos, bias)
            if spatial.key_scale is not None:
                override.scale = _spatial_key_scale(spatial, memory.shape[0], device)
            if spatial.pointers is not None:
                self._pointer_memory(frame_idx, output_dict, spatial.pointers, num_frames, override)
            if override.needs_key_hooks:
                enable_key_bias(sam2.memory_attention)
            self._memory = override
            output_dict = self._pointers_only(frame_idx, output_dict)
        try:
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
        finally:
            if self._memory is not None and self._memory.needs_key_hooks:
                set_key_bias(sam2.memory_attention, None)
                set_key_scale(sam2.memory_attention, None)
            self._memory = None
        return current_out, sam_outputs

    # ------------------------------------------------------------------ candidate choice
    def _keep_tokens(self, module: nn.Module, args: Any, output: Any) -> None:
        """Mask decoder's forward hook: its output tokens ([N, M or 1, C], from which SAM 2
        derives the object pointer), kept while `track` builds `Candidates`."""
        if self._tokens is not None:
            self._tokens.append(output[2])

    def _candidates(self, sam_outputs: tuple, tokens: torch.Tensor) -> Candidates:
        """Every candidate of SAM 2's heads on a tracked frame, with its object pointer.

        SAM 2 chooses inside `_forward_sam_heads` and derives the pointer of the chosen
        output token only. That method runs unchanged (an override would copy it and drift
        from sam2; the default path stays sam2's code): masks, IoUs and object scores come
        from its outputs as it returns them, the output tokens it does not return from a
        forward hook on its mask decoder (`_keep_tokens`), and `track` applies the choice
        to these outputs before the memory encoder runs. The pointers of the other tokens
        come from `_candidate_pointers`.
        """
        low_multi, high_multi, ious, _, _, obj_ptr, object_score_logits = sam_outputs
        m = ious.shape[1]
        sam2_choice = torch.argmax(ious, dim=-1)  # SAM 2's rule, as in _forward_sam_heads
        ptrs = self._candidate_pointers(tokens, object_score_logits, m)
        # SAM 2's own pointer for the candidate it chose: choosing it changes nothing
        is_sam2s = F.one_hot(sam2_choice, m).bool()[..., None]
        ptrs = torch.where(is_sam2s, obj_ptr[:, None].to(ptrs.dtype), ptrs)
        return Candidates(low_multi, high_multi, ious, object_score_logits, ptrs, sam2_choice)

    def _candidate_pointers(
        self, tokens: torch.Tensor, object_score_logits: torch.Tensor, m: int
    ) -> torch.Tensor:
        """The object pointer of each of `m` candidates [N, m, C] from the decoder's output
        tokens, as `SAM2Base._forward_sam_heads` derives it from the chosen one: its
        `obj_ptr_proj`, then the occlusion blend with `no_obj_ptr` by object score.

        The blend is a few lines inside `_forward_sam_heads`, not a function sam2 offers,
        so it is restated here (the projection is sam2's own module); tests pin every
        candidate's pointer to what sam2's `track_step` gives when it chooses that
        candidate. With `use_multimask_token_for_obj_ptr` off the decoder gives one token
        and every candidate gets its pointer, as in SAM 2.
        """
        sam2 = self.sam2
        n, k, c = tokens.shape
        ptrs = sam2.obj_ptr_proj(tokens.reshape(n * k, c)).view(n, k, -1).expand(-1, m, -1)
        if sam2.pred_obj_scores:
            if sam2.soft_no_obj_ptr:
                appearing = object_score_logits.sigmoid()
            else:
                appearing = (object_score_logits > 0).float()
            appearing = appearing[:, :, None]  # [N, 1, 1]: one score per object
            if sam2.fixed_no_obj_ptr:
                ptrs = appearing * ptrs
            ptrs = ptrs + (1 - appearing) * sam2.no_obj_ptr
        return ptrs

    # ------------------------------------------------------------------ spatial memory
    def _replace_memory(self, module: nn.Module, args: Any, kwargs: dict) -> Any:
        """Memory attention's pre-hook: the spatial part of SAM 2's memory (everything but
        the object pointers, which come last) replaced by the current step's assembly."""
        o = self._memory
        if o is None:
            return None
        n_ptr = kwargs.get("num_obj_ptr_tokens", 0)
        memory, memory_pos = kwargs["memory"], kwargs["memory_pos"]
        kwargs = dict(kwargs)
        if o.pointers is None:  # SAM 2's pointers, as it built them
            ptr = memory[memory.shape[0] - n_ptr :]
            ptr_pos = memory_pos[memory_pos.shape[0] - n_ptr :]
        else:
            ptr, ptr_pos = o.pointers
            n_ptr = ptr.shape[0]
            kwargs["num_obj_ptr_tokens"] = n_ptr
        kwargs["memory"] = torch.cat([o.spatial.to(memory.dtype), ptr.to(memory.dtype)])
        kwargs["memory_pos"] = torch.cat(
            [o.spatial_pos.to(memory_pos.dtype), ptr_pos.to(memory_pos.dtype)]
        )
        # for this call only: `_heads` clears them when the step ends
        n, m = o.spatial.shape[1], o.spatial.shape[0]
        if o.bias is not None or o.ptr_bias is not None:
            set_key_bias(module, _concat_keys(o.bias, o.ptr_bias, n, m, n_ptr, fill=0.0))
        if o.scale is not None or o.ptr_scale is not None:
            set_key_scale(module, _concat_keys(o.scale, o.ptr_scale, n, m, n_ptr, fill=1.0))
        return args, kwargs

    def _pointer_memory(
        self,
        frame_idx: int,
        output_dict: OutputDict,
        pointers: PointerMemory,
        num_frames: int,
        override: _MemoryOverride,
    ) -> None:
        """Object pointer tokens, position encodings, bias and scale of `pointers` (into
        `override`), as `SAM2Base._prepare_memory_conditioned_features` builds SAM 2's:
        the prompted frames' pointers first, then each object's own rows; each pointer's
        temporal encoding from its distance to the current frame (sine, normalised by the
        pointer window, through `obj_ptr_tpos_proj`), split into `C // mem_dim` tokens.
        Restated from sam2 (a few lines inside that method); a test pins it to SAM 2's
        own pointers where `pointers` lists the frames SAM 2 reads."""
        sam2 = self.sam2
        device = override.spatial.device
        cond, _ = select_closest_cond_frames(
            frame_idx, output_dict["cond_frame_outputs"], sam2.max_cond_frames_in_attn
        )
        if not sam2.training and sam2.only_obj_ptrs_in_the_past_for_eval:
            cond = {t: e for t, e in cond.items() if t <= frame_idx}
        n = override.spatial.shape[1]
        signed = sam2.use_signed_tpos_enc_to_obj_ptrs
        cond_dist = [frame_idx - t if signed else abs(frame_idx - t) for t in cond]
        ptrs = [e["obj_ptr"].to(device)[None] for e in cond.values()]
        dist = [torch.tensor(cond_dist, device=device, dtype=torch.long)[:, None].expand(-1, n)]
        k = pointers.index.shape[0]
        if k and pointers.entries:
            past = torch.stack([e["obj_ptr"] for e in pointers.entries]).to(device)
            ptrs.append(past[pointers.index.to(device), torch.arange(n, device=device)])
            dist.append(pointers.distance.to(device).long().expand(k, n))
        else:
            k = 0
        c = len(cond)
        if not ptrs or c + k == 0:
            empty = override.spatial.new_zeros(0, n, sam2.mem_dim)
            override.pointers = (empty, empty)
            return
        ptr = torch.cat(ptrs)  # [c + k, N, C]
        distance = torch.cat(dist)  # [c + k, N]
        width = ptr.shape[-1]
        if sam2.add_tpos_enc_to_obj_ptrs:
            t_diff_max = min(num_frames, sam2.max_obj_ptrs_in_encoder) - 1
            tpos_dim = width if sam2.proj_tpos_enc_in_obj_ptrs else sam2.mem_dim
            if bool((distance == distance[:, :1]).all()):
                # one row per pointer frame, as SAM 2 projects them: the projection's rows
                # then round as SAM 2's do (a GEMM of another height may not)
                pe = get_1d_sine_pe(distance[:, 0] / t_diff_max, dim=tpos_dim)
                pos = sam2.obj_ptr_tpos_proj(pe)[:, None].expand(-1, n, -1)
            else:
                pe = get_1d_sine_pe(distance.flatten() / t_diff_max, dim=tpos_dim)
                pos = sam2.obj_ptr_tpos_proj(pe).view(c + k, n, sam2.mem_dim)
        else:
            pos = ptr.new_zeros(c + k, n, sam2.mem_dim)
        split = 1
        if sam2.mem_dim < width:
            split = width // sam2.mem_dim
            ptr = ptr.reshape(-1, n, split, sam2.mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
            pos = pos.repeat_interleave(split, dim=0)
        override.pointers = (ptr, pos)
        # no bias where every row holds a frame: SAM 2's unmasked attention kernel, which
        # rounds apart from the masked one
        if pointers.valid is not None and k and not bool(pointers.valid.all()):
            rows = torch.zeros(c + k, n, device=device)
            rows[c:] = rows[c:].masked_fill(~pointers.valid.to(device), float("-inf"))
            override.ptr_bias = rows.T.repeat_interleave(split, dim=1)
        if pointers.key_scale is not None:
            scale = pointers.key_scale.to(device, torch.float32)
            rows = torch.cat([scale[:1].expand(c, n), scale[1 : 1 + k]])
            override.ptr_scale = rows.T.repeat_interleave(split, dim=1)

    def _pointers_only(self, frame_idx: int, output_dict: OutputDict) -> OutputDict:
        """The bank as SAM 2's memory assembly sees it while the hook supplies the spatial
        memory: the entries SAM 2 reads memory features from (every prompted frame, its
        window of recent frames) carry empty ones ([N, C, 0, 0], same dtype and device),
        so it builds only the object pointers, by its own rule, and no spatial memory (at
        1024 px, megabytes a frame) for the hook to discard."""
        sam2 = self.sam2
        stride = 1 if sam2.training else sam2.memory_temporal_stride_for_eval
        window = {frame_idx - 1} | {
            ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
            for t_rel in range(2, sam2.num_maskmem)
        }

        empties: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # one per layout

        def empty(entry: dict[str, Any]) -> dict[str, Any]:
            feats = entry.get("maskmem_features")
            if feats is None:
                return entry
            pos = entry["maskmem_pos_enc"][-1]
            layout = (feats.shape[:2], feats.dtype, feats.device, pos.shape[:2], pos.dtype)
            if layout not in empties:
                empties[layout] = (feats[..., :0, :0], pos[..., :0, :0])
            feats, pos = empties[layout]
            return {**entry, "maskmem_features": feats, "maskmem_pos_enc": [pos]}

        non_cond = dict(output_dict["non_cond_frame_outputs"])
        for t in window & non_cond.keys():
            non_cond[t] = empty(non_cond[t])
        return {
            "cond_frame_outputs": {
                t: empty(e) for t, e in output_dict["cond_frame_outputs"].items()
            },
            "non_cond_frame_outputs": non_cond,
        }

    def _spatial_memory(
        self,
        frame_idx: int,
        output_dict: OutputDict,
        spatial: SpatialMemory,
        device: torch.device,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Spatial memory tokens [M, N, C] and their position encodings: the prompted frames
        SAM 2 selects (in their slot), then `spatial`'s kept frames oldest first, as SAM 2
        orders its window."""
        sam2 = self.sam2
        selected_cond, _ = select_closest_cond_frames(
            frame_idx, output_dict["cond_frame_outputs"], sam2.max_cond_frames_in_attn
        )
        # [frames, h * w, N, C] per part, concatenated once, then flattened (a view)
        memory, memory_pos = [], []
        tpos = sam2.maskmem_tpos_enc  # [num_maskmem, 1, 1, C]: index = distance slot
        for e in selected_cond.values():  # prompted frames take the farthest slot
            memory.append(e["maskmem_features"].to(device).flatten(2).permute(2, 0, 1)[None])
            pos = e["maskmem_pos_enc"][-1].to(device).flatten(2).permute(2, 0, 1)
            memory_pos.append((pos + tpos[sam2.num_maskmem - 1])[None])
        if spatial.entries:
            # kept frames, oldest first [k, N, C, h, w] -> [k, h * w, N, C]
            mem = spatial.gather(lambda e: e["maskmem_features"], device, oldest_first=True)
            k = mem.shape[0]
            encodings = [e["maskmem_pos_enc"][-1] for e in spatial.entries]
            if all(p is encodings[0] for p in encodings):  # one for every frame (the bank's)
                pos = encodings[0].to(device).flatten(2).permute(2, 0, 1)[None]  # [1, hw, N, C]
            else:
                pos = spatial.gather(lambda e: e["maskmem_pos_enc"][-1], device, oldest_first=True)
                pos = pos.flatten(3).permute(0, 3, 1, 2)
            memory.append(mem.flatten(3).permute(0, 3, 1, 2))
            if spatial.slots is None:  # by rank: the r-th most recent takes the slot of t-r
                slot_enc = tpos[:k]
            else:  # the slot of t-d is encoding d - 1; the last past slot is num_maskmem - 2;
                # slot 0 is the prompted frames' (num_maskmem - 1)
                slots = spatial.slots.to(tpos.device)
                past = slots.clamp(1, sam2.num_maskmem - 1) - 1
                index = torch.where(slots == 0, sam2.num_maskmem - 1, past)
                slot_enc = tpos[index.view(k, -1)][:, :, 0, 0][:, None]  # [k, 1, 1|N, C]
            memory_pos.append(pos + slot_enc.flip(0))
        return torch.cat(memory).flatten(0, 1), torch.cat(memory_pos).flatten(0, 1)

    def _memory_key_bias(
        self,
        frame_idx: int,
        output_dict: OutputDict,
        spatial: SpatialMemory,
        device: torch.device,
    ) -> torch.Tensor | None:
        """An additive attention bias [N, M] on `_spatial_memory`'s tokens (a model's pixel
        filter), or None: SAM 2 has none."""
        return None

    # ------------------------------------------------------------------ memory bank
    def memory_entry(self, out: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
        """What the streaming memory bank keeps of a frame (what SAM2VideoPredictor keeps)."""
        maskmem = out["maskmem_features"]
        if maskmem is not None:
            maskmem = maskmem.to(dtype)
        return {
            "maskmem_features": maskmem,
            "maskmem_pos_enc": self._shared_pos_enc(out["maskmem_pos_enc"]),
            "pred_masks": out["pred_masks"],
            "obj_ptr": out["obj_ptr"],
            "object_score_logits": out["object_score_logits"],
        }

    def _shared_pos_enc(self, pos: list[torch.Tensor] | None) -> list[torch.Tensor] | None:
        """One stored memory position encoding per layout for every frame of the bank.

        SAM 2's memory encoder computes it from the feature size alone (a sine encoding),
        so every frame's is the same; SAM2VideoPredictor keeps one for the whole video
        too. Sharing it saves its memory per stored frame, and `_spatial_memory` reads
        it once instead of gathering one equal copy per kept frame.
        """
        if pos is None:
            return None
        layout = tuple((p.shape, p.dtype, p.device) for p in pos)
        shared = self._pos_enc.get(layout)
        if shared is None:
            if len(self._pos_enc) >= 8:  # e.g. a new video with other object counts
                self._pos_enc.clear()
            shared = self._pos_enc[layout] = pos
        return shared

    def memory_horizon(
        self, next_frame: int, num_frames: int, frame_step: int = 1
    ) -> tuple[int, int]:
        """(oldest frame whose memory features, oldest whose object pointer) frame
        `next_frame` or any later frame can still read; older entries can be dropped."""
        sam2 = self.sam2
        stride = 1 if sam2.training else sam2.memory_temporal_stride_for_eval
        nxt = next_frame
        oldest_mem = min(nxt - 1, ((nxt - 2) // stride) * stride - (sam2.num_maskmem - 3) * stride)
        oldest_ptr = nxt
        if sam2.use_obj_ptrs_in_encoder:
            oldest_ptr = nxt - (min(num_frames, sam2.max_obj_ptrs_in_encoder) - 1)
        return oldest_mem, oldest_ptr

    # ------------------------------------------------------------------ training clips
    def forward_clip(
        self,
        frames: torch.Tensor,
        object_clip: torch.Tensor,
        first_frame_prompt: dict[str, Any],
        flows: torch.Tensor | None = None,
        frame_step: int = 1,
    ) -> list[dict[str, Any]]:
        """Track N objects through their clips, prompted on frame 0; nothing is detached.

        frames: [B, T, 3, S, S]; object_clip: [N] clip index of each object;
        first_frame_prompt: {"point_inputs": ...} or {"mask_inputs": [N, 1, S, S]};
        flows: optional [B, T, 2, S, S], flow of each frame to the one before it.
        Returns one output dict per frame ([N, ...] tensors).
        """
        t = frames.shape[1]
        # A frozen image encoder (model=mosam) keeps no autograd graph, whatever the input.
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.image_encoder_trains):
            all_feats = self.encode_images(frames.flatten(0, 1))
        output_dict = new_output_dict()
        outputs = []
        for i in range(t):
            feats = all_feats.select(object_clip * t + i)
            flow = flows[object_clip, i] if flows is not None and i > 0 else None
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
                out = self.track(i, feats, output_dict, t, flow=flow, frame_step=frame_step)
                output_dict["non_cond_frame_outputs"][i] = out
            outputs.append(out)
        return outputs


@dataclass
class _MemoryOverride:
    """What the memory attention's pre-hook (`_replace_memory`) puts in place of SAM 2's
    memory for one step: spatial tokens [M, N, C] and positions, optionally an additive key
    bias and a key scale [N, M] on them, and the object pointers' tokens and positions
    (None: SAM 2's own) with their bias and scale [N, P] (None: 0 and 1)."""

    spatial: torch.Tensor
    spatial_pos: torch.Tensor
    bias: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    pointers: tuple[torch.Tensor, torch.Tensor] | None = None
    ptr_bias: torch.Tensor | None = None
    ptr_scale: torch.Tensor | None = None

    @property
    def needs_key_hooks(self) -> bool:
        """Whether the attention must take a key bias or scale this step."""
        return any(x is not None for x in (self.bias, self.scale, self.ptr_bias, self.ptr_scale))


def _concat_keys(
    spatial: torch.Tensor | None,
    pointers: torch.Tensor | None,
    n: int,
    m: int,
    n_ptr: int,
    fill: float,
) -> torch.Tensor:
    """A per-key tensor [N, M + P] from the spatial part [N, M] and the pointers' [N, P],
    `fill` where a part is None."""
    if pointers is None:
        assert spatial is not None
        return F.pad(spatial, (0, n_ptr), value=fill)
    if spatial is None:
        return F.pad(pointers, (m, 0), value=fill)
    return torch.cat([spatial, pointers.to(spatial.dtype)], 1)


def _spatial_key_scale(
    spatial: SpatialMemory, num_tokens: int, device: torch.device
) -> torch.Tensor:
    """The key scale [N, num_tokens] of a `SpatialMemory`'s `key_scale` rows, in
    `_spatial_memory`'s token order (the prompted frames' tokens first, then kept frames
    oldest first, each frame's h * w tokens)."""
    scale = spatial.key_scale.to(device, torch.float32)
    n = scale.shape[1]
    k = spatial.index.shape[0] if spatial.index is not None else len(spatial.entries)
    hw = spatial.entries[0]["maskmem_features"][0, 0].numel() if spatial.entries else 0
    kept = scale[1 : 1 + k].flip(0).T.repeat_interleave(hw, dim=1)  # [N, k * hw]
    cond = scale[0][:, None].expand(n, num_tokens - k * hw)
    return torch.cat([cond, kept], 1)


def _invalid_rows_bias(
    spatial: SpatialMemory, num_tokens: int, device: torch.device
) -> torch.Tensor:
    """The key bias [N, num_tokens] of a `SpatialMemory` with `valid` rows: 0 on the
    prompted frames' tokens (first) and on valid rows' tokens, -inf on invalid rows', in
    `_spatial_memory`'s order (kept frames oldest first, each frame's h * w tokens)."""
    valid = spatial.valid.to(device)
    k, n = valid.shape
    hw = spatial.entries[0]["maskmem_features"][0, 0].numel()
    rows = torch.zeros(k, n, device=device).masked_fill(~valid, float("-inf"))
    kept = rows.flip(0).T.repeat_interleave(hw, dim=1)  # [N, k * hw]
    return torch.cat([kept.new_zeros(n, num_tokens - k * hw), kept], 1)


def _check_choice(choice: torch.Tensor, candidates: Candidates) -> None:
    """A rule's choice must index one candidate per object (checked on shape and dtype,
    which needs no host sync)."""
    n = candidates.ious.shape[0]
    if choice.shape != (n,) or choice.dtype != torch.long:
        raise ValueError(
            f"a candidate choice must be a long tensor [{n}] (one index < "
            f"{candidates.num_candidates} per object), got {choice.dtype} "
            f"{tuple(choice.shape)}. Fix: return e.g. `scores.argmax(1)` from the rule's "
            f"choose, or None for SAM 2's choice."
        )
