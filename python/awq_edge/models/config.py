"""The model configuration awq_edge understands, read from Hugging Face and from `.awqe` metadata.

`ModelConfig` is everything the LLaMA-family decoder needs (docs/FORMAT.md section 3, "config").
`hf_tensor_names` maps the canonical tensor names of docs/FORMAT.md section 6 to Hugging Face
state_dict names.
"""

from dataclasses import asdict, dataclass, fields

# Hugging Face architecture -> the `architecture` written to `.awqe` metadata.
SUPPORTED_ARCHITECTURES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2"}

# rope_type -> the parameters it needs besides rope_theta (FORMAT.md section 3).
ROPE_PARAMETERS = {
    "default": (),
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}

# Configs built in memory (not loaded from a checkpoint) have no `architectures`; their model_type says it.
_MODEL_TYPES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}


class UnsupportedModelError(ValueError):
    """The model is not one awq_edge can quantize or run."""


@dataclass(frozen=True)
class ModelConfig:
    architecture: str  # "llama" | "mistral" | "qwen2"
    hf_architecture: str  # e.g. "LlamaForCausalLM"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int
    rms_norm_eps: float
    hidden_act: str  # always "silu"
    rope: dict  # {"rope_type", "rope_theta", + ROPE_PARAMETERS[rope_type]}
    tie_word_embeddings: bool
    attention_bias: bool  # q, k, v have biases
    attention_out_bias: bool  # o has a bias
    mlp_bias: bool  # gate, up, down have biases
    # Mistral's sliding window, kept for information: the reference decoder and the engine attend to
    # the whole prefix, which is the same thing for sequences no longer than the window.
    sliding_window: int | None
    bos_token_id: int | None
    eos_token_id: list[int]
    pad_token_id: int | None

    @classmethod
    def from_hf(cls, hf_config) -> "ModelConfig":
        """Reads a transformers config (LlamaConfig, MistralConfig, Qwen2Config)."""
        names = getattr(hf_config, "architectures", None)
        hf_architecture = names[0] if names else _MODEL_TYPES.get(hf_config.model_type, hf_config.model_type)
        architecture = _architecture(hf_architecture)
        if architecture == "llama":
            attention_bias = attention_out_bias = bool(getattr(hf_config, "attention_bias", False))
            mlp_bias = bool(getattr(hf_config, "mlp_bias", False))
        else:
            attention_bias, attention_out_bias, mlp_bias = architecture == "qwen2", False, False
        head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
        eos = hf_config.eos_token_id
        config = cls(
            architecture=architecture,
            hf_architecture=hf_architecture,
            vocab_size=hf_config.vocab_size,
            hidden_size=hf_config.hidden_size,
            intermediate_size=hf_config.intermediate_size,
            num_hidden_layers=hf_config.num_hidden_layers,
            num_attention_heads=hf_config.num_attention_heads,
            num_key_value_heads=getattr(hf_config, "num_key_value_heads", None) or hf_config.num_attention_heads,
            head_dim=head_dim,
            max_position_embeddings=hf_config.max_position_embeddings,
            rms_norm_eps=float(hf_config.rms_norm_eps),
            hidden_act=hf_config.hidden_act,
            rope=_hf_rope(hf_config),
            tie_word_embeddings=bool(getattr(hf_config, "tie_word_embeddings", False)),
            attention_bias=attention_bias,
            attention_out_bias=attention_out_bias,
            mlp_bias=mlp_bias,
            sliding_window=getattr(hf_config, "sliding_window", None),
            bos_token_id=hf_config.bos_token_id,
            eos_token_id=[] if eos is None else [eos] if isinstance(eos, int) else list(eos),
            pad_token_id=hf_config.pad_token_id,
        )
        config._check()
        return config

    def to_metadata(self) -> dict:
        """The `config` object of the `.awqe` metadata (plain JSON types)."""
        d = asdict(self)
        del d["architecture"]  # stored at the top level of the metadata
        return d

    @classmethod
    def from_metadata(cls, d: dict) -> "ModelConfig":
        """Inverse of `to_metadata`; fields this version does not know are ignored."""
        names = [f.name for f in fields(cls) if f.name != "architecture"]
        missing = [name for name in names if name not in d]
        if missing:
            raise ValueError(f"[ModelConfig] metadata config lacks the fields {missing}")
        values = {name: d[name] for name in names}
        values["rope"] = dict(values["rope"])
        values["eos_token_id"] = list(values["eos_token_id"])
        config = cls(architecture=_architecture(d["hf_architecture"]), **values)
        config._check()
        return config

    def _check(self):
        if self.hidden_act != "silu":
            raise UnsupportedModelError(f"hidden_act '{self.hidden_act}' is not supported; supported: silu")
        if self.num_attention_heads % self.num_key_value_heads != 0:
            raise UnsupportedModelError(
                f"num_attention_heads ({self.num_attention_heads}) is not a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        rope_type = self.rope.get("rope_type")
        missing = [k for k in ("rope_theta", *_rope_parameters(rope_type)) if k not in self.rope]
        if missing:
            raise UnsupportedModelError(f"rope type '{rope_type}' needs the parameters {missing}")


def _architecture(hf_architecture: str) -> str:
    if hf_architecture not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(
            f"architecture '{hf_architecture}' is not supported; supported Hugging Face architectures: "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    return SUPPORTED_ARCHITECTURES[hf_architecture]


def _rope_parameters(rope_type: str) -> tuple[str, ...]:
    if rope_type not in ROPE_PARAMETERS:
        raise UnsupportedModelError(
            f"rope type '{rope_type}' is not supported; supported rope types: {', '.join(ROPE_PARAMETERS)}"
        )
    return ROPE_PARAMETERS[rope_type]


def _hf_rope(hf_config) -> dict:
    """The FORMAT.md rope dict from `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling` (4.x)."""
    params = dict(getattr(hf_config, "rope_parameters", None) or getattr(hf_config, "rope_scaling", None) or {})
    if any(isinstance(v, dict) for v in params.values()):
        raise UnsupportedModelError(f"per-layer-type rope parameters are not supported: {params}")
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        raise UnsupportedModelError(f"partial rotary embeddings are not supported: {params}")
    rope_type = params.get("rope_type", params.get("type", "default"))
    theta = params.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0))
    rope = {"rope_type": rope_type, "rope_theta": float(theta)}
    if rope_type == "llama3" and "original_max_position_embeddings" not in params:
        # transformers falls back to the config's own field, then to max_position_embeddings.
        params["original_max_position_embeddings"] = getattr(
            hf_config, "original_max_position_embeddings", hf_config.max_position_embeddings
        )
    for key in _rope_parameters(rope_type):
        if key in params:  # ModelConfig._check names any that are missing
            rope[key] = int(params[key]) if key == "original_max_position_embeddings" else float(params[key])
    return rope


def hf_tensor_names(config: ModelConfig) -> dict[str, str]:
    """Canonical name (FORMAT.md section 6) of every float weight -> its Hugging Face state_dict name."""
    names = {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight"}
    if not config.tie_word_embeddings:
        names["lm_head.weight"] = "lm_head.weight"
    modules = {"attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj", "attn.v": "self_attn.v_proj",
               "attn.o": "self_attn.o_proj", "mlp.gate": "mlp.gate_proj", "mlp.up": "mlp.up_proj",
               "mlp.down": "mlp.down_proj"}
    biased = {"attn.q": config.attention_bias, "attn.k": config.attention_bias, "attn.v": config.attention_bias,
              "attn.o": config.attention_out_bias, "mlp.gate": config.mlp_bias, "mlp.up": config.mlp_bias,
              "mlp.down": config.mlp_bias}
    for i in range(config.num_hidden_layers):
        names[f"layers.{i}.attn_norm.weight"] = f"model.layers.{i}.input_layernorm.weight"
        names[f"layers.{i}.mlp_norm.weight"] = f"model.layers.{i}.post_attention_layernorm.weight"
        for ours, theirs in modules.items():
            names[f"layers.{i}.{ours}.weight"] = f"model.layers.{i}.{theirs}.weight"
            if biased[ours]:
                names[f"layers.{i}.{ours}.bias"] = f"model.layers.{i}.{theirs}.bias"
    return names
