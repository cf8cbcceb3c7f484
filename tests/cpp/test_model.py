"""The C++ decoder (cpp/src/model.cpp) against Hugging Face transformers running the same dequantized weights.

Both compute in float32 and differ in summation order and, on the AVX2 decode path, in rounding the activations
to int16 per quantization group (relative error about 1.5e-5 per value, see cpp/backends/cpu/linear_avx2.cpp),
so logits agree to

    max |engine - transformers| <= 5e-4 * max |transformers| + 1e-4

at every position of a prefill (run in chunks) and of 32 decode steps that follow it.
"""
import numpy as np
import pytest
import torch

from awq_edge.evaluate import load_awqe_as_transformers
from awq_edge.generator import Generator
from tiny_models import TINY_KINDS

RELATIVE, ABSOLUTE = 5e-4, 1e-4
PROMPT, DECODE = 24, 32


def assert_logits_close(got: np.ndarray, expected: np.ndarray, what: str):
    bound = RELATIVE * np.abs(expected).max() + ABSOLUTE
    error = np.abs(got - expected).max()
    assert error <= bound, f"{what}: max |diff| {error:.3g} > {bound:.3g}"


def reference_logits(path, ids) -> np.ndarray:
    model, _ = load_awqe_as_transformers(path)
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def random_ids(vocab: int, n: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(0, vocab, n).tolist()


def check_prefill_and_decode(path, kernels="auto", prefill_chunk=8, threads=2):
    generator = Generator(path, threads=threads, kernels=kernels, prefill_chunk=prefill_chunk)
    ids = random_ids(generator.vocab_size, PROMPT + DECODE)
    expected = reference_logits(path, ids)
    prefill = generator.logits(ids[:PROMPT])
    assert prefill.shape == (PROMPT, generator.vocab_size)
    assert_logits_close(prefill, expected[:PROMPT], "prefill")
    for step in range(DECODE):
        position = PROMPT + step
        row = generator.logits([ids[position]])
        assert_logits_close(row[0], expected[position], f"decode step {step}")


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_every_position_matches_transformers(tiny_awqe, kind):
    check_prefill_and_decode(tiny_awqe(kind))


@pytest.mark.parametrize("options", [
    dict(bits=4, group_size=64, lm_head="fp16"),
    dict(bits=4, group_size=128, lm_head="int4"),
    dict(bits=3, group_size=32, lm_head="int8"),
    dict(bits=3, group_size=128, lm_head="fp16"),
])
@pytest.mark.parametrize("kind", ["llama", "llama_tied"])
def test_storage_schemes_match_transformers(tiny_awqe, kind, options):
    check_prefill_and_decode(tiny_awqe(kind, **options))


@pytest.mark.parametrize("kernels", ["reference", "avx2", "avx512"])
def test_kernel_levels_and_single_thread(tiny_awqe, kernels):
    from awq_edge._awq_edge.cpu_kernels import best_kernel_level
    levels = ["reference", "avx2", "avx512"]
    if levels.index(kernels) > levels.index(best_kernel_level()):
        pytest.skip(f"this CPU has no {kernels} kernels")
    check_prefill_and_decode(tiny_awqe("qwen2"), kernels=kernels, threads=1, prefill_chunk=128)


def test_kv_cache_matches_full_recompute(tiny_awqe):
    """Token-by-token decoding through the cache gives the logits of running the whole sequence at once."""
    path = tiny_awqe("llama")
    generator = Generator(path, threads=2)
    ids = random_ids(generator.vocab_size, 40, seed=3)
    full = generator.logits(ids)
    generator.reset()
    stepwise = np.concatenate([generator.logits([i]) for i in ids])
    assert_logits_close(stepwise, full, "token by token vs all at once")


def test_reset_and_chunk_size_do_not_change_logits(tiny_awqe):
    path = tiny_awqe("mistral")
    ids = random_ids(256, 50, seed=5)
    a = Generator(path, prefill_chunk=7).logits(ids)
    generator = Generator(path, prefill_chunk=128)
    generator.logits(ids[:10])
    generator.reset()
    b = generator.logits(ids)
    assert_logits_close(a, b, "chunk 7 vs chunk 128 after a reset")
