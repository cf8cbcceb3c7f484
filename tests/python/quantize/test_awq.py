"""AWQ: folding keeps the float model, the searches never lose to their own baseline, AWQ beats RTN per layer."""
import pytest
import torch

from awq_edge.models import ModelConfig
from awq_edge.quantize import awq
from awq_edge.quantize.grouped import fake_quantize
from awq_edge.reference.decoder import decoder_layer, rope_cos_sin
from tiny_models import tiny_hf_model

LINEAR_KEYS = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
               "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}


def first_layer(kind):
    model = tiny_hf_model(kind)
    config = ModelConfig.from_hf(model.config)
    block = model.model.layers[0]
    layer = {"attn_norm": block.input_layernorm.weight, "mlp_norm": block.post_attention_layernorm.weight}
    for short, path in LINEAR_KEYS.items():
        linear = block.get_submodule(path)
        layer[short] = linear.weight
        if linear.bias is not None:
            layer[f"{short}_bias"] = linear.bias
    return {k: v.detach().clone() for k, v in layer.items()}, config


def calibration_like_input(config, n=4, seqlen=48, seed=0):
    """Hidden states with a few large 'salient' channels, as in real LLM activations."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, seqlen, config.hidden_size, generator=g)
    x[..., :4] *= 12.0
    return x


@pytest.mark.parametrize("kind", ["llama", "llama_tied", "qwen2", "llama_bias", "llama_mlp_bias", "mistral"])
def test_folding_scales_keeps_the_float_layer(kind):
    layer, config = first_layer(kind)
    x = calibration_like_input(config)
    cos, sin = rope_cos_sin(config, torch.arange(x.shape[1]))
    before = decoder_layer(x, layer, config, cos, sin)
    g = torch.Generator().manual_seed(1)
    kv = config.num_key_value_heads * config.head_dim
    scales = {"attn_in": torch.rand(config.hidden_size, generator=g) * 3 + 0.2,
              "o_in": torch.rand(kv, generator=g) * 3 + 0.2,
              "mlp_in": torch.rand(config.hidden_size, generator=g) * 3 + 0.2,
              "down_in": torch.rand(config.intermediate_size, generator=g) * 3 + 0.2}
    awq.apply_scales(layer, scales, config)
    after = decoder_layer(x, layer, config, cos, sin)
    relative = (after - before).norm() / before.norm()
    assert relative < 1e-5


def test_features_follow_the_fold():
    layer, config = first_layer("llama")
    x = calibration_like_input(config)
    cos, sin = rope_cos_sin(config, torch.arange(x.shape[1]))
    _, features = awq.layer_forward(x, layer, config, cos, sin)
    scales = {"attn_in": torch.rand(config.hidden_size) + 0.5,
              "o_in": torch.rand(config.num_key_value_heads * config.head_dim) + 0.5,
              "mlp_in": torch.rand(config.hidden_size) + 0.5, "down_in": torch.rand(config.intermediate_size) + 0.5}
    awq.apply_scales(layer, scales, config)
    awq.scale_features(features, scales, config)
    _, refolded = awq.layer_forward(x, layer, config, cos, sin)
    for name in ("attn_in", "o_in", "mlp_in", "down_in"):
        torch.testing.assert_close(getattr(features, name), getattr(refolded, name), rtol=1e-4, atol=1e-5)


def test_scale_search_never_loses_to_round_to_nearest():
    layer, config = first_layer("llama")
    x = calibration_like_input(config)
    cos, sin = rope_cos_sin(config, torch.arange(x.shape[1]))
    _, features = awq.layer_forward(x, layer, config, cos, sin)
    best, losses = awq.search_layer_scales(layer, features, config, cos, sin, bits=4, group_size=32)
    assert set(best) == {"attn_in", "o_in", "mlp_in", "down_in"}
    for group, values in losses.items():
        assert len(values) == 20 and min(values) <= values[0]   # ratio 0 is plain RTN
    assert losses["attn_in"].index(min(losses["attn_in"])) > 0  # salient channels make scaling pay


def test_gram_error_equals_direct_error():
    torch.manual_seed(0)
    x = torch.randn(3, 40, 128)
    weight = torch.randn(16, 128) * 0.05
    gram = awq.group_gram(x, 64)
    d = fake_quantize(weight, 4, 64) - weight
    direct = torch.stack([((x.reshape(-1, 128)[:, j * 64:(j + 1) * 64] @ d[:, j * 64:(j + 1) * 64].T) ** 2).mean(0)
                          for j in range(2)])                              # (G, N)
    dg = d.view(16, 2, 64).transpose(0, 1)
    via_gram = (torch.bmm(dg, gram) * dg).sum(-1)
    torch.testing.assert_close(via_gram, direct, rtol=1e-4, atol=1e-9)


def test_clip_search_never_loses_to_no_clip():
    torch.manual_seed(0)
    x = torch.randn(2, 64, 128)
    weight = torch.randn(24, 128) * 0.05
    weight[:, 5] = 0.5                                                     # outliers that clipping should trim
    gram = awq.group_gram(x, 32)
    clip = awq.search_clip(weight, gram, 4, 32)
    err = lambda w: ((x.reshape(-1, 128) @ (w - weight).T) ** 2).mean()  # noqa: E731
    assert clip.shape == (24, 4)
    assert err(fake_quantize(weight, 4, 32, clip)) <= err(fake_quantize(weight, 4, 32))
