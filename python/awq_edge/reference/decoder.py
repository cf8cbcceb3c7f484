"""A plain functional LLaMA-family decoder in float32: the reference the quantizer and fast kernels are checked
against.

Weights follow nn.Linear's convention, (out, in), and canonical names (docs/FORMAT.md section 6). Shapes:
B batch, T tokens, H hidden_size, D head_dim, nh / nkv query / key-value heads, I intermediate_size, V vocab.
Attention is full causal attention; for Mistral this equals its sliding-window attention while T <= sliding_window.
"""

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from awq_edge.models.config import ModelConfig

# ---------------------------------------------------------------------------------------------------- rotary embedding


def rope_inv_freq(config: ModelConfig) -> tuple[Tensor, float]:
    """Inverse frequencies (D/2,) float32 and the factor cos/sin are scaled by (1.0 for every supported type)."""
    rope, dim = config.rope, config.head_dim
    inv_freq = 1.0 / (rope["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    if rope["rope_type"] == "linear":
        inv_freq = inv_freq / rope["factor"]  # same as dividing the positions by factor
    elif rope["rope_type"] == "llama3":
        inv_freq = _llama3_inv_freq(inv_freq, rope)
    return inv_freq, 1.0


def _llama3_inv_freq(inv_freq: Tensor, rope: dict) -> Tensor:
    """Llama 3.1: slow frequencies (wavelength above original_max / low_freq_factor) are divided by factor, fast
    ones (wavelength below original_max / high_freq_factor) are kept, and those between are interpolated."""
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old_context = rope["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    smooth = (old_context / wavelen - low) / (high - low)  # 0 at the slow edge of the band, 1 at the fast edge
    smoothed = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    scaled = torch.where(wavelen > old_context / low, inv_freq / factor, inv_freq)
    in_band = (wavelen >= old_context / high) & (wavelen <= old_context / low)
    return torch.where(in_band, smoothed, scaled)


def rope_cos_sin(config: ModelConfig, positions: Tensor) -> tuple[Tensor, Tensor]:
    """cos, sin (T, D) for positions (T,), both halves of D repeating the D/2 frequencies (HF "rotate_half")."""
    inv_freq, scaling = rope_inv_freq(config)
    freqs = positions.float()[:, None] * inv_freq[None, :]  # (T, D/2)
    angles = torch.cat([freqs, freqs], dim=-1)  # (T, D)
    return angles.cos() * scaling, angles.sin() * scaling


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotates x (B, n_heads, T, D): pairs are (x[i], x[i + D/2])."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return x * cos + rotated * sin


# -------------------------------------------------------------------------------------------------------------- blocks


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """x (..., H) scaled to unit root mean square, times weight (H,)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _linear(x: Tensor, w: Mapping[str, Tensor], name: str) -> Tensor:
    return F.linear(x, w[name], w.get(f"{name}_bias"))


def attention_heads(h: Tensor, w: Mapping[str, Tensor], config: ModelConfig, cos: Tensor, sin: Tensor) -> Tensor:
    """Causal grouped-query attention of h (B, T, H), already normed, before the o projection: the heads'
    outputs concatenated, (B, T, nh*D). w: "q" (nh*D, H), "k", "v" (nkv*D, H), optional "q_bias", "k_bias",
    "v_bias"."""
    B, T, _ = h.shape
    nh, nkv, D = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    q = _linear(h, w, "q").view(B, T, nh, D).transpose(1, 2)  # (B, nh, T, D)
    k = _linear(h, w, "k").view(B, T, nkv, D).transpose(1, 2)  # (B, nkv, T, D)
    v = _linear(h, w, "v").view(B, T, nkv, D).transpose(1, 2)  # (B, nkv, T, D)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    k = k.repeat_interleave(nh // nkv, dim=1)  # (B, nh, T, D): query head j reads kv head j // (nh / nkv)
    v = v.repeat_interleave(nh // nkv, dim=1)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0 / math.sqrt(D))  # (B, nh, T, D)
    return out.transpose(1, 2).reshape(B, T, nh * D)


def self_attention(h: Tensor, w: Mapping[str, Tensor], config: ModelConfig, cos: Tensor, sin: Tensor) -> Tensor:
    """attention_heads followed by the o projection: w adds "o" (H, nh*D) and optional "o_bias"."""
    return _linear(attention_heads(h, w, config, cos, sin), w, "o")  # (B, T, H)


def mlp(h: Tensor, w: Mapping[str, Tensor]) -> Tensor:
    """SwiGLU of h (B, T, H), already normed. w: "gate", "up" (I, H), "down" (H, I), optional "*_bias"."""
    return _linear(F.silu(_linear(h, w, "gate")) * _linear(h, w, "up"), w, "down")


def decoder_layer(x: Tensor, layer: Mapping[str, Tensor], config: ModelConfig, cos: Tensor, sin: Tensor) -> Tensor:
    """One pre-norm block on the residual stream x (B, T, H); `layer` as returned by `layer_weights`."""
    x = x + self_attention(rms_norm(x, layer["attn_norm"], config.rms_norm_eps), layer, config, cos, sin)
    return x + mlp(rms_norm(x, layer["mlp_norm"], config.rms_norm_eps), layer)


# --------------------------------------------------------------------------------------------------------------- model

_LAYER_TENSORS = {"attn_norm": "attn_norm", "mlp_norm": "mlp_norm", "attn.q": "q", "attn.k": "k", "attn.v": "v",
                  "attn.o": "o", "mlp.gate": "gate", "mlp.up": "up", "mlp.down": "down"}


def layer_weights(weights: Mapping[str, Tensor], i: int) -> dict[str, Tensor]:
    """Layer i's tensors as float32, keyed the way the blocks read them: "layers.i.attn.q.weight" -> "q",
    "layers.i.attn.q.bias" -> "q_bias", "layers.i.attn_norm.weight" -> "attn_norm", ..."""
    layer = {}
    for canonical, short in _LAYER_TENSORS.items():
        layer[short] = weights[f"layers.{i}.{canonical}.weight"].float()
        bias = weights.get(f"layers.{i}.{canonical}.bias")
        if bias is not None:
            layer[f"{short}_bias"] = bias.float()
    return layer


def decoder_forward(input_ids: Tensor, weights: Mapping[str, Tensor], config: ModelConfig) -> Tensor:
    """Logits (B, T, V) float32 for input_ids (B, T) at positions 0..T-1. `weights` maps canonical names to tensors
    of any float dtype; "lm_head.weight" is read only when the embeddings are untied."""
    embed = weights["embed.weight"].float()  # (V, H)
    lm_head = embed if config.tie_word_embeddings else weights["lm_head.weight"].float()  # (V, H)
    cos, sin = rope_cos_sin(config, torch.arange(input_ids.shape[1]))
    x = F.embedding(input_ids, embed)  # (B, T, H)
    for i in range(config.num_hidden_layers):
        x = decoder_layer(x, layer_weights(weights, i), config, cos, sin)
    return F.linear(rms_norm(x, weights["norm.weight"].float(), config.rms_norm_eps), lm_head)
