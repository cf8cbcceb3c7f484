"""Small valid .awqe files with random contents, for format tests (no model, no quantizer)."""
import numpy as np

from awq_edge.awqe import AwqeWriter, expected_tensors

_DTYPES = {"F16": np.float16, "F32": np.float32, "I8": np.int8, "U8": np.uint8, "I32": np.int32, "U32": np.uint32}


def tiny_metadata(scheme_bits: int = 4, group_size: int = 32, tied: bool = False, lm_head: str = "f16",
                  embedding: str = "f16", overrides=None, **config) -> dict:
    """Metadata of a 2-layer model with hidden 64; `config` overrides config fields."""
    cfg = dict(
        hf_architecture="LlamaForCausalLM", vocab_size=96, hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=256, rms_norm_eps=1e-5, hidden_act="silu",
        rope={"rope_type": "default", "rope_theta": 10000.0}, tie_word_embeddings=tied,
        attention_bias=False, attention_out_bias=False, mlp_bias=False, sliding_window=None,
        bos_token_id=1, eos_token_id=[2], pad_token_id=None,
    )
    cfg.update(config)
    return {
        "format": "awqe",
        "architecture": "llama",
        "config": cfg,
        "tokenizer": {"tokenizer_json": {"version": "1.0", "model": {"type": "BPE"}}, "chat_template": None,
                      "bos_token": "<s>", "eos_token": "</s>", "pad_token": None, "unk_token": None,
                      "add_bos_token": True, "add_eos_token": False},
        "quantization": {"method": "rtn", "bits": scheme_bits, "group_size": group_size, "zero_point": True,
                         "embedding": embedding, "lm_head": "tied" if tied else lm_head,
                         "overrides": overrides or {}},
        "provenance": {"tool": "awq_edge", "tool_version": "test", "source_model": "random",
                       "source_format": "none", "calibration": None},
    }


def random_tensors(metadata: dict, seed: int = 0) -> dict:
    """Random contents of the right dtype and shape for every tensor the metadata asks for."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, (dtype, shape) in expected_tensors(metadata).items():
        np_dtype = _DTYPES[dtype]
        if np.issubdtype(np_dtype, np.floating):
            data = rng.uniform(0.001, 0.1, size=shape)
        else:
            info = np.iinfo(np_dtype)
            data = rng.integers(max(info.min, -127), min(info.max, 2**31 - 1), size=shape, endpoint=True)
        tensors[name] = data.astype(np_dtype)
    return tensors


def write_tiny_file(path, seed: int = 0, **metadata_options):
    """Write a complete random tiny model file; returns (metadata, tensors)."""
    metadata = tiny_metadata(**metadata_options)
    tensors = random_tensors(metadata, seed)
    with AwqeWriter(path) as writer:
        for name, array in tensors.items():
            writer.add_tensor(name, array)
        writer.finish(metadata)
    return metadata, tensors
