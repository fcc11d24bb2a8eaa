"""Pixel filtering inside SAM 2's memory attention, as an additive bias on the keys.

Why a bias and not feature gating: scaling a memory token's features does not stop the
current frame from attending to it (a zeroed key still takes exp(0) of the softmax, and its
position encoding remains); adding log(confidence) to its attention logits multiplies its
attention weight by the confidence and hands the rest to the reliable tokens, which is
what "suppress an unreliable memory pixel" means. With no bias set, the layer is SAM 2's.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from sam2.modeling.memory_attention import MemoryAttention
from sam2.modeling.sam.transformer import RoPEAttention, apply_rotary_enc


class KeyBiasRoPEAttention(RoPEAttention):
    """SAM 2's `RoPEAttention.forward` with an optional bias per key token.

    `key_bias`: [B, num_keys] added to every head's and query's attention logits.
    `key_scale`: [B, num_keys] multiplying each key token as the layer receives it (memory
    plus its position encoding), before the key projection; values are left alone (an
    inference rule's weighting of memory frames, e.g. by their object score).
    The class is swapped onto existing instances (`enable_key_bias`), so parameters and
    state-dict keys are SAM 2's own.
    """

    key_bias: torch.Tensor | None = None
    key_scale: torch.Tensor | None = None

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int = 0
    ) -> torch.Tensor:
        scale = self.key_scale
        if scale is not None:
            if scale.shape != k.shape[:2]:
                raise ValueError(
                    f"key_scale {tuple(scale.shape)} does not match keys {tuple(k.shape)}"
                )
            k = k * scale[..., None].to(k.dtype)
        bias = self.key_bias
        if bias is None:
            return super().forward(q, k, v, num_k_exclude_rope)
        q = self._separate_heads(self.q_proj(q), self.num_heads)
        k = self._separate_heads(self.k_proj(k), self.num_heads)
        v = self._separate_heads(self.v_proj(v), self.num_heads)
        w = h = math.sqrt(q.shape[-2])
        self.freqs_cis = self.freqs_cis.to(q.device)
        if self.freqs_cis.shape[0] != q.shape[-2]:
            self.freqs_cis = self.compute_cis(end_x=w, end_y=h).to(q.device)
        num_k_rope = k.size(-2) - num_k_exclude_rope
        q, k[:, :, :num_k_rope] = apply_rotary_enc(
            q, k[:, :, :num_k_rope], freqs_cis=self.freqs_cis, repeat_freqs_k=self.rope_k_repeat
        )
        if bias.shape != (k.shape[0], k.shape[-2]):
            raise ValueError(f"key_bias {tuple(bias.shape)} does not match keys {tuple(k.shape)}")
        dropout_p = self.dropout_p if self.training else 0.0
        mask = bias[:, None, None, :].to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        return self.out_proj(self._recombine_heads(out))


def enable_key_bias(memory_attention: MemoryAttention) -> None:
    """Let every memory cross-attention layer take a key bias (no-op until one is set)."""
    for layer in memory_attention.layers:
        attn = layer.cross_attn_image
        if not isinstance(attn, RoPEAttention):
            raise TypeError(f"memory cross-attention is {type(attn).__name__}, not RoPEAttention")
        attn.__class__ = KeyBiasRoPEAttention


def set_key_bias(memory_attention: MemoryAttention, bias: torch.Tensor | None) -> None:
    """Bias [B, num_keys] for the memory cross-attention's next calls (None: no bias)."""
    for layer in memory_attention.layers:
        layer.cross_attn_image.key_bias = bias


def set_key_scale(memory_attention: MemoryAttention, scale: torch.Tensor | None) -> None:
    """Scale [B, num_keys] of the memory cross-attention's key tokens for its next calls
    (None: unscaled); `enable_key_bias` first."""
    for layer in memory_attention.layers:
        layer.cross_attn_image.key_scale = scale


@contextlib.contextmanager
def key_bias(memory_attention: MemoryAttention, bias: torch.Tensor | None) -> Iterator[None]:
    """Apply `bias` [B, num_keys] in the memory cross-attention for the enclosed calls."""
    set_key_bias(memory_attention, bias)
    try:
        yield
    finally:
        set_key_bias(memory_attention, None)
