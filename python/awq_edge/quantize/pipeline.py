"""quantize_model: a source checkpoint in, an .awqe file out, one decoder layer at a time.

    checkpoint --(embed)--> x (n, T, H) calibration hidden states
    for each layer:  load its weights -> float forward (features, next x) -> [AWQ: search scales,
                     fold, search clips] -> quantize -> write its tensors -> free it
    final norm, LM head -> metadata -> atomic rename

Peak memory is one layer's weights plus the calibration activations, whatever the depth.
"""
import datetime
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__
from ..awqe import AwqeWriter
from ..awqe.schemes import SUPPORTED_GROUP_SIZES, encode_f16, encode_grouped, encode_q8_row
from ..checkpoint import Checkpoint, open_checkpoint
from ..corpus import BUILTIN_CALIBRATION
from ..models import ModelConfig, hf_tensor_names
from ..reference.decoder import rope_cos_sin
from . import awq
from .calibration import calibration_samples
from .grouped import quantize_grouped

LINEARS = {"q": "attn.q", "k": "attn.k", "v": "attn.v", "o": "attn.o",
           "gate": "mlp.gate", "up": "mlp.up", "down": "mlp.down"}
NORMS = {"attn_norm": "attn_norm", "mlp_norm": "mlp_norm"}
LM_HEAD_CHOICES = ("fp16", "int8", "int4")


class QuantizeError(ValueError):
    """The requested quantization cannot be done (bad option for this model)."""


@dataclass
class QuantizeOptions:
    method: str = "awq"                  # "awq" | "rtn"
    bits: int = 4                        # 3 | 4
    group_size: object = 128             # 32 | 64 | 128 | "auto"
    lm_head: str = "fp16"                # "fp16" | "int8" | "int4"
    calibration: list = field(default_factory=lambda: [BUILTIN_CALIBRATION])
    n_samples: int = 128
    seqlen: int = 512
    search_samples: int = 16             # samples the scale search measures its loss on (None: all)
    n_grid: int = 20
    clip: bool = True
    seed: int = 0
    threads: int = None


@dataclass
class QuantizeReport:
    path: Path
    seconds: float
    file_bytes: int
    parameters: int           # weights of the model (embedding counted once when tied)
    linear_weights: int       # weights of the decoder's quantized linears
    linear_bytes: int         # their qweight + scales + zeros bytes
    group_size: int
    scale_losses: dict        # layer -> group -> losses per ratio (AWQ only)

    @property
    def linear_bits_per_weight(self) -> float:
        return 8 * self.linear_bytes / self.linear_weights

    @property
    def file_bits_per_weight(self) -> float:
        return 8 * self.file_bytes / self.parameters

    @property
    def compression_vs_fp16(self) -> float:
        return 2 * self.parameters / self.file_bytes


def linear_input_dims(config: ModelConfig) -> dict:
    """Input dimension of each quantized linear, by role, with where it comes from."""
    q_dim = config.num_attention_heads * config.head_dim
    return {"attn.q/k/v, mlp.gate/up (hidden_size)": config.hidden_size,
            "attn.o (num_attention_heads * head_dim)": q_dim,
            "mlp.down (intermediate_size)": config.intermediate_size}


def resolve_group_size(config: ModelConfig, requested) -> int:
    dims = linear_input_dims(config)
    fitting = [g for g in sorted(SUPPORTED_GROUP_SIZES, reverse=True) if all(d % g == 0 for d in dims.values())]
    if requested == "auto":
        if not fitting:
            raise QuantizeError(f"no supported group size {SUPPORTED_GROUP_SIZES} divides every quantized layer's "
                                f"input dimension: {dims}")
        return fitting[0]
    if int(requested) not in SUPPORTED_GROUP_SIZES:
        raise QuantizeError(f"group size {requested} is not supported; choose one of {SUPPORTED_GROUP_SIZES} or auto")
    for role, dim in dims.items():
        if dim % int(requested):
            raise QuantizeError(f"group size {requested} does not divide the input dimension {dim} of layers.*.{role}; "
                                f"group sizes that divide every quantized layer: "
                                f"{', '.join(map(str, fitting)) or 'none'} (or use --group-size auto)")
    return int(requested)


def tokenizer_metadata(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise QuantizeError("the model's tokenizer has no Hugging Face `tokenizers` (fast) form; "
                            "awq_edge stores tokenizer.json in the file and needs one")
    with_special = tokenizer("a")["input_ids"]
    without = tokenizer("a", add_special_tokens=False)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    template = tokenizer.chat_template
    return {
        "tokenizer_json": json.loads(backend.to_str()),
        "chat_template": template if isinstance(template, str) else None,
        "bos_token": tokenizer.bos_token, "eos_token": tokenizer.eos_token,
        "pad_token": tokenizer.pad_token, "unk_token": tokenizer.unk_token,
        "add_bos_token": bool(bos is not None and with_special[:1] == [bos] and without[:1] != [bos]),
        "add_eos_token": bool(eos is not None and with_special[-1:] == [eos] and without[-1:] != [eos]),
    }


class _LayerLoader:
    """Layer i's float32 weights from the checkpoint, keyed as the reference decoder reads them."""

    def __init__(self, checkpoint: Checkpoint):
        self.checkpoint = checkpoint
        self.names = hf_tensor_names(checkpoint.config)

    def tensor(self, canonical: str) -> torch.Tensor:
        return self.checkpoint.tensor(self.names[canonical])

    def layer(self, i: int) -> dict:
        layer = {}
        for short, canonical in {**LINEARS, **NORMS}.items():
            layer[short] = self.tensor(f"layers.{i}.{canonical}.weight")
            if f"layers.{i}.{canonical}.bias" in self.names:
                layer[f"{short}_bias"] = self.tensor(f"layers.{i}.{canonical}.bias")
        return layer


def quantize_model(model_path, output_path, options: QuantizeOptions = None, progress=None) -> QuantizeReport:
    """Quantize the model at model_path (HF directory or .gguf) into output_path (.awqe)."""
    options = options or QuantizeOptions()
    started = time.perf_counter()
    if options.method not in ("awq", "rtn"):
        raise QuantizeError(f"method '{options.method}' is not supported; choose awq or rtn")
    if options.bits not in (3, 4):
        raise QuantizeError(f"{options.bits}-bit weights are not supported; choose 3 or 4")
    if options.lm_head not in LM_HEAD_CHOICES:
        raise QuantizeError(f"--lm-head {options.lm_head} is not supported; choose one of {', '.join(LM_HEAD_CHOICES)}")
    if options.threads:
        torch.set_num_threads(options.threads)
    output_path = Path(output_path)
    checkpoint = open_checkpoint(model_path)
    config = checkpoint.config
    group_size = resolve_group_size(config, options.group_size)
    tokenizer = checkpoint.tokenizer()
    tokenizer_meta = tokenizer_metadata(tokenizer)
    loader = _LayerLoader(checkpoint)

    calibration = None
    if options.method == "awq":
        calibration = calibration_samples(tokenizer, options.calibration, options.n_samples, options.seqlen,
                                          options.seed)
    head_scheme = {"fp16": "f16", "int8": "q8_row", "int4": f"q4_g{group_size}"}[options.lm_head]
    counts = {"parameters": 0, "linear_weights": 0, "linear_bytes": 0}
    scale_losses = {}

    with AwqeWriter(output_path) as writer:
        def add(tensors: dict, linear: bool = False):
            for name, array in tensors.items():
                writer.add_tensor(name, array)
                if linear:
                    counts["linear_bytes"] += array.nbytes

        embed = loader.tensor("embed.weight")                                   # (V, H)
        counts["parameters"] += embed.numel()
        embed_scheme = head_scheme if config.tie_word_embeddings else "f16"
        add(_encode("embed", embed, embed_scheme, group_size))
        x = F.embedding(calibration.tokens, embed) if calibration else None     # (n, T, H)
        del embed
        cos, sin = rope_cos_sin(config, torch.arange(options.seqlen))

        layers = range(config.num_hidden_layers)
        for i in (progress(layers) if progress else layers):
            layer = loader.layer(i)
            clips = {}
            if calibration is not None:
                x, clips, scale_losses[i] = _awq_layer(layer, x, config, cos, sin, options, group_size)
            for short, canonical in LINEARS.items():
                weight = layer[short]
                counts["parameters"] += weight.numel()
                counts["linear_weights"] += weight.numel()
                q, scales_g, zeros = quantize_grouped(weight, options.bits, group_size, clips.get(short))
                add(encode_grouped(f"layers.{i}.{canonical}", q.numpy(), scales_g.numpy(), zeros.numpy(),
                                   options.bits), linear=True)
                if f"{short}_bias" in layer:
                    add({f"layers.{i}.{canonical}.bias": layer[f"{short}_bias"].numpy().astype(np.float16)})
            for short, canonical in NORMS.items():
                add(encode_f16(f"layers.{i}.{canonical}", layer[short]))
            del layer

        add(encode_f16("norm", loader.tensor("norm.weight")))
        if not config.tie_word_embeddings:
            lm_head = loader.tensor("lm_head.weight")
            counts["parameters"] += lm_head.numel()
            add(_encode("lm_head", lm_head, head_scheme, group_size))
        metadata = {
            "format": "awqe",
            "architecture": config.architecture,
            "config": config.to_metadata(),
            "tokenizer": tokenizer_meta,
            "quantization": {
                "method": options.method, "bits": options.bits, "group_size": group_size, "zero_point": True,
                "embedding": embed_scheme, "lm_head": "tied" if config.tie_word_embeddings else head_scheme,
                "overrides": {},
            },
            "provenance": {
                "tool": "awq_edge", "tool_version": __version__,
                "source_model": checkpoint.path.name, "source_format": checkpoint.source_format,
                "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "calibration": calibration.summary() if calibration else None,
                "search": ({"n_grid": options.n_grid, "clip": options.clip, "clip_grid": 20, "max_shrink": 0.5,
                            "search_samples": options.search_samples or options.n_samples}
                           if calibration else None),
            },
        }
        writer.finish(metadata)

    return QuantizeReport(output_path, time.perf_counter() - started, output_path.stat().st_size,
                          counts["parameters"], counts["linear_weights"], counts["linear_bytes"], group_size,
                          scale_losses)


def _awq_layer(layer: dict, x: torch.Tensor, config: ModelConfig, cos, sin, options: QuantizeOptions,
               group_size: int):
    """Search and fold the layer's scales (in place), search its clips: -> (next layer's input from the float
    layer, clips by linear, scale-search losses)."""
    with torch.no_grad():
        x_next, features = awq.layer_forward(x, layer, config, cos, sin)
        scales, losses = awq.search_layer_scales(layer, features, config, cos, sin, options.bits, group_size,
                                                 options.n_grid, options.search_samples)
        awq.apply_scales(layer, scales, config)
        clips = {}
        if options.clip:
            awq.scale_features(features, scales, config)
            clips = awq.search_layer_clips(layer, features, config, options.bits, group_size)
    return x_next, clips, losses


def _encode(module: str, weight: torch.Tensor, scheme: str, group_size: int) -> dict:
    """Embedding / LM head in its storage scheme (round-to-nearest: they are not scaled by AWQ)."""
    if scheme == "f16":
        return encode_f16(module, weight.numpy())
    if scheme == "q8_row":
        return encode_q8_row(module, weight.numpy())
    q, scales, zeros = quantize_grouped(weight, 4, group_size)
    return encode_grouped(module, q.numpy(), scales.numpy(), zeros.numpy(), 4)
