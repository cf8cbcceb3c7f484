"""Perplexity arithmetic, and the file-in-transformers path against the reference decoder."""
import math

import pytest
import torch

from awq_edge.awqe import AwqeFile
from awq_edge.evaluate import load_awqe_as_transformers, perplexity, transformers_logits
from awq_edge.models import ModelConfig
from awq_edge.quantize import QuantizeOptions, quantize_model
from awq_edge.reference.decoder import decoder_forward
from tiny_models import save_tiny_model


def bigram_logits(table):
    """A 'model' whose next-token distribution depends only on the current token: context-free, so every
    window gives the same per-token loss and sliding-window perplexity equals the full-sequence one."""
    return lambda ids: table[ids]


def test_sliding_window_scores_every_token_once():
    torch.manual_seed(0)
    table = torch.randn(50, 50)
    ids = torch.randint(0, 50, (1000,))
    log_probs = torch.log_softmax(table[ids[:-1]], dim=-1)
    expected = math.exp(-log_probs.gather(1, ids[1:, None]).mean().item())
    for window, stride in [(1000, 1000), (128, 64), (64, 1), (2000, 100)]:
        ppl = perplexity(bigram_logits(table), ids, window, stride)
        assert ppl.tokens == 999
        assert ppl.value == pytest.approx(expected, rel=1e-5)
    assert perplexity(bigram_logits(table), ids, 100, 100).tokens == 999 - 9  # windows without overlap


def test_bad_window_is_rejected():
    with pytest.raises(ValueError, match="stride"):
        perplexity(lambda ids: ids, torch.arange(10), window=4, stride=8)


@pytest.mark.parametrize("kind", ["llama", "llama_tied", "qwen2", "llama3_rope"])
def test_file_in_transformers_matches_reference_decoder(tmp_path, kind):
    directory = save_tiny_model(kind, tmp_path / kind)
    out = tmp_path / "m.awqe"
    quantize_model(directory, out, QuantizeOptions(method="rtn", group_size=32, lm_head="int8"))
    model, tokenizer = load_awqe_as_transformers(out)
    f = AwqeFile(out)
    config = ModelConfig.from_metadata(f.metadata["config"])
    weights = {name: torch.from_numpy(array) for name, array in f.float_weights().items()}
    ids = torch.tensor([tokenizer("def add(a, b): return a + b")["input_ids"] * 3])
    expected = decoder_forward(ids, weights, config)
    got = transformers_logits(model)(ids)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
