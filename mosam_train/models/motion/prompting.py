"""Motion-Guided Prompting: the sparse and dense branches combined into SAM 2 prompts.

How the prompts enter SAM 2. On a tracked frame SAM 2 feeds its mask decoder two prompt
tokens (an empty click and the padding token) and a dense embedding (`no_mask_embed`).
MGP adds its sparse tokens to those two tokens and its dense map to the dense embedding,
right after SAM 2's prompt encoder. Adding, rather than concatenating extra tokens, is what
lets a fresh MGP (zero output layers) leave SAM 2's output bit-for-bit unchanged: an extra
token takes part in every attention softmax of the decoder even when it is zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mosam_train.models.motion.dense import DenseMotionEncoder, warp_backward
from mosam_train.models.motion.sparse import SparseMotionEncoder, forecast_heatmap

# how MGP's push is scaled by the object's visibility (see `MotionGuidedPrompting`)
VISIBILITY_GATES = ("learned", "object_score", "none")
#: the oracle gate, eval only (`MoSAMTracker.set_rules`): each object's true presence in the
#: current frame, the bound a learned gate could reach
TRUTH_GATE = "truth"


@dataclass
class MotionPrompt:
    """What MGP gives one frame's objects.

    sparse: [N, 2, D] residual for SAM 2's prompt tokens; dense: [N, D, h, w];
    region: [N, 1, S, S] in [0, 1], where motion puts the object (for the memory head's
    forecast-agreement input); None where the branch is off or has no input.
    visibility: [N] logit of "the object is visible in this frame" from the learned gate
    (trained on ground-truth presence), None with any other gate.
    """

    sparse: torch.Tensor | None = None
    dense: torch.Tensor | None = None
    region: torch.Tensor | None = None
    forecast: torch.Tensor | None = None
    visibility: torch.Tensor | None = None


class MotionGuidedPrompting(nn.Module):
    """`sparse` / `dense` switch the branches; both off is not a valid MGP (use mgp=null).

    Visibility gate: both branches forecast "the object is here" from past masks and flow;
    while the object is hidden that pushes the decoder to segment whatever covers it, and a
    false positive becomes the next frame's warped prior. So their outputs are scaled by a
    visibility probability: `visibility="object_score"` uses SAM 2's own belief (sigmoid
    of the previous frame's object-score logit); `"learned"` (default) adds to that logit a
    learned correction from the object scores of the last `history` frames and the sparse
    forecast's centroid, trained on ground-truth presence, so it can open again where
    motion predicts a re-emergence; `"none"` does not gate (the ablation). The correction's
    last layer starts at zero.
    """

    def __init__(
        self,
        prompt_dim: int,
        embed_size: tuple[int, int],
        image_size: int,
        sparse: bool = True,
        dense: bool = True,
        history: int = 4,
        hidden: int = 128,
        dense_hidden: int = 32,
        hold_last_visible: bool = True,
        visibility: str = "learned",
        visibility_hidden: int = 32,
    ) -> None:
        super().__init__()
        if not (sparse or dense):
            raise ValueError("MGP needs the sparse or the dense branch (or set model.mgp=null)")
        if visibility not in VISIBILITY_GATES:
            raise ValueError(
                f"model.mgp.visibility={visibility!r}: unknown gate. Fix: one of "
                f"{', '.join(VISIBILITY_GATES)}."
            )
        self.embed_size = tuple(embed_size)
        self.image_size = int(image_size)
        self.history = int(history)
        self.sparse = (
            SparseMotionEncoder(prompt_dim, history, hidden, hold_last_visible=hold_last_visible)
            if sparse
            else None
        )
        self.dense = DenseMotionEncoder(prompt_dim, dense_hidden) if dense else None
        self.visibility = visibility
        self.visibility_head = None
        if visibility == "learned":
            # inputs: tanh-squashed object scores of the history, forecast centroid, has one
            self.visibility_head = nn.Sequential(
                nn.Linear(self.history + 3, visibility_hidden),
                nn.GELU(),
                nn.Linear(visibility_hidden, 1),
            )
            nn.init.zeros_(self.visibility_head[-1].weight)
            nn.init.zeros_(self.visibility_head[-1].bias)

    @property
    def needs_flow(self) -> bool:
        return self.dense is not None

    def forward(
        self,
        traj: torch.Tensor | None,
        present: torch.Tensor | None,
        prev_logits: torch.Tensor | None,
        flow: torch.Tensor | None,
        prompt_encoder: nn.Module,
        scores: torch.Tensor | None = None,
        presence: torch.Tensor | None = None,
    ) -> MotionPrompt:
        """traj [N, L, K, 2], present [N, L]: keypoint history (oldest first; None when the
        sparse branch is off);
        prev_logits [N, 1, S, S]: the previous frame's mask logits; flow [N, 2, S, S]
        current -> previous; scores [N, L]: SAM 2's object-score logits of the last L
        frames, oldest first (for the visibility gate; None: no gate); presence [N] bool:
        each object's true presence (the `TRUTH_GATE` only; None where not annotated: SAM
        2's object score then)."""
        out = MotionPrompt()
        size = self.image_size
        if self.sparse is not None:
            out.forecast, out.sparse = self.sparse(traj, present, prompt_encoder, size)
            out.region = forecast_heatmap(out.forecast, size, weight=present[:, -1])
        if self.dense is not None and prev_logits is not None and flow is not None:
            prior = warp_backward(torch.sigmoid(prev_logits), flow)
            box = out.region if out.region is not None else torch.zeros_like(prior)
            out.dense = self.dense(prior, box, flow, self.embed_size)
            out.region = prior
        if self.visibility != "none" and scores is not None:
            logit = scores[:, -1].float()
            if self.visibility_head is not None:
                logit = logit + self.visibility_head(self._gate_inputs(scores, out.forecast))[:, 0]
                out.visibility = logit
            gate = torch.sigmoid(logit)
            if self.visibility == TRUTH_GATE and presence is not None:
                gate = presence.to(gate)
            if out.sparse is not None:
                out.sparse = out.sparse * gate[:, None, None].to(out.sparse.dtype)
            if out.dense is not None:
                out.dense = out.dense * gate[:, None, None, None].to(out.dense.dtype)
        return out

    def _gate_inputs(self, scores: torch.Tensor, forecast: torch.Tensor | None) -> torch.Tensor:
        """[N, L + 3]: object scores squashed to (-1, 1), the forecast centroid, whether
        there is a forecast (zeros without the sparse branch)."""
        n = scores.shape[0]
        centroid = scores.new_zeros(n, 2) if forecast is None else forecast[:, 0].float()
        has = scores.new_full((n, 1), float(forecast is not None))
        return torch.cat([torch.tanh(scores.float() / 4), centroid, has], 1)
