import json
from types import SimpleNamespace

import pytest
import transformers
from tiny_models import TINY_KINDS, tiny_hf_model

from awq_edge.models import ModelConfig, UnsupportedModelError, hf_tensor_names

# kind -> (architecture, attention_bias, attention_out_bias, mlp_bias)
EXPECTED = {
    "llama": ("llama", False, False, False),
    "llama_tied": ("llama", False, False, False),
    "llama3_rope": ("llama", False, False, False),
    "llama_linear_rope": ("llama", False, False, False),
    "llama_bias": ("llama", True, True, False),
    "llama_mlp_bias": ("llama", False, False, True),
    "mistral": ("mistral", False, False, False),
    "qwen2": ("qwen2", True, False, False),
}
ROPES = {
    "llama3_rope": {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
    "llama_linear_rope": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0},
    "qwen2": {"rope_type": "default", "rope_theta": 1000000.0},
}


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_from_hf(kind):
    config = ModelConfig.from_hf(tiny_hf_model(kind).config)
    architecture, attention_bias, attention_out_bias, mlp_bias = EXPECTED[kind]
    assert config.architecture == architecture
    assert config.hf_architecture == {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                                      "qwen2": "Qwen2ForCausalLM"}[architecture]
    assert (config.attention_bias, config.attention_out_bias, config.mlp_bias) == (
        attention_bias, attention_out_bias, mlp_bias)
    assert (config.vocab_size, config.hidden_size, config.intermediate_size, config.num_hidden_layers) == (
        256, 128, 256, 2)
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (4, 2, 32)
    assert config.rope == ROPES.get(kind, {"rope_type": "default", "rope_theta": 10000.0})
    assert config.tie_word_embeddings == (kind == "llama_tied")
    assert config.sliding_window == (64 if kind == "mistral" else None)
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (1, [2], None)


def test_head_dim_defaults_to_hidden_over_heads():
    hf = transformers.Qwen2Config(hidden_size=96, num_attention_heads=3, num_key_value_heads=1, eos_token_id=[5, 7])
    config = ModelConfig.from_hf(hf)
    assert config.head_dim == 32
    assert config.eos_token_id == [5, 7]


def test_transformers_4_rope_fields():
    hf = SimpleNamespace(**tiny_hf_model("llama").config.to_dict())
    del hf.rope_parameters
    hf.rope_theta, hf.rope_scaling = 500000.0, {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                 "high_freq_factor": 4.0}
    assert ModelConfig.from_hf(hf).rope == {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                            "original_max_position_embeddings": 128}
    hf.rope_scaling = None
    assert ModelConfig.from_hf(hf).rope == {"rope_type": "default", "rope_theta": 500000.0}


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_metadata_round_trip(kind):
    config = ModelConfig.from_hf(tiny_hf_model(kind).config)
    metadata = json.loads(json.dumps(config.to_metadata()))
    assert "architecture" not in metadata
    assert ModelConfig.from_metadata(metadata) == config
    assert ModelConfig.from_metadata({**metadata, "a_field_from_version_1_1": 3}) == config


def test_metadata_missing_field():
    metadata = ModelConfig.from_hf(tiny_hf_model("llama").config).to_metadata()
    del metadata["head_dim"]
    with pytest.raises(ValueError, match="head_dim"):
        ModelConfig.from_metadata(metadata)


def test_unsupported_architecture():
    with pytest.raises(UnsupportedModelError, match="GPT2LMHeadModel.*LlamaForCausalLM, MistralForCausalLM, Qwen2"):
        ModelConfig.from_hf(transformers.GPT2Config(architectures=["GPT2LMHeadModel"]))
    metadata = ModelConfig.from_hf(tiny_hf_model("llama").config).to_metadata()
    with pytest.raises(UnsupportedModelError, match="PhiForCausalLM"):
        ModelConfig.from_metadata({**metadata, "hf_architecture": "PhiForCausalLM"})


def test_unsupported_rope_type():
    hf = transformers.LlamaConfig(rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                                   "original_max_position_embeddings": 32})
    with pytest.raises(UnsupportedModelError, match="'yarn'.*default, linear, llama3"):
        ModelConfig.from_hf(hf)


def test_unsupported_activation():
    with pytest.raises(UnsupportedModelError, match="gelu"):
        ModelConfig.from_hf(transformers.LlamaConfig(hidden_act="gelu"))


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_hf_tensor_names_cover_state_dict(kind):
    model = tiny_hf_model(kind)
    names = hf_tensor_names(ModelConfig.from_hf(model.config))
    expected = set(model.state_dict()) - ({"lm_head.weight"} if kind == "llama_tied" else set())
    assert sorted(names.values()) == sorted(expected)
    assert names["layers.1.attn_norm.weight"] == "model.layers.1.input_layernorm.weight"
    assert names["layers.1.mlp_norm.weight"] == "model.layers.1.post_attention_layernorm.weight"
