"""backend.h's operations other than the linear layers, one call at a time on every backend of this build,
against numpy in float64 (_awq_edge.backends.Operations and .Attention, cpp/bindings/backend_operations.cpp).
The linear layers have their own tests (tests/cpp/backends/cpu/test_linear.py, tests/cuda/test_cuda_backend.py);
the decoder's use of all of them is checked against transformers end to end.

The attention block runs both ways a backend offers: its rotary_attention (fused kernels where it has them)
and Backend's default, the primitives rope, store_kv and attention one after another, which the decoder
never calls on a backend that fuses them, so only this file checks them there. Calls go to two layers of
one cache, prefill chunks and single tokens in turn, the paths mixed, so that what one call stores another
reads.

Tolerances. fp32 arithmetic: max |y - ref| <= 1e-5 * max |ref| (+ 1e-6). The CUDA backend's KV cache is
fp16: its reference rounds the rotated keys and the values to fp16 as they are stored, which leaves fp32
rounding and a key rounded the other way at an fp16 tie (2^-11 of one element), within
1e-3 * max |v|.
"""
import os

import numpy as np
import pytest

from awq_edge._awq_edge import backends

CUDA_USABLE, CUDA_REASON = backends.available("cuda") if "cuda" in backends.compiled() else (False, "not compiled")
EMULATED = os.environ.get("AWQ_EDGE_CUDA_EMULATED") == "1"

# (backend, threads): the CPU backend splits attention heads and rows across its threads
BACKENDS = [pytest.param(("cpu", 1), id="cpu"), pytest.param(("cpu", 2), id="cpu-2-threads"),
            pytest.param(("cuda", 1), id="cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
                not CUDA_USABLE, reason=f"CUDA backend unusable: {CUDA_REASON}")])]


def operations(backend):
    name, threads = backend
    return backends.Operations(name, threads=threads)


def assert_close(y, ref, tolerance=1e-5, scale=None):
    assert y.shape == ref.shape and y.dtype == np.float32, (y.shape, y.dtype, ref.shape)
    scale = np.abs(ref).max() if scale is None else scale
    error = np.abs(y.astype(np.float64) - ref).max()
    assert error <= tolerance * scale + 1e-6, f"max |y - ref| = {error:.3g} > {tolerance:g} * {scale:.3g}"


def random(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def rms_norm_reference(x, weight, eps):
    x = x.astype(np.float64)
    return x / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps) * weight.astype(np.float64)


SHAPES = [(1, 576), (3, 100), (8, 33), (9, 4096), (65, 64)]  # rows: decode, small batches, prefill
# cuda/rms_norm.cu keeps a row in registers, 1, 2 or 4 float4 per thread of up to 256 threads (to 4096
# columns) or 1024 (to 16384), and loops over longer rows or rows not of whole float4s (33, 20000)
NORM_SHAPES = SHAPES + [(1, 2048), (2, 6000), (1, 8192), (1, 20000)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rows, cols", NORM_SHAPES)
def test_rms_norm_and_the_fused_residual_add(backend, rows, cols):
    rng = np.random.default_rng(rows * cols)
    x, delta, weight = random(rng, rows, cols, scale=3), random(rng, rows, cols), random(rng, cols)
    ops = operations(backend)
    assert_close(ops.rms_norm(x, weight, 1e-5), rms_norm_reference(x, weight, 1e-5))
    total, out = ops.add_rms_norm(x, delta, weight, 1e-6)
    assert_close(total, x.astype(np.float64) + delta)
    assert_close(out, rms_norm_reference(x + delta, weight, 1e-6))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rows, cols", SHAPES)
def test_silu_mul_and_add(backend, rows, cols):
    rng = np.random.default_rng(rows + cols)
    gate, up = random(rng, rows, cols, scale=4), random(rng, rows, cols)
    ops = operations(backend)
    g = gate.astype(np.float64)
    assert_close(ops.silu_mul(gate, up), g / (1 + np.exp(-g)) * up)
    assert_close(ops.add(gate, up), g + up)


def inverse_frequencies(head_dim, base=10000.0):
    return (1.0 / base ** (np.arange(0, head_dim, 2) / head_dim)).astype(np.float32)


def rotate(x, heads, head_dim, positions, inv_freq):
    """Hugging Face's rotate_half convention; the angle p * inv_freq rounded to float32 as the tables are."""
    angles = (positions[:, None].astype(np.float32) * inv_freq[None, :]).astype(np.float64)
    cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
    x = x.astype(np.float64).reshape(len(positions), heads, head_dim)
    first, second = x[..., :head_dim // 2], x[..., head_dim // 2:]
    return np.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1).reshape(len(positions), -1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("first_position, n", [(0, 1), (7, 1), (3, 12), (1000, 2)])
def test_rope_rotates_q_and_k(backend, first_position, n):
    heads, kv_heads, head_dim = 6, 2, 64
    rng = np.random.default_rng(first_position + n)
    q, k = random(rng, n, heads * head_dim), random(rng, n, kv_heads * head_dim)
    inv_freq = inverse_frequencies(head_dim)
    rotated_q, rotated_k = operations(backend).rope(inv_freq, heads, kv_heads, head_dim, first_position, q, k)
    positions = np.arange(first_position, first_position + n)
    assert_close(rotated_q, rotate(q, heads, head_dim, positions, inv_freq))
    assert_close(rotated_k, rotate(k, kv_heads, head_dim, positions, inv_freq))


class ReferenceAttention:
    """The attention block in float64, with a cache of rotated keys and values per layer; cache_dtype is what
    the backend's cache rounds them to."""

    def __init__(self, heads, kv_heads, head_dim, inv_freq, cache_dtype):
        self.heads, self.kv_heads, self.head_dim, self.inv_freq = heads, kv_heads, head_dim, inv_freq
        self.cache_dtype = cache_dtype
        self.keys, self.values = {}, {}

    def __call__(self, layer, first_position, q, k, v):
        n, d = len(q), self.head_dim
        positions = np.arange(first_position, first_position + n)
        stored = lambda x: x.astype(self.cache_dtype).astype(np.float64)
        keys = self.keys.setdefault(layer, np.zeros((0, self.kv_heads * d)))
        values = self.values.setdefault(layer, np.zeros((0, self.kv_heads * d)))
        assert len(keys) == first_position, "the test calls each layer at consecutive positions"
        keys = self.keys[layer] = np.concatenate([keys, stored(rotate(k, self.kv_heads, d, positions, self.inv_freq))])
        values = self.values[layer] = np.concatenate([values, stored(v)])
        q = rotate(q, self.heads, d, positions, self.inv_freq).reshape(n, self.heads, d)
        group = self.heads // self.kv_heads
        out = np.zeros((n, self.heads, d))
        for t in range(n):
            length = first_position + t + 1
            for h in range(self.heads):
                kv = slice((h // group) * d, (h // group + 1) * d)
                scores = keys[:length, kv] @ q[t, h] / np.sqrt(d)
                weights = np.exp(scores - scores.max())
                out[t, h] = weights @ values[:length, kv] / weights.sum()
        return out.reshape(n, -1)


# (query heads, kv heads, head_dim): one kv head per query head, GQA groups of 3 and 4, one kv head for 8
# (MQA), LLaMA's head of 128, and heads that are not a multiple of 32 (70: not even of 4, the CUDA kernel's
# elements per lane there, so its rows are read element by element instead of one vector per lane)
ATTENTION_SHAPES = [(4, 4, 32), (9, 3, 64), (8, 2, 128), (8, 1, 64), (3, 1, 40), (2, 2, 96), (2, 1, 70)]
# (layer, tokens) per call, at consecutive positions per layer: prefill chunks (more than 8 tokens take the
# prefill kernels on CUDA), small batches and single tokens
CALLS = [(0, 5), (1, 13), (0, 1), (1, 1), (0, 9), (0, 1), (1, 3), (1, 1)]
# which path each call takes: the backend's rotary_attention, the primitives, or the two in turn
PATHS = {"fused": lambda i: True, "primitives": lambda i: False, "mixed": lambda i: i % 2 == 0}


def run_calls(backend, shape, path, calls, capacity, seed=0):
    heads, kv_heads, head_dim = shape
    name, threads = backend
    inv_freq = inverse_frequencies(head_dim, base=500000.0)
    attention = backends.Attention(name, heads, kv_heads, head_dim, inv_freq, capacity, layers=2, threads=threads)
    reference = ReferenceAttention(heads, kv_heads, head_dim, inv_freq, np.float16 if name == "cuda" else np.float32)
    tolerance = 1e-3 if name == "cuda" else 1e-5
    rng = np.random.default_rng(seed)
    positions = {0: 0, 1: 0}
    for i, (layer, n) in enumerate(calls):
        # calls in turn with a peaked softmax (a few positions dominate) and a flat one (every position
        # counts: a position taken twice, or one too many, shows)
        q_scale = 2.0 if i % 2 == 0 else 0.05
        q, k = random(rng, n, heads * head_dim, scale=q_scale), random(rng, n, kv_heads * head_dim, scale=2)
        v = random(rng, n, kv_heads * head_dim)
        out = attention(layer, positions[layer], q, k, v, fused=PATHS[path](i))
        expected = reference(layer, positions[layer], q, k, v)
        assert_close(out, expected, tolerance, scale=np.abs(v).max())
        positions[layer] += n


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", ATTENTION_SHAPES, ids=lambda s: "{}q-{}kv-d{}".format(*s))
@pytest.mark.parametrize("path", PATHS)
def test_attention_block_matches_numpy(backend, shape, path):
    run_calls(backend, shape, path, CALLS, capacity=40)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(8, 2, 64), (4, 4, 128)], ids=lambda s: "{}q-{}kv-d{}".format(*s))
@pytest.mark.parametrize("path", PATHS)
def test_long_context_attention_matches_numpy(backend, shape, path):
    """Several hundred positions: the CUDA backend splits a token's attention along the sequence (a split
    takes 64 positions or more) and merges the splits; its warps take 2 (GQA) or 4 (one query head per kv
    head) positions at a time, so a split's last step can reach past the split's end."""
    calls = [(0, 64)] * 4 + [(0, 1), (1, 40), (0, 3), (0, 1), (0, 1), (0, 1)]
    run_calls(backend, shape, path, calls, capacity=300)


@pytest.mark.parametrize("backend", BACKENDS)
def test_attention_outside_the_cache_is_a_clear_error(backend):
    name, threads = backend
    attention = backends.Attention(name, 2, 1, 32, inverse_frequencies(32), 8, threads=threads)
    q, kv = np.zeros((3, 64), np.float32), np.zeros((3, 32), np.float32)
    with pytest.raises(ValueError, match=r"positions \[6, 9\) must fit the cache's 8"):
        attention(0, 6, q, kv, kv)
    with pytest.raises(ValueError, match=r"k must be \(n >= 1, 32\), got \(3, 64\)"):
        attention(0, 0, q, q, q)
    with pytest.raises(ValueError, match="must be a multiple of n_kv_heads"):
        backends.Attention(name, 3, 2, 32, inverse_frequencies(32), 8)
