"""The engine on the real model, SmolLM2-135M-Instruct quantized W4 g64 (RTN: the engine's agreement with
transformers does not depend on how the weights were chosen), against transformers running the same
dequantized weights in float32."""
import numpy as np
import pytest
import torch

from awq_edge.corpus import BUILTIN_EVALUATION, read_texts
from awq_edge.evaluate import load_awqe_as_transformers
from awq_edge.generator import Generator
from awq_edge.quantize import QuantizeOptions, quantize_model

pytestmark = pytest.mark.slow

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "<|im_start|>user\nWhat is the boiling point of water?<|im_end|>\n<|im_start|>assistant\n",
]
AGREEMENT_TOKENS, WINDOW = 2048, 512


@pytest.fixture(scope="module")
def smollm2_w4(smollm2_path, tmp_path_factory):
    path = tmp_path_factory.mktemp("engine_smollm2") / "rtn-w4g64.awqe"
    quantize_model(smollm2_path, path, QuantizeOptions(method="rtn", bits=4, group_size=64))
    model, tokenizer = load_awqe_as_transformers(path)
    return path, model, tokenizer


def test_greedy_64_tokens_identical_to_transformers(smollm2_w4):
    path, model, tokenizer = smollm2_w4
    generator = Generator(path)
    model.generation_config.eos_token_id = None  # like ignore_eos: run through end-of-sequence tokens
    for prompt in PROMPTS:
        ids = tokenizer(prompt)["input_ids"]
        assert generator.tokenize(prompt) == ids
        with torch.no_grad():
            expected = model.generate(torch.tensor([ids]), max_new_tokens=64, do_sample=False,
                                      pad_token_id=0)[0, len(ids):].tolist()
        generator.generate(ids, max_new_tokens=64, ignore_eos=True)
        assert generator.last_result.tokens == expected, prompt


def top1_agreement(smollm2_w4, backend: str) -> float:
    path, model, tokenizer = smollm2_w4
    ids = tokenizer(read_texts(BUILTIN_EVALUATION), add_special_tokens=False)["input_ids"][:AGREEMENT_TOKENS]
    generator = Generator(path, backend=backend)
    agree = 0
    for begin in range(0, len(ids), WINDOW):
        window = ids[begin:begin + WINDOW]
        generator.reset()
        ours = generator.logits(window).argmax(-1)
        with torch.no_grad():
            theirs = model(torch.tensor([window])).logits[0].argmax(-1).numpy()
        agree += int((ours == theirs).sum())
    return agree / len(ids)


def test_top1_agreement_over_long_text_is_at_least_99_percent(smollm2_w4):
    agreement = top1_agreement(smollm2_w4, "cpu")
    assert agreement >= 0.99, f"top-1 agreement {agreement:.4f}"


@pytest.mark.gpu
def test_cuda_top1_agreement_and_greedy_text(smollm2_w4):
    """The CUDA backend computes in fp16 where the CPU uses fp32 (cuda/: x and the KV cache in fp16), so
    it is held to the same agreement with transformers' float32 over long text, and its greedy text to
    the CPU backend's."""
    from awq_edge._awq_edge import backends
    usable, reason = backends.available("cuda") if "cuda" in backends.compiled() else (False, "not compiled")
    if not usable:
        pytest.skip(f"CUDA backend unusable: {reason}")
    agreement = top1_agreement(smollm2_w4, "cuda")
    assert agreement >= 0.99, f"CUDA top-1 agreement {agreement:.4f}"
    path = smollm2_w4[0]
    cpu, cuda = Generator(path, backend="cpu"), Generator(path, backend="cuda")
    for prompt in PROMPTS:
        expected = cpu.generate(prompt, max_new_tokens=32, ignore_eos=True)
        assert cuda.generate(prompt, max_new_tokens=32, ignore_eos=True) == expected, prompt


def test_reference_kernels_agree_with_avx2(smollm2_w4):
    path, _, tokenizer = smollm2_w4
    ids = tokenizer(PROMPTS[2])["input_ids"]
    fast = Generator(path, kernels="auto").logits(ids)
    reference = Generator(path, kernels="reference").logits(ids)
    assert np.abs(fast - reference).max() <= 1e-3 * np.abs(reference).max()
