"""Group quantization math against a plain numpy implementation written from FORMAT.md section 5."""
import numpy as np
import pytest
import torch

from awq_edge.quantize.grouped import dequantize_grouped, fake_quantize, quantize_grouped


def numpy_reference(weight, bits, group_size):
    max_q = 2 ** bits - 1
    rows, cols = weight.shape
    q = np.zeros((rows, cols), dtype=np.int64)
    scales = np.zeros((rows, cols // group_size), dtype=np.float32)
    zeros = np.zeros((rows, cols // group_size), dtype=np.int64)
    for n in range(rows):
        for j in range(cols // group_size):
            group = weight[n, j * group_size:(j + 1) * group_size]
            hi, lo = max(group.max(), 0.0), min(group.min(), 0.0)
            s = np.float32(np.float16(max(hi - lo, 1e-5) / max_q))
            z = int(np.clip(np.round(-lo / s), 0, max_q))
            q[n, j * group_size:(j + 1) * group_size] = np.clip(np.round(group / s) + z, 0, max_q)
            scales[n, j], zeros[n, j] = s, z
    return q, scales, zeros


@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize("group_size", [32, 64, 128])
def test_against_numpy(bits, group_size):
    rng = np.random.default_rng(bits * group_size)
    weight = (rng.standard_normal((8, 256)) * 0.05).astype(np.float32)
    weight[0, :group_size] = np.abs(weight[0, :group_size])   # an all-positive group: zero must stay representable
    weight[1, :group_size] = 0.0                              # an all-zero group
    q, scales, zeros = quantize_grouped(torch.from_numpy(weight), bits, group_size)
    ref_q, ref_scales, ref_zeros = numpy_reference(weight, bits, group_size)
    np.testing.assert_array_equal(scales.numpy(), ref_scales)
    np.testing.assert_array_equal(zeros.numpy(), ref_zeros)
    np.testing.assert_array_equal(q.numpy(), ref_q)
    assert q.min() >= 0 and q.max() <= 2 ** bits - 1


@pytest.mark.parametrize("bits", [3, 4])
def test_fake_quantize_is_quantize_then_dequantize(bits):
    weight = torch.randn(16, 128) * 0.02
    clip = weight.abs().view(16, 2, 64).amax(-1) * 0.7
    for c in (None, clip):
        expected = dequantize_grouped(*quantize_grouped(weight, bits, 64, c), 64)
        assert torch.equal(fake_quantize(weight, bits, 64, c), expected)


def test_error_is_within_half_a_step():
    weight = torch.randn(32, 128)
    q, scales, zeros = quantize_grouped(weight, 4, 32)
    error = (dequantize_grouped(q, scales, zeros, 32) - weight).abs().view(32, 4, 32)
    assert torch.all(error <= scales[..., None] * 0.5 + 1e-6)
