import pytest
import torch
from tiny_models import TINY_KINDS, tiny_hf_model

from awq_edge.models import ModelConfig, hf_tensor_names
from awq_edge.reference import decoder_forward, layer_weights, rope_cos_sin, rope_inv_freq


def canonical_weights(model) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    return {ours: state[theirs] for ours, theirs in hf_tensor_names(ModelConfig.from_hf(model.config)).items()}


# Every kind at 20 tokens; the scaled rope kinds also well past llama3's original context of 32.
CASES = [(kind, 20) for kind in TINY_KINDS] + [("llama3_rope", 100), ("llama_linear_rope", 100)]


@pytest.mark.parametrize("kind, seqlen", CASES)
def test_logits_match_transformers(kind, seqlen):
    model = tiny_hf_model(kind)
    model.set_attn_implementation("eager")  # explicit softmax(q k^T / sqrt(D)), independent of our SDPA call
    config = ModelConfig.from_hf(model.config)
    input_ids = torch.randint(0, config.vocab_size, (2, seqlen), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(input_ids).logits  # (2, seqlen, V)
        logits = decoder_forward(input_ids, canonical_weights(model), config)
    assert logits.shape == expected.shape and logits.dtype == torch.float32
    assert expected.std() > 0.5, "the tiny model's logits should not be trivial"
    assert (logits - expected).abs().max() <= 1e-5 * expected.abs().max()


@pytest.mark.parametrize("kind", ["llama", "llama3_rope", "llama_linear_rope", "qwen2"])
def test_rope_matches_transformers(kind):
    model = tiny_hf_model(kind)
    config = ModelConfig.from_hf(model.config)
    rotary = model.model.rotary_emb
    inv_freq, scaling = rope_inv_freq(config)
    assert inv_freq.dtype == torch.float32 and inv_freq.shape == (config.head_dim // 2,)
    torch.testing.assert_close(inv_freq, rotary.inv_freq, rtol=1e-6, atol=0)
    assert scaling == rotary.attention_scaling
    positions = torch.arange(100)
    cos, sin = rope_cos_sin(config, positions)
    hf_cos, hf_sin = rotary(torch.zeros(1, dtype=torch.float32), positions[None])
    torch.testing.assert_close(cos, hf_cos[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(sin, hf_sin[0], rtol=0, atol=1e-5)


def test_llama3_rope_scales_only_slow_frequencies():
    config = ModelConfig.from_hf(tiny_hf_model("llama3_rope").config)
    plain = ModelConfig.from_hf(tiny_hf_model("llama").config)
    ratio = rope_inv_freq(plain)[0] / rope_inv_freq(config)[0]
    assert ratio[0] == 1.0  # wavelength 6.3 < 32 / high_freq_factor: kept
    assert 1.0 < ratio[1] < 8.0 and 1.0 < ratio[2] < 8.0  # wavelengths 11 and 20: interpolated
    torch.testing.assert_close(ratio[3:], torch.full_like(ratio[3:], 8.0))  # longer than 32: divided by factor


def test_layer_weights_keys_and_float32():
    weights = {name: w.half() for name, w in canonical_weights(tiny_hf_model("qwen2")).items()}
    layer = layer_weights(weights, 1)
    assert set(layer) == {"attn_norm", "q", "k", "v", "o", "mlp_norm", "gate", "up", "down",
                          "q_bias", "k_bias", "v_bias"}
    assert all(w.dtype == torch.float32 for w in layer.values())
    assert torch.equal(layer["k_bias"], weights["layers.1.attn.k.bias"].float())
