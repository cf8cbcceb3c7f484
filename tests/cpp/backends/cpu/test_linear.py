"""The CPU backend's linear layers (_awq_edge.cpu_kernels) against numpy and the Python reference
dequantizer (awq_edge.awqe.schemes.dequantize_module), for every scheme, every kernel level (those
this CPU lacks are skipped), odd shapes, several batch sizes m and thread counts; the SIMD levels
against each other; and bad tensors -> ValueError.

Tolerance: with ref = x @ W.T in float64 from the reference dequantizer, and the scale of the dot
products measured by the sum of their terms' magnitudes, scale = max over (i, n) of (|x| @ |W|.T),
    max |y - ref| <= 2e-5 * scale + 1e-6.
The AVX2 and AVX512 decode paths (m < 8, grouped schemes) round x to int16 per group (a relative error of at
most 1.5e-5 of the group's largest |x|, which is why the bound is relative to the terms rather than
to |ref|, which cancellation can make small); otherwise the errors are fp32 rounding, ~1e-7 of scale.
"""
import numpy as np
import pytest

from awq_edge._awq_edge import cpu_kernels
from awq_edge.awqe.schemes import parse_scheme
from linear_modules import GROUPED, SCHEMES, random_module

LEVELS = ["reference", "avx2", "avx512"]


MISSING = {"avx2": "this CPU has no AVX2 + FMA + F16C", "avx512": "this CPU has no AVX-512 F + BW + VL + VNNI"}


def level_available(level):
    """Levels are ordered: a CPU runs every level up to its best."""
    return LEVELS.index(level) <= LEVELS.index(cpu_kernels.best_kernel_level())


def level_param(level):
    return pytest.param(level, marks=pytest.mark.skipif(not level_available(level), reason=MISSING.get(level, "")))


LEVEL_PARAMS = [level_param(level) for level in LEVELS]
SIMD_LEVEL_PARAMS = [level_param(level) for level in LEVELS[1:]]


def assert_close(y, x, weight, ref=None):
    """y (m, N) against ref (default: x @ W.T in float64), within the module docstring's tolerance."""
    x, weight = x.astype(np.float64), weight.astype(np.float64)
    ref = x @ weight.T if ref is None else ref
    assert y.shape == ref.shape and y.dtype == np.float32
    error = np.abs(y.astype(np.float64) - ref).max()
    bound = 2e-5 * (np.abs(x) @ np.abs(weight).T).max() + 1e-6
    assert error <= bound, f"max |y - ref| = {error:.3g} > {bound:.3g}"


def check_linear(scheme, rows, cols, m, level, threads, seed=0):
    tensors, weight = random_module(scheme, rows, cols, seed)
    x = np.random.default_rng(seed + 1).standard_normal((m, cols)).astype(np.float32)
    y = cpu_kernels.linear(scheme, rows, cols, tensors, x, level=level, threads=threads)
    assert_close(y, x, weight)


def min_cols(scheme):
    return 32 if scheme in ("f16", "q8_row") else parse_scheme(scheme).group_size


@pytest.mark.parametrize("level", LEVEL_PARAMS)
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("rows", [1, 3, 17, 200])
@pytest.mark.parametrize("m", [1, 2, 3, 7, 64])
def test_odd_rows_and_batches(scheme, rows, m, level):
    check_linear(scheme, rows, 2 * min_cols(scheme), m, level, threads=2)


@pytest.mark.parametrize("level", LEVEL_PARAMS)
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("cols", [32, 64, 128, 576, 1536, 2880])
@pytest.mark.parametrize("m", [1, 5, 9])
def test_columns(scheme, cols, m, level):
    if cols % min_cols(scheme):
        pytest.skip(f"{scheme} needs K to be a multiple of {min_cols(scheme)}")
    check_linear(scheme, 19, cols, m, level, threads=3)


@pytest.mark.parametrize("level", LEVEL_PARAMS)
@pytest.mark.parametrize("scheme", ["f16", "q8_row"])
@pytest.mark.parametrize("cols", [1, 7, 8, 15, 33, 100])
@pytest.mark.parametrize("m", [1, 6, 9])
def test_dense_schemes_any_column_count(scheme, cols, m, level):
    check_linear(scheme, 9, cols, m, level, threads=2)


@pytest.mark.parametrize("level", LEVEL_PARAMS)
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("scheme", ["f16", "q8_row", "q4_g64", "q3_g128"])
def test_thread_counts(scheme, threads, level):
    for m in (1, 7, 13):
        check_linear(scheme, 200, 384, m, level, threads)


SMOLLM2_SHAPES = [(576, 576), (192, 576), (1536, 576), (576, 1536)]


@pytest.mark.parametrize("level", SIMD_LEVEL_PARAMS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_smollm2_shapes_vs_reference(scheme, level):
    for rows, cols in SMOLLM2_SHAPES:
        if cols % min_cols(scheme):
            continue
        tensors, weight = random_module(scheme, rows, cols, seed=rows + cols)
        x = np.random.default_rng(3).standard_normal((9, cols)).astype(np.float32)
        for m in (1, 3, 9):
            reference = cpu_kernels.linear(scheme, rows, cols, tensors, x[:m], level="reference", threads=2)
            fast = cpu_kernels.linear(scheme, rows, cols, tensors, x[:m], level=level, threads=2)
            assert_close(fast, x[:m], weight, ref=reference.astype(np.float64))


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("shape", SMOLLM2_SHAPES + [(37, 4096), (5, 2880)])
def test_avx512_agrees_with_avx2(scheme, shape):
    """Same numerics: both round x to int16 per group, so they differ only by fp32 summation order."""
    if not level_available("avx512"):
        pytest.skip(MISSING["avx512"])
    rows, cols = shape
    if cols % min_cols(scheme):
        pytest.skip(f"{scheme} needs K to be a multiple of {min_cols(scheme)}")
    tensors, weight = random_module(scheme, rows, cols, seed=rows * cols)
    x = np.random.default_rng(4).standard_normal((9, cols)).astype(np.float32)
    for m in (1, 2, 7, 9):
        avx2 = cpu_kernels.linear(scheme, rows, cols, tensors, x[:m], level="avx2", threads=2)
        avx512 = cpu_kernels.linear(scheme, rows, cols, tensors, x[:m], level="avx512", threads=2)
        bound = 1e-6 * (np.abs(x[:m].astype(np.float64)) @ np.abs(weight.astype(np.float64)).T).max() + 1e-7
        assert np.abs(avx512.astype(np.float64) - avx2).max() <= bound


@pytest.mark.parametrize("level", LEVEL_PARAMS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_dequantize_row(scheme, level):
    rows, cols = 5, 256
    tensors, weight = random_module(scheme, rows, cols, seed=7)
    for row in range(rows):
        out = cpu_kernels.dequantize_row(scheme, rows, cols, tensors, row, level=level)
        np.testing.assert_array_equal(out, weight[row])


def test_docs_worked_example_q4():
    """FORMAT.md section 5: column 1 of the 4-bit example dequantizes to (10 - 8) * fp16(0.01)."""
    qweight = np.zeros((1, 8), dtype=np.uint32)
    qweight[0, 0] = 0x8217F0A3
    scales = np.array([[0.01, 0.02]], dtype=np.float16)
    zeros = np.array([[0x58]], dtype=np.uint32)
    row = cpu_kernels.dequantize_row("q4_g32", 1, 64, [qweight, scales, zeros], 0, level="reference")
    assert row[1] == pytest.approx(2 * 0.0100021, rel=1e-5)
    assert row[0] == pytest.approx((3 - 8) * float(np.float16(0.01)), rel=1e-6)


def test_layer_object_is_reusable():
    tensors, weight = random_module("q4_g32", 40, 96, seed=11)
    layer = cpu_kernels.LinearLayer("q4_g32", 40, 96, tensors, threads=2)
    for m in (1, 4, 1):
        x = np.random.default_rng(m).standard_normal((m, 96)).astype(np.float32)
        assert_close(layer(x), x, weight)


def test_environment_queries():
    assert cpu_kernels.best_kernel_level() in LEVELS
    assert cpu_kernels.physical_core_count() >= 1


# ---------------------------------------------------------------------------------------------
# Bad arguments: ValueError naming the module, the tensor and what was expected
# ---------------------------------------------------------------------------------------------

def test_wrong_zeros_shape():
    tensors, _ = random_module("q4_g64", 576, 576, seed=1)
    tensors[2] = np.zeros((576, 3), dtype=np.uint32)
    with pytest.raises(ValueError, match=r"\[cpu linear\] q4_g64 module 576x576: tensor 2 \(zeros\) "
                                         r"expected U32 \(576, 2\), found U32 \(576, 3\)"):
        cpu_kernels.linear("q4_g64", 576, 576, tensors, np.zeros((1, 576), np.float32))


def test_wrong_dtype():
    tensors, _ = random_module("q8_row", 4, 64, seed=1)
    tensors[1] = tensors[1].astype(np.float32)
    with pytest.raises(ValueError, match=r"q8_row module 4x64: tensor 1 \(scales\) expected F16 \(4,\), found F32 \(4,\)"):
        cpu_kernels.linear("q8_row", 4, 64, tensors, np.zeros((1, 64), np.float32))


def test_wrong_tensor_count():
    tensors, _ = random_module("q3_g32", 4, 64, seed=1)
    with pytest.raises(ValueError, match=r"q3_g32 module 4x64: expected 3 tensors, found 2"):
        cpu_kernels.linear("q3_g32", 4, 64, tensors[:2], np.zeros((1, 64), np.float32))


def test_columns_not_a_multiple_of_the_group():
    with pytest.raises(ValueError, match=r"q4_g128 module 4x576: 576 columns are not a multiple of the group size 128"):
        cpu_kernels.linear("q4_g128", 4, 576, [], np.zeros((1, 576), np.float32))


def test_x_with_wrong_width():
    tensors, _ = random_module("f16", 4, 64, seed=1)
    with pytest.raises(ValueError, match=r"x has 32 columns, the weight 64"):
        cpu_kernels.linear("f16", 4, 64, tensors, np.zeros((1, 32), np.float32))


def test_unknown_scheme_and_level():
    tensors, _ = random_module("f16", 4, 64, seed=1)
    with pytest.raises(ValueError, match=r"unknown scheme 'q5_g64'"):
        cpu_kernels.linear("q5_g64", 4, 64, tensors, np.zeros((1, 64), np.float32))
    with pytest.raises(ValueError, match=r"unknown kernel level 'sse2'"):
        cpu_kernels.linear("f16", 4, 64, tensors, np.zeros((1, 64), np.float32), level="sse2")
