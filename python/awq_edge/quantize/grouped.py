"""Asymmetric integer quantization in groups along the input dimension (the math of FORMAT.md section 5).

For a weight W (N, K) and group size g, each row's K inputs split into K/g groups. A group with
range [lo, hi] (widened to include 0, so the zero point is always representable) gets
    scale s = fp16((hi - lo) / (2^b - 1)),  zero z = clamp(round(-lo / s), 0, 2^b - 1),
    q = clamp(round(w / s) + z, 0, 2^b - 1),  and dequantizes to (q - z) * s.
The scale is rounded to fp16 before z and q are computed, so the file's fp16 scale reproduces
exactly the weights the quantizer measured its error on.
"""
import torch

SCALE_FLOOR = 1e-5  # a group of (near) zeros still gets a usable, fp16-representable scale


def quantize_grouped(weight: torch.Tensor, bits: int, group_size: int, clip: torch.Tensor = None):
    """weight (N, K) -> q (N, K) int64, scales (N, K/g) float32 holding fp16 values, zeros (N, K/g) int64.

    clip (N, K/g), optional: each group is clamped to [-clip, clip] first (AWQ's clipping search)."""
    rows, cols = weight.shape
    groups = weight.reshape(rows, cols // group_size, group_size)
    if clip is not None:
        groups = torch.maximum(torch.minimum(groups, clip[..., None]), -clip[..., None])
    max_q = (1 << bits) - 1
    hi = groups.amax(dim=-1).clamp(min=0)
    lo = groups.amin(dim=-1).clamp(max=0)
    scales = ((hi - lo).clamp(min=SCALE_FLOOR) / max_q).half().float()
    zeros = torch.round(-lo / scales).clamp(0, max_q)
    q = (torch.round(groups / scales[..., None]) + zeros[..., None]).clamp(0, max_q)
    return q.reshape(rows, cols).long(), scales, zeros.long()


def dequantize_grouped(q: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, group_size: int) -> torch.Tensor:
    rows, cols = q.shape
    groups = q.reshape(rows, cols // group_size, group_size).float()
    return ((groups - zeros[..., None]) * scales[..., None]).reshape(rows, cols)


def fake_quantize(weight: torch.Tensor, bits: int, group_size: int, clip: torch.Tensor = None) -> torch.Tensor:
    """What the weight becomes after quantization and dequantization, same shape, float32.

    The same arithmetic as quantize_grouped + dequantize_grouped, fused in place: the searches call it
    hundreds of times per layer."""
    groups = weight.reshape(-1, group_size)
    if clip is not None:
        bound = clip.reshape(-1, 1)
        groups = torch.clamp(groups, -bound, bound)
    max_q = (1 << bits) - 1
    hi = groups.amax(dim=-1, keepdim=True).clamp_(min=0)
    lo = groups.amin(dim=-1, keepdim=True).clamp_(max=0)
    scales = hi.sub_(lo).clamp_(min=SCALE_FLOOR).div_(max_q).half().float()
    zeros = lo.div_(scales).neg_().round_().clamp_(0, max_q)
    q = (groups / scales).round_().add_(zeros).clamp_(0, max_q)
    return q.sub_(zeros).mul_(scales).view_as(weight)
