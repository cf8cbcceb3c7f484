"""The CUDA backend (cuda/).

Without a GPU (CI): the backend is compiled into the build whenever nvcc is present, and asking for
it gives a clear error while "auto" falls back to the CPU.

With a GPU (marked `gpu`, skipped without one): every linear kernel against the CPU backend's
Reference kernels on random data and odd shapes, and end-to-end logits against transformers.

Tolerances. The q4/q3 kernels round x to fp16 (the matrix-vector kernel after scaling each group by
a power of two, exact) and sum 4 products of (q - z) * x in fp16 before fp32; the matrix-matrix
kernel rounds each dequantized weight (q - z) * s to fp16 and accumulates in fp32 on the tensor
cores. Each is a relative error of a few 2^-11 of the terms, so with scale = max over (i, n) of
(|x| @ |W|.T):  max |y - ref| <= 2e-3 * scale + 1e-5  (the host emulation in test_q4_layout.cpp
holds the same kernels' arithmetic to the same bound). With fp16 accumulation (gemm_fp16_accumulate)
each mma also rounds a group's partial sum to fp16: group_size / 16 roundings of up to 2^-10 more.
f16 and q8_row weights are computed in fp32: 1e-5 * scale. End to end (fp16 KV cache as well) logits
agree with transformers' float32 within 2e-2 * max |logits| + 1e-3.
"""
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from awq_edge._awq_edge import backends
from awq_edge.generator import Generator
from linear_modules import GROUPED, SCHEMES, random_module
from tiny_models import TINY_KINDS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from page_cache import cached_pages  # noqa: E402
from random_model import write_random_model  # noqa: E402

CUDA_COMPILED = "cuda" in backends.compiled()
CUDA_USABLE, CUDA_REASON = backends.available("cuda") if CUDA_COMPILED else (False, "not compiled")
gpu_only = pytest.mark.skipif(not CUDA_USABLE, reason=f"CUDA backend unusable: {CUDA_REASON}")
# Set by tests/cuda/test_cuda_emulator.py, which runs this file's GPU tests on a build of the backend for
# the CPU emulator (cuda/emulator/): correct results, not speed, so the largest shapes are left to GPUs.
EMULATED = os.environ.get("AWQ_EDGE_CUDA_EMULATED") == "1"
too_slow_emulated = pytest.mark.skipif(EMULATED, reason="minutes on the CPU emulator; runs on a GPU")


def test_cuda_backend_is_built_where_nvcc_is():
    if shutil.which("nvcc") is None:
        pytest.skip("no nvcc on this machine: the build has no CUDA backend by design")
    assert CUDA_COMPILED, "nvcc is on PATH but the package was built without the CUDA backend"


@pytest.mark.skipif(not CUDA_COMPILED or CUDA_USABLE, reason="needs a CUDA build on a machine without a usable GPU")
def test_without_gpu_cuda_is_a_clear_error_and_auto_uses_the_cpu(tiny_awqe):
    path = tiny_awqe("llama")
    with pytest.raises(RuntimeError, match=r"backend 'cuda' cannot run here: (no NVIDIA GPU|the NVIDIA driver)"):
        Generator(path, backend="cuda")
    assert Generator(path, backend="auto").backend.startswith("cpu")
    ok, reason = backends.available("cuda")
    assert not ok and reason


@pytest.mark.skipif(not CUDA_COMPILED, reason="CUDA backend not compiled")
def test_cuda_has_no_kernel_variants_to_choose(tiny_awqe):
    with pytest.raises((ValueError, RuntimeError), match="kernels"):
        Generator(tiny_awqe("llama"), backend="cuda", kernels="avx2")


@pytest.mark.gpu
@gpu_only
def test_the_backend_says_whether_it_is_emulated(tiny_awqe):
    """A run on the emulator must be one (the emulated extension was imported) and say so; a GPU run must not."""
    description = Generator(tiny_awqe("llama"), backend="cuda").backend
    assert ("CUDA emulator on the CPU" in description) == EMULATED, description


def expected_and_scale(x, weight):
    x64, w64 = x.astype(np.float64), weight.astype(np.float64)
    return x64 @ w64.T, (np.abs(x64) @ np.abs(w64).T).max()


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("rows, cols", [(1, 128), (33, 256), (100, 384), (576, 576), (1000, 1536)])
@pytest.mark.parametrize("m", [1, 2, 3, 8, 9, 33, 65, 128])
def test_linear_matches_numpy(scheme, rows, cols, m):
    if scheme not in ("f16", "q8_row") and cols % int(scheme.split("_g")[1]) != 0:
        pytest.skip("K is not a multiple of the group size")
    tensors, weight = random_module(scheme, rows, cols, seed=rows + cols + m)
    x = np.random.default_rng(m).standard_normal((m, cols)).astype(np.float32) * 3
    x[0, 5] = 200.0  # an outlier channel, as AWQ's salient channels are
    y = backends.Linear("cuda", scheme, rows, cols, tensors)(x)
    expected, scale = expected_and_scale(x, weight)
    bound = (1e-5 if scheme in ("f16", "q8_row") else 2e-3) * scale + 1e-5
    error = np.abs(y - expected).max()
    assert error <= bound, f"{scheme} ({rows}, {cols}) m={m}: max |diff| {error:.3g} > {bound:.3g}"


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("scheme", ["f16", "q8_row"])
@pytest.mark.parametrize("rows, cols", [(3, 100), (7, 200), (40, 4160)])
@pytest.mark.parametrize("m", [1, 9])
def test_dense_linear_takes_every_load_path(scheme, rows, cols, m):
    """cuda/dense_linear.cu's paths the shapes above miss: K not a multiple of 8 (the scalar loop), a multiple of 8
    but not of 16 (f16 by 16-byte loads, int8 by the scalar loop), and rows of several trips of 4 loads in flight
    per lane ending in a partial one (int8: 2048 columns a trip, f16: 1024)."""
    tensors, weight = random_module(scheme, rows, cols, seed=rows + cols + m)
    x = np.random.default_rng(m).standard_normal((m, cols)).astype(np.float32) * 3
    y = backends.Linear("cuda", scheme, rows, cols, tensors)(x)
    expected, scale = expected_and_scale(x, weight)
    error = np.abs(y - expected).max()
    assert error <= 1e-5 * scale + 1e-5, f"{scheme} ({rows}, {cols}) m={m}: max |diff| {error:.3g}"


PREFILL_KERNELS = {  # AWQ_EDGE_CUDA_TUNING for each
    "split K, 2 warps": "gemm_strips=1,gemm_warps=2",
    "split K, 3 warps": "gemm_strips=1,gemm_warps=3",  # a group's blocks split unevenly between the warps
    "x staged": "gemm_strips=4,gemm_staged_always=1",
}


def prefill_with_and_without_fp16_accumulation(monkeypatch, kernel, scheme, rows, cols, tensors, x):
    """The product on prefill kernel `kernel` (fp32 accumulation, fp16 accumulation)."""
    results = []
    for fp16 in (0, 1):
        monkeypatch.setenv("AWQ_EDGE_CUDA_TUNING", f"{PREFILL_KERNELS[kernel]},gemm_fp16_accumulate={fp16}")
        results.append(backends.Linear("cuda", scheme, rows, cols, tensors)(x))
    return results


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("kernel", list(PREFILL_KERNELS))
@pytest.mark.parametrize("scheme", GROUPED)
@pytest.mark.parametrize("rows, cols, m", [(33, 256, 9), (100, 384, 65), (576, 576, 128)])
def test_prefill_with_fp16_accumulation_matches_numpy(monkeypatch, kernel, scheme, rows, cols, m):
    """gemm_fp16_accumulate: x scaled per group into [-1, 1], each group summed in fp16 on the tensor cores
    (rounded at every mma, up to 2^-10 of the partial sum's terms each, group_size / 16 of them), then
    added to fp32 times the group's multipliers. The result must differ from the fp32 kernel's (the fp16
    path ran) and stay within the fp32 kernel's bound plus those roundings."""
    group = int(scheme.split("_g")[1])
    if cols % group != 0:
        pytest.skip("K is not a multiple of the group size")
    tensors, weight = random_module(scheme, rows, cols, seed=rows + cols + m)
    x = np.random.default_rng(m).standard_normal((m, cols)).astype(np.float32) * 3
    x[0, 5] = 200.0
    fp32, y = prefill_with_and_without_fp16_accumulation(monkeypatch, kernel, scheme, rows, cols, tensors, x)
    expected, scale = expected_and_scale(x, weight)
    bound = (2e-3 + group / 16 * 2.0 ** -10) * scale + 1e-5
    error = np.abs(y - expected).max()
    assert error <= bound, f"{scheme} ({rows}, {cols}) m={m}: max |diff| {error:.3g} > {bound:.3g}"
    assert not np.array_equal(y, fp32), "the fp16-accumulating kernel did not run"
    fp32_error = np.abs(fp32 - expected).max()
    print(f"{scheme} {kernel} m={m}: max |diff| / scale: fp16 accumulation {error / scale:.2e}, "
          f"fp32 {fp32_error / scale:.2e}")


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("kernel", ["split K, 2 warps", "x staged"])
def test_fp16_accumulation_is_not_used_for_scales_whose_sums_could_overflow(monkeypatch, kernel):
    """Scales of 20..40 at group size 128: 15 * 128 * 40 = 76800 exceeds fp16's range (65504), so the weight
    keeps fp32 accumulation (q4_layout.h fp16_accumulation_safe): the result is the fp32 kernel's, bitwise."""
    rows, cols, m = 64, 256, 33
    tensors, weight = random_module("q4_g128", rows, cols, seed=5, scales=(20.0, 40.0))
    x = np.random.default_rng(5).standard_normal((m, cols)).astype(np.float32)
    fp32, y = prefill_with_and_without_fp16_accumulation(monkeypatch, kernel, "q4_g128", rows, cols, tensors, x)
    assert np.array_equal(y, fp32)
    expected, scale = expected_and_scale(x, weight)
    assert np.abs(y - expected).max() <= 2e-3 * scale + 1e-5


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_prefill_with_fp16_accumulation_matches_transformers(tiny_awqe, monkeypatch, kind):
    """The whole model's prefill chunks (and the q, k, v projections sharing one scaled operand) with
    fp16 accumulation, then decode steps."""
    monkeypatch.setenv("AWQ_EDGE_CUDA_TUNING", "gemm_fp16_accumulate=1")
    generator = Generator(tiny_awqe(kind), backend="cuda", prefill_chunk=128)
    assert "gemm_fp16_accumulate=1" in generator.backend
    assert_prefill_and_decode_match_transformers(generator, tiny_awqe(kind), prompt=40, total=48, seed=4)


@pytest.mark.gpu
@gpu_only
@too_slow_emulated
def test_cuda_agrees_with_cpu_reference_kernels_on_real_layer_shapes():
    """A LLaMA-7B-shaped MLP block row (11008 x 4096 and back) at decode and prefill sizes."""
    for rows, cols in [(11008, 4096), (4096, 11008)]:
        tensors, weight = random_module("q4_g128", rows, cols, seed=rows)
        for m in (1, 4, 128):
            x = np.random.default_rng(m).standard_normal((m, cols)).astype(np.float32)
            y = backends.Linear("cuda", "q4_g128", rows, cols, tensors)(x)
            expected, scale = expected_and_scale(x, weight)
            assert np.abs(y - expected).max() <= 2e-3 * scale + 1e-5


RELATIVE, ABSOLUTE = 2e-2, 1e-3


def logits_of_prefill_and_decode(generator, ids, prompt):
    return np.concatenate([generator.logits(ids[:prompt])] + [generator.logits([t]) for t in ids[prompt:]])


def assert_prefill_and_decode_match_transformers(generator, path, prompt: int, total: int, seed: int):
    """Logits of a `prompt`-token prefill and the decode steps up to `total` tokens against transformers
    running the file's dequantized weights in float32."""
    import torch

    from awq_edge.evaluate import load_awqe_as_transformers
    ids = np.random.default_rng(seed).integers(0, generator.vocab_size, total).tolist()
    model, _ = load_awqe_as_transformers(path)
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0].numpy()
    got = logits_of_prefill_and_decode(generator, ids, prompt)
    bound = RELATIVE * np.abs(expected).max() + ABSOLUTE
    error = np.abs(got - expected).max()
    assert error <= bound, f"{path}: max |diff| {error:.3g} > {bound:.3g}"


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("kind", TINY_KINDS)
@pytest.mark.parametrize("prefill_chunk", [8, 128])
def test_logits_match_transformers(tiny_awqe, kind, prefill_chunk):
    generator = Generator(tiny_awqe(kind), backend="cuda", prefill_chunk=prefill_chunk)
    assert generator.backend.startswith("cuda")
    assert_prefill_and_decode_match_transformers(generator, tiny_awqe(kind), prompt=24, total=56, seed=0)


@pytest.mark.gpu
@gpu_only
def test_decode_steps_replayed_as_cuda_graphs_give_identical_logits(tiny_awqe, monkeypatch):
    """Decode steps are recorded on their second occurrence and replayed after (cuda_backend.cu); the
    replay runs the same kernels with the same launch configurations, so the logits are bitwise those
    of running every step eagerly (AWQ_EDGE_CUDA_GRAPHS=0), across positions and after a reset."""
    path = tiny_awqe("llama")
    ids = np.random.default_rng(3).integers(0, 96, 48).tolist()

    def run():
        generator = Generator(path, backend="cuda")
        rows = [generator.logits(ids[:8])] + [generator.logits([t]) for t in ids[8:40]]
        generator.reset()
        rows += [generator.logits(ids[:3])] + [generator.logits([t]) for t in ids[40:48]]
        return generator.backend, rows

    description, recorded = run()
    assert "CUDA graphs" in description and "off" not in description
    monkeypatch.setenv("AWQ_EDGE_CUDA_GRAPHS", "0")
    description, eager = run()
    assert "CUDA graphs off" in description
    for step, (a, b) in enumerate(zip(recorded, eager)):
        assert np.array_equal(a, b), f"step {step}"


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_programmatic_dependent_launches_give_identical_logits(tiny_awqe, monkeypatch, kind):
    """AWQ_EDGE_CUDA_TUNING=programmatic_launch=1 (launch.h): on compute capability 9.0+ every kernel is
    launched so that it may start while the one before it finishes, and must wait (griddepcontrol.wait) before
    touching memory. A kernel that read or wrote before its wait would race with its predecessor; the
    arithmetic is the same either way, so prefill chunks, eager and recorded (graph) decode steps give the
    logits of ordinary launches bitwise. On an older GPU the setting is ignored and says so. (On the emulator,
    which runs kernels one after another, AWQ_EDGE_CUDA_EMULATOR_DEVICE=sm_90 checks the plumbing only.)"""
    path = tiny_awqe(kind)
    ids = np.random.default_rng(5).integers(0, 96, 40).tolist()
    if EMULATED:
        monkeypatch.setenv("AWQ_EDGE_CUDA_EMULATOR_DEVICE", "sm_90")

    def run():
        generator = Generator(path, backend="cuda", prefill_chunk=8)
        rows = [generator.logits(ids[:20])] + [generator.logits([t]) for t in ids[20:40]]
        return generator.backend, rows

    description, ordinary = run()
    assert "programmatic" not in description
    monkeypatch.setenv("AWQ_EDGE_CUDA_TUNING", "programmatic_launch=1")
    description, programmatic = run()
    major = int(re.search(r"sm_(\d+)\d\b", description)[1])
    if major >= 9:
        assert "programmatic dependent launches" in description, description
    else:
        assert "programmatic_launch ignored (needs compute capability 9.0+)" in description, description
    for step, (a, b) in enumerate(zip(ordinary, programmatic)):
        assert np.array_equal(a, b), f"step {step}"
    if EMULATED:  # the other branch: an sm_87 (Jetson Orin) ignores the setting
        monkeypatch.setenv("AWQ_EDGE_CUDA_EMULATOR_DEVICE", "sm_87")
        assert "programmatic_launch ignored (needs compute capability 9.0+)" in Generator(path, backend="cuda").backend


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("heads", [(4, 2), (16, 1)])
def test_long_contexts_split_the_attention_and_match_transformers(tmp_path, monkeypatch, heads):
    """A 300-token prompt in chunks of 64, then decode steps: with attention_blocks_per_sm=64 every attention
    call is split as far as it may be (a split takes at least 64 positions), so that the kernel reads the
    chunk's new keys and values from the projections, stores them in the cache, and merges up to 4 splits
    itself (the last block of each group to finish), in prefill and decode."""
    from awq_edge.quantize import QuantizeOptions, quantize_model
    from tiny_models import save_tiny_model
    monkeypatch.setenv("AWQ_EDGE_CUDA_TUNING", "attention_blocks_per_sm=64")
    source = save_tiny_model("llama", tmp_path / "hf", num_attention_heads=heads[0], num_key_value_heads=heads[1],
                             head_dim=32, max_position_embeddings=512)
    path = tmp_path / "model.awqe"
    quantize_model(source, path, QuantizeOptions(method="rtn", group_size=32, lm_head="int8"))
    generator = Generator(path, backend="cuda", prefill_chunk=64)
    assert "attention_blocks_per_sm=64" in generator.backend
    assert_prefill_and_decode_match_transformers(generator, path, prompt=300, total=312, seed=2)


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("group_size, heads, head_dim", [(64, (4, 2), 64), (128, (2, 1), 128), (128, (4, 2), 32)])
def test_prepared_operands_of_every_group_size_match_transformers(tmp_path, group_size, heads, head_dim):
    """In decode the RMSNorm, the attention and the gate/up kernel write the next q4 layer's prepared operand
    for the model's group size: groups of 64 and 128 (2 and 4 gate/up blocks per group of the down
    projection's input, the last of them to finish prepares it), heads of one or two groups (the attention
    prepares), and heads of 32 with groups of 128 (the o projection prepares its input itself)."""
    from awq_edge.quantize import QuantizeOptions, quantize_model
    from tiny_models import save_tiny_model
    source = save_tiny_model("llama", tmp_path / "hf", num_attention_heads=heads[0], num_key_value_heads=heads[1],
                             head_dim=head_dim)
    path = tmp_path / "model.awqe"
    quantize_model(source, path, QuantizeOptions(method="rtn", group_size=group_size, lm_head="int8"))
    assert_prefill_and_decode_match_transformers(Generator(path, backend="cuda"), path, prompt=20, total=40, seed=3)


# Attention shapes the tiny kinds (head_dim 32, 2 query heads per kv head) do not reach: more than 8
# query heads per kv head (two blocks per kv head), and head dims that take 2, 4 (with a partial
# last element) and 8 elements per lane.
ATTENTION_SHAPES = {
    "group16": dict(num_attention_heads=16, num_key_value_heads=1, head_dim=16),
    "head_dim64": dict(num_attention_heads=2, num_key_value_heads=1, head_dim=64),
    "head_dim80": dict(num_attention_heads=2, num_key_value_heads=2, head_dim=80),
    "head_dim128": dict(num_attention_heads=2, num_key_value_heads=1, head_dim=128),
    "head_dim256": dict(num_attention_heads=1, num_key_value_heads=1, head_dim=256),
}


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("shape", sorted(ATTENTION_SHAPES))
def test_attention_shapes_match_transformers(tmp_path, shape):
    from awq_edge.quantize import QuantizeOptions, quantize_model
    from tiny_models import save_tiny_model
    source = save_tiny_model("llama", tmp_path / "hf", **ATTENTION_SHAPES[shape])
    path = tmp_path / "model.awqe"
    quantize_model(source, path, QuantizeOptions(method="rtn", group_size=32, lm_head="int8"))
    assert_prefill_and_decode_match_transformers(Generator(path, backend="cuda"), path, prompt=20, total=40, seed=1)


# The emulator's runtime answers as a machine without a GPU, with an old driver or GPU, or with a build
# that lacks this GPU's kernels would (cuda/emulator/include/cuda_runtime.h): the backend's own checks
# and messages, which a GPU machine cannot show.
EMULATED_DEVICES = {
    "none": "no NVIDIA GPU found",
    "old-driver": r"the NVIDIA driver is missing or older than this build's CUDA runtime \d+\.\d+ \(install a "
                  r"driver for CUDA \d+\.\d+ or newer\)",
    "sm_75": r"GPU 0 \(.*\) has compute capability 7\.5; the CUDA backend needs 8\.0 or newer",
    "no-kernels": r"this build has no kernels for GPU 0 \(.*, sm_87\): it was compiled for CUDA architectures .*; "
                  r"rebuild with -DCMAKE_CUDA_ARCHITECTURES=\".*;87\"",
}
emulated_only = pytest.mark.skipif(not EMULATED, reason="the emulator's runtime plays the failing machine")


@pytest.mark.gpu
@gpu_only
@emulated_only
@pytest.mark.parametrize("device", EMULATED_DEVICES)
def test_emulated_machines_the_backend_cannot_use_are_clear_errors(tiny_awqe, monkeypatch, device):
    path = tiny_awqe("llama")
    monkeypatch.setenv("AWQ_EDGE_CUDA_EMULATOR_DEVICE", device)
    ok, reason = backends.available("cuda")
    assert not ok and re.match(EMULATED_DEVICES[device], reason), reason
    with pytest.raises(RuntimeError, match="backend 'cuda' cannot run here: " + EMULATED_DEVICES[device]):
        Generator(path, backend="cuda")
    assert Generator(path, backend="auto").backend.startswith("cpu")
    monkeypatch.setenv("AWQ_EDGE_CUDA_EMULATOR_DEVICE", "sm_90")  # a newer GPU than the emulated one runs
    assert backends.available("cuda") == (True, "")


@pytest.mark.gpu
@gpu_only
@emulated_only
def test_emulated_out_of_memory_names_what_did_not_fit_and_frees_what_it_took(tmp_path, monkeypatch):
    """An 8 MiB GPU: 65536 positions of KV cache (16 MiB of keys for 2 layers of 2 kv heads of 32) do not fit
    after the weights, 1024 do; the failed attempt gives its memory back, so the second one fits."""
    from awq_edge.quantize import QuantizeOptions, quantize_model
    from tiny_models import save_tiny_model
    path = tmp_path / "model.awqe"
    quantize_model(save_tiny_model("llama", tmp_path / "hf", max_position_embeddings=65536), path,
                   QuantizeOptions(method="rtn", group_size=32, lm_head="int8"))
    expected = Generator(path, backend="cpu", max_context=1024).generate("Hello", max_new_tokens=4, ignore_eos=True)
    monkeypatch.setenv("AWQ_EDGE_CUDA_EMULATOR_MEMORY_MIB", "8")
    with pytest.raises(RuntimeError, match=r"out of GPU memory: the KV cache's keys \(65536 positions \(max_context\) "
                                           r"x 2 layers\) needs 16\.0 MiB, [67]\.\d MiB of 8\.0 MiB are free \(use a "
                                           r"smaller max_context, a smaller model, or free the GPU\)"):
        Generator(path, backend="cuda", max_context=65536)
    generator = Generator(path, backend="cuda", max_context=1024)
    assert generator.generate("Hello", max_new_tokens=4, ignore_eos=True) == expected
    del generator  # its memory back
    monkeypatch.setenv("AWQ_EDGE_CUDA_EMULATOR_MEMORY_MIB", "0.005")  # layer 0's norm fits, its q weight does not
    with pytest.raises(RuntimeError, match=r"out of GPU memory: weight 'layers\.0\.attn\.q' \(q4_g32\) needs \d+ KiB, "
                                           r"\d+ KiB of 6 KiB"):
        Generator(path, backend="cuda", max_context=64)


@pytest.mark.gpu
@gpu_only
@pytest.mark.skipif(not os.uname().sysname == "Linux", reason="mincore's page cache report and posix_fadvise: Linux")
@pytest.mark.parametrize("emulated_device", ["discrete", "integrated"])
def test_loading_leaves_the_weights_file_cached_only_beside_a_discrete_gpu(tmp_path, monkeypatch, emulated_device):
    """A GPU that shares DRAM with the CPU (Jetson) would hold the weights twice if the file's pages stayed in the
    page cache after their upload: there the backend drops them; beside a discrete GPU they stay (a second load
    reads no disk). The emulator plays both (AWQ_EDGE_CUDA_EMULATOR_DEVICE=integrated); a GPU is what it is."""
    from awq_edge.awqe.reader import AwqeFile
    from awq_edge.quantize import QuantizeOptions, quantize_model
    from tiny_models import save_tiny_model
    if EMULATED:
        monkeypatch.setenv("AWQ_EDGE_CUDA_EMULATOR_DEVICE", "" if emulated_device == "discrete" else "integrated")
    path = tmp_path / "model.awqe"  # q4 weights of 8 to 64 KiB: over 100 whole pages in all
    quantize_model(save_tiny_model("llama", tmp_path / "hf", hidden_size=256, intermediate_size=512),
                   path, QuantizeOptions(method="rtn", group_size=64, lm_head="int8"))
    infos = AwqeFile(path, verify=False).tensor_infos
    weights = [(info.offset, info.size) for name, info in infos.items() if name.endswith(".qweight")]
    with open(path, "rb") as file:
        file.read()
        os.fsync(file.fileno())  # written back: the kernel drops no page that still waits to be written
    cached, total = cached_pages(path, weights)  # pages wholly inside the q4 weights
    assert total >= 100
    if cached < total:
        pytest.skip(f"this file system keeps {cached} of the file's {total} read pages cached")

    generator = Generator(path, backend="cuda", max_context=64)
    integrated = "shared with the CPU" in generator.backend
    if not EMULATED and integrated != (emulated_device == "integrated"):
        pytest.skip(f"this GPU is not {emulated_device} ({generator.backend})")
    assert cached_pages(path, weights) == ((0, total) if integrated else (total, total)), generator.backend
    expected = Generator(path, backend="cpu").generate("Hello", max_new_tokens=3, ignore_eos=True)
    assert generator.generate("Hello", max_new_tokens=3, ignore_eos=True) == expected


@pytest.mark.gpu
@gpu_only
@emulated_only
def test_an_untied_embedding_table_stays_in_the_files_mapping(tmp_path, monkeypatch):
    """Only the embedding reads an untied table, a row per token: the backend leaves it in the file's mapping and
    sends a step's rows with its token ids (host_embedding.h). Here a model whose fp16 table (8192 x 128, 2 MiB)
    is most of it loads on a 4 MiB GPU, and with AWQ_EDGE_CUDA_EMBEDDING=gpu (the table uploaded like a weight)
    needs 2 MiB more; both give the CPU backend's logits, eager, recorded and replayed decode steps alike."""
    from awq_edge.quantize import QuantizeOptions, quantize_model
    from tiny_models import save_tiny_model
    path = tmp_path / "model.awqe"
    quantize_model(save_tiny_model("llama", tmp_path / "hf", vocab_size=8192), path,
                   QuantizeOptions(method="rtn", group_size=32, lm_head="int8"))
    ids = np.random.default_rng(5).integers(0, 8192, 14).tolist()
    expected = logits_of_prefill_and_decode(Generator(path, backend="cpu"), ids, prompt=8)
    bound = RELATIVE * np.abs(expected).max() + ABSOLUTE
    monkeypatch.setenv("AWQ_EDGE_CUDA_EMULATOR_MEMORY_MIB", "4")
    got = logits_of_prefill_and_decode(Generator(path, backend="cuda", max_context=64), ids, prompt=8)
    assert np.abs(got - expected).max() <= bound
    monkeypatch.setenv("AWQ_EDGE_CUDA_EMBEDDING", "gpu")
    with pytest.raises(RuntimeError, match=r"out of GPU memory: an activation \(64, 8192\) needs 2\.0 MiB, \d+ KiB of 4\.0 MiB"):
        Generator(path, backend="cuda", max_context=64)
    monkeypatch.setenv("AWQ_EDGE_CUDA_EMULATOR_MEMORY_MIB", "6")
    got = logits_of_prefill_and_decode(Generator(path, backend="cuda", max_context=64), ids, prompt=8)
    assert np.abs(got - expected).max() <= bound
    monkeypatch.setenv("AWQ_EDGE_CUDA_EMBEDDING", "pinned")
    with pytest.raises(ValueError, match="AWQ_EDGE_CUDA_EMBEDDING='pinned': expected 'host' .* or 'gpu'"):
        Generator(path, backend="cuda", max_context=64)


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("embedding", ["f16", "q8_row", "q4_g64"])
def test_an_untied_embedding_table_gives_the_same_logits_in_the_mapping_as_uploaded(tmp_path, monkeypatch, embedding):
    """f16 and q8_row tables stay in the file's mapping (a step's rows sent as stored, read by the same embedding
    kernel), a q4 one is uploaded either way: the logits are bitwise those with the table uploaded
    (AWQ_EDGE_CUDA_EMBEDDING=gpu), through prefill chunks, eager, recorded and replayed decode steps, and agree
    with the CPU backend."""
    path = write_random_model(tmp_path / "model.awqe", "tiny", "q4_g64", lm_head="q8_row", embedding=embedding)
    ids = np.random.default_rng(7).integers(0, 512, 40).tolist()

    def run(place):
        monkeypatch.setenv("AWQ_EDGE_CUDA_EMBEDDING", place)
        generator = Generator(path, backend="cuda", prefill_chunk=16)
        return logits_of_prefill_and_decode(generator, ids, prompt=34)

    in_mapping, uploaded = run("host"), run("gpu")
    assert np.array_equal(in_mapping, uploaded)
    expected = logits_of_prefill_and_decode(Generator(path, backend="cpu"), ids, prompt=34)
    assert np.abs(in_mapping - expected).max() <= RELATIVE * np.abs(expected).max() + ABSOLUTE


@pytest.mark.gpu
@gpu_only
def test_weights_in_pinned_host_memory_give_the_same_logits(tmp_path, monkeypatch):
    """AWQ_EDGE_CUDA_WEIGHTS=host: the linear layers' weights (q4 layers, q8_row LM head) in pinned host memory that
    the kernels read through the GPU's address space, what reading the file's mapping in place would get: the
    logits are bitwise those with the weights in GPU memory, through prefill chunks, eager, recorded and replayed
    decode steps."""
    path = write_random_model(tmp_path / "model.awqe", "tiny", "q4_g64", lm_head="q8_row")
    ids = np.random.default_rng(11).integers(0, 512, 40).tolist()

    def run(place):
        monkeypatch.setenv("AWQ_EDGE_CUDA_WEIGHTS", place)
        generator = Generator(path, backend="cuda", prefill_chunk=16)
        assert ("weights in pinned host memory" in generator.backend) == (place == "host"), generator.backend
        return logits_of_prefill_and_decode(generator, ids, prompt=34)

    assert np.array_equal(run("host"), run("gpu"))


@pytest.mark.gpu
@gpu_only
@emulated_only
def test_weights_in_pinned_host_memory_leave_the_gpu_memory_to_the_rest(tmp_path, monkeypatch):
    """With AWQ_EDGE_CUDA_WEIGHTS=host the weights take no GPU memory: a model whose f16 LM head and q4 layers
    (about 0.9 MiB) do not fit beside the activations in 1.25 MiB of a discrete GPU loads and gives the logits of
    the weights in GPU memory. An integrated GPU's pinned memory is its GPU memory (one DRAM): no room gained.
    A wrong value is an error that names the variable and the values it takes."""
    path = write_random_model(tmp_path / "model.awqe", "tiny", "q4_g64", lm_head="f16")
    ids = np.random.default_rng(12).integers(0, 512, 12).tolist()
    expected = logits_of_prefill_and_decode(Generator(path, backend="cuda", max_context=64), ids, prompt=8)
    monkeypatch.setenv("AWQ_EDGE_CUDA_EMULATOR_MEMORY_MIB", "1.25")
    with pytest.raises(RuntimeError, match=r"out of GPU memory: .* of 1\.2 MiB are free"):
        Generator(path, backend="cuda", max_context=64)
    monkeypatch.setenv("AWQ_EDGE_CUDA_WEIGHTS", "host")
    got = logits_of_prefill_and_decode(Generator(path, backend="cuda", max_context=64), ids, prompt=8)
    assert np.array_equal(got, expected)
    monkeypatch.setenv("AWQ_EDGE_CUDA_EMULATOR_DEVICE", "integrated")
    with pytest.raises(RuntimeError, match=r"out of (GPU|pinned host) memory: "):
        Generator(path, backend="cuda", max_context=64)
    monkeypatch.setenv("AWQ_EDGE_CUDA_EMULATOR_MEMORY_MIB", "0.75")  # the LM head is where the pinned memory ends
    with pytest.raises(RuntimeError, match=r"out of pinned host memory: weight 'lm_head' \(f16\) needs 256 KiB "
                                           r"\(AWQ_EDGE_CUDA_WEIGHTS=host; unset it"):
        Generator(path, backend="cuda", max_context=64)
    monkeypatch.setenv("AWQ_EDGE_CUDA_WEIGHTS", "pinned")
    with pytest.raises(ValueError, match="AWQ_EDGE_CUDA_WEIGHTS='pinned': expected 'gpu' .* or 'host'"):
        Generator(path, backend="cuda", max_context=64)
