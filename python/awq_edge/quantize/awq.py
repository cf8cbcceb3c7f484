"""AWQ for one decoder layer: activation statistics, the scale search, folding, the clipping search.

A layer has four scale groups. Each scales some input channels of its linears up by s and folds
1/s into the op that produces those channels, which leaves the float model unchanged:

    group     previous op (gets 1/s)         scaled linears (input cols * s)   loss measured on
    attn_in   attn_norm weight               q, k, v                           attention output
    o_in      v rows (and bias)              o                                 o output
    mlp_in    mlp_norm weight                gate, up                          MLP output
    down_in   up rows (and bias)             down                              down output

o_in under grouped-query attention: o's input channel (head h, dim d) carries v's output channel
(kv head h // (n_heads / n_kv_heads), d), so o's scales repeat one kv-sized vector over the query
heads that share a kv head; the fold onto v stays exact.

The search (Lin et al. 2024, section 3.2): s = mean|x|^alpha, normalised, for alpha in
{0, 1/n_grid, ..., (n_grid-1)/n_grid}; the alpha whose quantized linears give the lowest mean
squared error of the group's output wins (alpha = 0 is plain round-to-nearest).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..models import ModelConfig
from ..reference.decoder import attention_heads, mlp, rms_norm, self_attention
from .grouped import fake_quantize


@dataclass
class LayerFeatures:
    """Inputs of a layer's linears on the calibration samples, (n_samples, seqlen, channels) float32."""
    attn_in: torch.Tensor   # normed residual, input of q, k, v
    o_in: torch.Tensor      # attention heads concatenated, input of o
    mlp_in: torch.Tensor    # normed residual, input of gate, up
    down_in: torch.Tensor   # silu(gate) * up, input of down


def layer_forward(x: torch.Tensor, layer: dict, config: ModelConfig, cos, sin, chunk: int = 8):
    """The float layer on x (n, T, H): returns (output (n, T, H), LayerFeatures)."""
    outs, feats = [], {name: [] for name in LayerFeatures.__dataclass_fields__}
    for start in range(0, x.shape[0], chunk):
        xc = x[start: start + chunk]
        attn_in = rms_norm(xc, layer["attn_norm"], config.rms_norm_eps)
        o_in = attention_heads(attn_in, layer, config, cos, sin)
        h = xc + F.linear(o_in, layer["o"], layer.get("o_bias"))
        mlp_in = rms_norm(h, layer["mlp_norm"], config.rms_norm_eps)
        down_in = F.silu(F.linear(mlp_in, layer["gate"], layer.get("gate_bias"))) * \
            F.linear(mlp_in, layer["up"], layer.get("up_bias"))
        outs.append(h + F.linear(down_in, layer["down"], layer.get("down_bias")))
        for name, value in (("attn_in", attn_in), ("o_in", o_in), ("mlp_in", mlp_in), ("down_in", down_in)):
            feats[name].append(value)
    return torch.cat(outs), LayerFeatures(**{name: torch.cat(v) for name, v in feats.items()})


def channel_means(x: torch.Tensor) -> torch.Tensor:
    """Mean |activation| per input channel over every token: (..., C) -> (C,)."""
    return x.abs().reshape(-1, x.shape[-1]).mean(dim=0)


def kv_channel_means(o_in_means: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """o's input means (n_heads * D,) averaged over the query heads sharing each kv head -> (n_kv * D,)."""
    nh, nkv, d = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    return o_in_means.view(nkv, nh // nkv, d).mean(dim=1).reshape(nkv * d)


def expand_kv_scales(kv_scales: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """(n_kv * D,) -> (n_heads * D,): query head h uses kv head h // (n_heads / n_kv)."""
    nh, nkv, d = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    return kv_scales.view(nkv, 1, d).expand(nkv, nh // nkv, d).reshape(nh * d)


SCALE_GROUPS = {  # group -> (previous op, which gets 1/s; the linears whose input columns get s)
    "attn_in": ("attn_norm", ("q", "k", "v")),
    "o_in": ("v", ("o",)),
    "mlp_in": ("mlp_norm", ("gate", "up")),
    "down_in": ("up", ("down",)),
}


def column_scales(group: str, s: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """The scales of the group's linears' input columns ("o_in" is searched at kv size)."""
    return expand_kv_scales(s, config) if group == "o_in" else s


def apply_scales(layer: dict, scales: dict, config: ModelConfig) -> None:
    """Fold per-group scales into `layer` in place; the float layer computes the same function after.
    scales: group name -> s, with "o_in" of kv size (n_kv * D,)."""
    for group, s in scales.items():
        previous, linears = SCALE_GROUPS[group]
        weight = layer[previous]
        layer[previous] = weight / (s if weight.ndim == 1 else s[:, None])  # a norm weight, or a linear's rows
        if f"{previous}_bias" in layer:
            layer[f"{previous}_bias"] = layer[f"{previous}_bias"] / s
        for name in linears:
            layer[name] = layer[name] * column_scales(group, s, config)


def scale_features(features: LayerFeatures, scales: dict, config: ModelConfig) -> None:
    """The linears' inputs after folding: each divided by its group's scales."""
    for group, s in scales.items():
        setattr(features, group, getattr(features, group) / column_scales(group, s, config))


def _candidate_scales(means: torch.Tensor, ratio: float) -> torch.Tensor:
    s = means.pow(ratio).clamp(min=1e-4)
    return s / (s.max() * s.min()).sqrt()


def search_layer_scales(layer: dict, features: LayerFeatures, config: ModelConfig, cos, sin, bits: int,
                        group_size: int, n_grid: int = 20, search_samples: int = None) -> tuple:
    """The best scales of each group (searched on the float layer), and the loss per ratio per group."""
    sub = slice(0, search_samples)
    means = {
        "attn_in": channel_means(features.attn_in),
        "o_in": kv_channel_means(channel_means(features.o_in), config),
        "mlp_in": channel_means(features.mlp_in),
        "down_in": channel_means(features.down_in),
    }
    attn_in, o_in = features.attn_in[sub], features.o_in[sub]
    mlp_in, down_in = features.mlp_in[sub], features.down_in[sub]
    forwards = {
        "attn_in": (lambda w: self_attention(attn_in, w, config, cos, sin)),
        "o_in": (lambda w: F.linear(o_in, w["o"], w.get("o_bias"))),
        "mlp_in": (lambda w: mlp(mlp_in, w)),
        "down_in": (lambda w: F.linear(down_in, w["down"], w.get("down_bias"))),
    }
    best, losses = {}, {}
    for group, forward in forwards.items():
        with torch.no_grad():
            reference = forward(layer)
            losses[group] = []
            best_loss = float("inf")
            for step in range(n_grid):
                s = _candidate_scales(means[group], step / n_grid)
                columns = column_scales(group, s, config)
                trial = dict(layer)
                for name in SCALE_GROUPS[group][1]:
                    trial[name] = fake_quantize(layer[name] * columns, bits, group_size) / columns
                loss = (forward(trial) - reference).pow(2).mean().item()
                losses[group].append(loss)
                if loss < best_loss:
                    best_loss, best[group] = loss, s
    return best, losses


def group_gram(inputs: torch.Tensor, group_size: int) -> torch.Tensor:
    """Second moments of each input group over every token: (..., K) -> (K/g, g, g), X_j^T X_j / T."""
    x = inputs.reshape(-1, inputs.shape[-1])
    x = x.view(x.shape[0], -1, group_size)                                # (T, G, g)
    return torch.einsum("tgi,tgj->gij", x, x) / x.shape[0]


def search_clip(weight: torch.Tensor, gram: torch.Tensor, bits: int, group_size: int, n_grid: int = 20,
                max_shrink: float = 0.5) -> torch.Tensor:
    """Per-group clipping threshold (N, K/g) minimising each group's share of the output error.

    weight (N, K); gram (K/g, g, g) from group_gram. Thresholds max|w| * (1 - i/n_grid), i < max_shrink * n_grid.
    A group's output error over the calibration tokens, mean_t (x_t . (w_q - w))^2, equals d^T Gram d with
    d = w_q - w, so every token counts at the cost of a g x g product per row and group."""
    rows, cols = weight.shape
    w = weight.view(rows, cols // group_size, group_size).transpose(0, 1).contiguous()  # (G, N, g)
    max_abs = w.abs().amax(dim=-1)                                        # (G, N)
    best_clip, best_err = max_abs.clone(), torch.full_like(max_abs, float("inf"))
    for step in range(int(max_shrink * n_grid)):
        clip = max_abs * (1 - step / n_grid)
        error = fake_quantize(w, bits, group_size, clip).sub_(w)
        err = (torch.bmm(error, gram) * error).sum(dim=-1)               # (G, N)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_clip = torch.where(better, clip, best_clip)
    return best_clip.transpose(0, 1).contiguous()                         # (N, G)


CLIPPED_LINEARS = {"v": "attn_in", "o": "o_in", "gate": "mlp_in", "up": "mlp_in", "down": "down_in"}
"""Linears whose clipping is searched, and the feature that feeds each. q and k are left unclipped:
their error passes through the softmax, which a per-output-channel loss does not see (as in llm-awq)."""


def search_layer_clips(layer: dict, features: LayerFeatures, config: ModelConfig, bits: int, group_size: int,
                       n_grid: int = 20, max_shrink: float = 0.5) -> dict:
    """name -> clip thresholds (N, K/g) for the (already scaled) layer and (already scaled) features."""
    grams = {feature: group_gram(getattr(features, feature), group_size)
             for feature in set(CLIPPED_LINEARS.values())}
    with torch.no_grad():
        return {name: search_clip(layer[name], grams[feature], bits, group_size, n_grid, max_shrink)
                for name, feature in CLIPPED_LINEARS.items()}
