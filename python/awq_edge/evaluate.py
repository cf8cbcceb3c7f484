"""Perplexity of an .awqe file's weights, independent of any C++ kernel.

The file is read with the numpy reader, every weight is dequantized with the reference
dequantizer (awqe.schemes.dequantize_module), and the result is loaded into the Hugging Face
transformers model of the same architecture: what is measured is the file itself.
"""
import json
import math
from dataclasses import dataclass

import torch

from .awqe import AwqeFile
from .models import ModelConfig, hf_tensor_names

_HF_CONFIGS = {"llama": "LlamaConfig", "mistral": "MistralConfig", "qwen2": "Qwen2Config"}


def hf_config_from(config: ModelConfig):
    """The transformers config of the model an .awqe file describes."""
    import transformers
    rope = dict(config.rope)
    theta = rope.pop("rope_theta")
    kwargs = dict(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads, head_dim=config.head_dim,
        max_position_embeddings=config.max_position_embeddings, rms_norm_eps=config.rms_norm_eps,
        hidden_act=config.hidden_act, rope_theta=theta, rope_scaling=rope if rope["rope_type"] != "default" else None,
        tie_word_embeddings=config.tie_word_embeddings, bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id, architectures=[config.hf_architecture],
    )
    if config.architecture == "llama":
        kwargs.update(attention_bias=config.attention_bias, mlp_bias=config.mlp_bias)
    if config.architecture == "mistral":
        kwargs.update(sliding_window=config.sliding_window)
    return getattr(transformers, _HF_CONFIGS[config.architecture])(**kwargs)


def load_awqe_as_transformers(path):
    """(transformers model in float32 with the file's dequantized weights, its tokenizer)."""
    from transformers import AutoModelForCausalLM
    awqe = AwqeFile(path)
    config = ModelConfig.from_metadata(awqe.metadata["config"])
    model = AutoModelForCausalLM.from_config(hf_config_from(config), dtype=torch.float32)
    weights = awqe.float_weights()
    state = {hf_name: torch.from_numpy(weights[canonical]) for canonical, hf_name in hf_tensor_names(config).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [name for name in missing if not (config.tie_word_embeddings and name == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"'{path}': weights do not fit the transformers model (missing {missing}, "
                           f"unexpected {unexpected})")
    if config.tie_word_embeddings:
        model.tie_weights()
    return model.eval(), tokenizer_from_metadata(awqe.metadata["tokenizer"])


def load_source_as_transformers(path):
    """(transformers model in float32, tokenizer) of a source model: HF directory or .gguf file."""
    from transformers import AutoModelForCausalLM

    from .checkpoint import open_checkpoint
    source = open_checkpoint(path)  # checks the architecture; reads no weights
    where = dict(gguf_file=source.path.name) if source.path.is_file() else {}
    directory = source.path.parent if source.path.is_file() else source.path
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, **where)
    return model.eval(), source.tokenizer()


def tokenizer_from_metadata(meta: dict):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(meta["tokenizer_json"])),
        bos_token=meta.get("bos_token"), eos_token=meta.get("eos_token"), pad_token=meta.get("pad_token"),
        unk_token=meta.get("unk_token"), chat_template=meta.get("chat_template"))


@dataclass
class Perplexity:
    value: float
    tokens: int        # tokens scored


def perplexity(logits_fn, token_ids: torch.Tensor, window: int = 512, stride: int = 256) -> Perplexity:
    """Sliding-window perplexity over a 1-D token sequence: each window of `window` tokens scores only
    the tokens not scored by the previous window, so every token after the first is scored once, with
    at least window - stride tokens of context (except at the start). With stride == window the windows
    do not overlap and the first token of each window after the first is not scored (it has no context)."""
    if not 0 < stride <= window:
        raise ValueError(f"need 0 < stride <= window, got stride {stride}, window {window}")
    total_nll, scored, scored_until = 0.0, 0, 1
    for begin in range(0, max(1, len(token_ids) - 1), stride):
        end = min(begin + window, len(token_ids))
        ids = token_ids[begin:end][None]
        with torch.no_grad():
            logits = logits_fn(ids)[0].float()                          # (T, V)
        log_probs = torch.log_softmax(logits[:-1], dim=-1)
        targets = ids[0, 1:]
        nll = -log_probs.gather(1, targets[:, None])[:, 0]              # token t+1 given tokens <= t
        first_new = max(0, scored_until - begin - 1)                    # skip targets already scored
        total_nll += nll[first_new:].sum().item()
        scored += len(nll) - first_new
        scored_until = end
        if end == len(token_ids):
            break
    return Perplexity(math.exp(total_nll / scored), scored)


def transformers_logits(model):
    return lambda ids: model(input_ids=ids).logits
