"""Tiny random Hugging Face models and a tokenizer for them, built offline and deterministically.

Every kind has 2 layers, hidden 128, intermediate 256, 4 query heads and 2 key-value heads of head_dim 32 and a
vocabulary of 256, so every linear input dimension (128, 256) is a multiple of every group size (32, 64, 128).
Weights are redrawn from a fixed seed with a spread large enough that logits are far from trivial.
"""

import string
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

_BASE = dict(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=32, max_position_embeddings=128, rms_norm_eps=1e-5,
             bos_token_id=1, eos_token_id=2, pad_token_id=None, tie_word_embeddings=False)

# kind -> (config class, model class, config fields over _BASE)
KINDS = {
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM, {}),
    "llama_tied": (transformers.LlamaConfig, transformers.LlamaForCausalLM, {"tie_word_embeddings": True}),
    # original context 32 puts head_dim 32's wavelengths (6.3 .. 35000) in all three llama3 bands
    "llama3_rope": (transformers.LlamaConfig, transformers.LlamaForCausalLM, {"rope_parameters": {
        "rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32}}),
    "llama_linear_rope": (transformers.LlamaConfig, transformers.LlamaForCausalLM, {"rope_parameters": {
        "rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}}),
    "llama_bias": (transformers.LlamaConfig, transformers.LlamaForCausalLM, {"attention_bias": True}),
    "llama_mlp_bias": (transformers.LlamaConfig, transformers.LlamaForCausalLM, {"mlp_bias": True}),
    "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM, {"sliding_window": 64}),
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM, {"rope_parameters": {
        "rope_type": "default", "rope_theta": 1000000.0}}),
}
TINY_KINDS = tuple(KINDS)

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]  # ids 0, 1, 2: unk, bos, eos
CHAT_TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
                 "{% if add_generation_prompt %}<s>assistant\n{% endif %}")
_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A tiny model for testing the quantizer, the file format and the engine.",
    "Weights are grouped along the input dimension and packed into unsigned words.",
    "Hello world! Numbers like 0123456789 and symbols (like these) appear too.",
]


def tiny_hf_model(kind: str, seed: int = 0, **overrides) -> transformers.PreTrainedModel:
    """A float32 model of the given kind in eval mode; `overrides` replace config fields."""
    if kind not in KINDS:
        raise ValueError(f"unknown tiny model kind '{kind}'; kinds: {', '.join(KINDS)}")
    config_class, model_class, fields = KINDS[kind]
    config = config_class(**{**_BASE, **fields, **overrides})
    with torch.random.fork_rng():  # leave the caller's random state alone
        model = model_class(config).float().eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):  # RMSNorm gains around 1
                param.copy_(1.0 + 0.2 * torch.randn(param.shape, generator=generator))
            elif name.endswith(".bias"):
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))
            else:  # (out, in) linear weights and (V, H) embeddings: unit-scale outputs (and tied logits)
                param.copy_(torch.randn(param.shape, generator=generator) / param.shape[1] ** 0.5)
    return model


def tiny_tokenizer(vocab_size: int = 256) -> transformers.PreTrainedTokenizerFast:
    """A SentencePiece-style BPE (spaces become "▁") over printable ASCII, trained on a few sentences.

    Its vocabulary has at most `vocab_size` entries, so every token id fits a tiny model.
    """
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    alphabet = [c for c in string.printable if not c.isspace()] + ["▁"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=alphabet,
                                  show_progress=False)
    tokenizer.train_from_iterator(_CORPUS, trainer)
    assert tokenizer.get_vocab_size() <= vocab_size, "the alphabet alone does not fit the vocabulary"
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>",
                                                eos_token="</s>", chat_template=CHAT_TEMPLATE)


def save_tiny_model(kind: str, directory, safe_serialization: bool = True, **overrides) -> Path:
    """Writes a Hugging Face model directory (config, weights, tokenizer) and returns its path.

    safe_serialization=False writes `pytorch_model.bin` (a torch.save'd state_dict, tied lm_head left out as
    transformers did) instead of `model.safetensors`.
    """
    directory = Path(directory)
    model = tiny_hf_model(kind, **overrides)
    if safe_serialization:
        model.save_pretrained(directory)
    else:
        model.config.architectures = [type(model).__name__]
        model.config.save_pretrained(directory)
        state = model.state_dict()
        if model.config.tie_word_embeddings:
            del state["lm_head.weight"]
        torch.save(state, directory / "pytorch_model.bin")
    tiny_tokenizer(model.config.vocab_size).save_pretrained(directory)
    return directory
