"""quantize_model end to end on tiny random models: exact RTN, AWQ beating RTN per layer, options, errors."""
import json

import pytest
import torch
from safetensors.torch import load_file

from awq_edge.awqe import AwqeFile
from awq_edge.evaluate import tokenizer_from_metadata
from awq_edge.models import ModelConfig, UnsupportedModelError, hf_tensor_names
from awq_edge.quantize import QuantizeError, QuantizeOptions, quantize_model, resolve_group_size
from awq_edge.quantize.grouped import fake_quantize
from awq_edge.reference.decoder import decoder_layer, layer_weights, rope_cos_sin
from awq_edge.corpus import BUILTIN_EVALUATION, read_texts
from tiny_models import save_tiny_model, tiny_hf_model, tiny_tokenizer

SMALL_CALIBRATION = dict(n_samples=8, seqlen=64)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return save_tiny_model("llama", tmp_path_factory.mktemp("llama"))


def file_weights(path) -> dict:
    """Canonical float weights of a file, dequantized by the numpy reference."""
    return {name: torch.from_numpy(array) for name, array in AwqeFile(path).float_weights().items()}


def test_rtn_file_holds_exactly_the_round_to_nearest_weights(llama_dir, tmp_path):
    out = tmp_path / "rtn.awqe"
    quantize_model(llama_dir, out, QuantizeOptions(method="rtn", bits=4, group_size=64))
    source = load_file(llama_dir / "model.safetensors")
    config = ModelConfig.from_hf(tiny_hf_model("llama").config)
    weights = file_weights(out)
    for canonical, hf_name in hf_tensor_names(config).items():
        original = source[hf_name].float()
        if canonical.startswith("layers.") and canonical.rsplit(".", 2)[-2] in ("q", "k", "v", "o", "gate", "up", "down"):
            expected = fake_quantize(original, 4, 64)
        else:
            expected = original.half().float()
        assert torch.equal(weights[canonical], expected), canonical
    meta = AwqeFile(out).metadata
    assert meta["quantization"] == {"method": "rtn", "bits": 4, "group_size": 64, "zero_point": True,
                                    "embedding": "f16", "lm_head": "f16", "overrides": {}}
    assert meta["provenance"]["calibration"] is None
    assert meta["tokenizer"]["tokenizer_json"] == json.loads((llama_dir / "tokenizer.json").read_text())


def layer_errors(path, source_weights, config, ids):
    """Per layer: |quantized layer(x) - float layer(x)| / |float layer(x)| with x the float model's input."""
    quantized = file_weights(path)
    cos, sin = rope_cos_sin(config, torch.arange(ids.shape[1]))
    x = torch.nn.functional.embedding(ids, source_weights["embed.weight"])
    errors = []
    for i in range(config.num_hidden_layers):
        reference = decoder_layer(x, layer_weights(source_weights, i), config, cos, sin)
        got = decoder_layer(x, layer_weights(quantized, i), config, cos, sin)
        errors.append(((got - reference).norm() / reference.norm()).item())
        x = reference
    return errors


@pytest.mark.parametrize("bits", [4, 3])
def test_awq_layer_error_is_below_rtn(tmp_path, bits):
    """A tiny LLaMA with salient residual channels (as real LLMs have); errors on held-out text."""
    model = tiny_hf_model("llama", num_hidden_layers=3)
    with torch.no_grad():
        model.model.embed_tokens.weight[:, :6] *= 15.0
    model.save_pretrained(tmp_path / "model")
    tiny_tokenizer().save_pretrained(tmp_path / "model")
    options = dict(bits=bits, group_size=32, **SMALL_CALIBRATION)
    quantize_model(tmp_path / "model", tmp_path / "awq.awqe", QuantizeOptions(method="awq", **options))
    quantize_model(tmp_path / "model", tmp_path / "rtn.awqe", QuantizeOptions(method="rtn", **options))
    config = ModelConfig.from_hf(model.config)
    source = {canonical: model.state_dict()[hf].float() for canonical, hf in hf_tensor_names(config).items()}
    tokenizer = tokenizer_from_metadata(AwqeFile(tmp_path / "awq.awqe").metadata["tokenizer"])
    ids = torch.tensor(tokenizer(read_texts(BUILTIN_EVALUATION)[:20000])["input_ids"][:4 * 64]).view(4, 64)
    awq_errors = layer_errors(tmp_path / "awq.awqe", source, config, ids)
    rtn_errors = layer_errors(tmp_path / "rtn.awqe", source, config, ids)
    assert all(a < r for a, r in zip(awq_errors, rtn_errors)), (awq_errors, rtn_errors)


@pytest.mark.parametrize("kind", ["qwen2", "mistral", "llama_tied", "llama3_rope", "llama_mlp_bias"])
def test_awq_runs_on_every_supported_kind(tmp_path, kind):
    directory = save_tiny_model(kind, tmp_path / kind)
    out = tmp_path / "m.awqe"
    report = quantize_model(directory, out, QuantizeOptions(group_size="auto", n_samples=4, seqlen=32, n_grid=4))
    f = AwqeFile(out)
    assert f.metadata["architecture"] == {"qwen2": "qwen2", "mistral": "mistral"}.get(kind, "llama")
    assert report.group_size == 128 and f.metadata["quantization"]["group_size"] == 128
    assert f.metadata["provenance"]["calibration"]["n_tokens"] == 4 * 32


def test_pytorch_bin_checkpoint(tmp_path):
    directory = save_tiny_model("qwen2", tmp_path / "bin", safe_serialization=False)
    assert not list(directory.glob("*.safetensors"))
    quantize_model(directory, tmp_path / "m.awqe", QuantizeOptions(method="rtn", group_size=32))
    assert AwqeFile(tmp_path / "m.awqe").metadata["provenance"]["source_format"] == "pytorch_bin"


@pytest.mark.parametrize("kind, lm_head, embed_scheme, head_scheme", [
    ("llama", "int8", "f16", "q8_row"), ("llama_tied", "int8", "q8_row", "tied"),
    ("llama", "int4", "f16", "q4_g64"), ("llama_tied", "fp16", "f16", "tied"),
])
def test_lm_head_storage(tmp_path, kind, lm_head, embed_scheme, head_scheme):
    directory = save_tiny_model(kind, tmp_path / kind)
    quantize_model(directory, tmp_path / "m.awqe", QuantizeOptions(method="rtn", group_size=64, lm_head=lm_head))
    quant = AwqeFile(tmp_path / "m.awqe").metadata["quantization"]
    assert (quant["embedding"], quant["lm_head"]) == (embed_scheme, head_scheme)


def test_group_size_that_does_not_divide_names_the_layer_and_the_sizes_that_work():
    config = ModelConfig.from_hf(tiny_hf_model("llama", hidden_size=576, num_attention_heads=9, num_key_value_heads=3,
                                               head_dim=64, intermediate_size=1536).config)
    with pytest.raises(QuantizeError, match=r"group size 128 does not divide the input dimension 576 of "
                                            r"layers\.\*\.attn\.q/k/v.*divide every quantized layer: 64, 32"):
        resolve_group_size(config, 128)
    assert resolve_group_size(config, "auto") == 64
    with pytest.raises(QuantizeError, match="group size 48 is not supported"):
        resolve_group_size(config, 48)


def test_unsupported_architecture_lists_the_supported_ones(tmp_path):
    import transformers
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    model.save_pretrained(tmp_path / "gpt2")
    with pytest.raises(UnsupportedModelError, match="LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"):
        quantize_model(tmp_path / "gpt2", tmp_path / "m.awqe")
    assert not (tmp_path / "m.awqe").exists()


def test_a_failed_export_leaves_no_file(llama_dir, tmp_path):
    def exploding_progress(layers):
        for i in layers:
            if i == 1:
                raise RuntimeError("interrupted at layer 1")
            yield i
    out = tmp_path / "m.awqe"
    with pytest.raises(RuntimeError, match="interrupted"):
        quantize_model(llama_dir, out, QuantizeOptions(method="rtn", group_size=64), progress=exploding_progress)
    assert list(tmp_path.iterdir()) == []


def test_too_little_calibration_text_is_a_clear_error(llama_dir, tmp_path):
    text = tmp_path / "calib.txt"
    text.write_text("only a few words here")
    with pytest.raises(ValueError, match="fewer than n_samples x seqlen = 128 x 512"):
        quantize_model(llama_dir, tmp_path / "m.awqe", QuantizeOptions(group_size=64, calibration=[str(text)]))
    assert not (tmp_path / "m.awqe").exists()


def test_sharded_safetensors_checkpoint(tmp_path):
    model = tiny_hf_model("llama")
    model.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    tiny_tokenizer().save_pretrained(tmp_path / "sharded")
    save_tiny_model("llama", tmp_path / "single")
    assert len(list((tmp_path / "sharded").glob("*.safetensors"))) > 1
    quantize_model(tmp_path / "sharded", tmp_path / "a.awqe", QuantizeOptions(method="rtn", group_size=64))
    quantize_model(tmp_path / "single", tmp_path / "b.awqe", QuantizeOptions(method="rtn", group_size=64))
    a, b = AwqeFile(tmp_path / "a.awqe"), AwqeFile(tmp_path / "b.awqe")
    assert all((a.tensor(name) == b.tensor(name)).all() for name in b.tensor_infos)
