"""Storage schemes of weight matrices and the tensor set of a model (docs/FORMAT.md, sections 5 and 6).

A module is a weight matrix W of N output rows and K input columns (y = W x).
    f16       M.weight  F16 (N, K)
    q8_row    M.qweight I8  (N, K),  M.scales F16 (N,)                    W = q * s[n]
    q{b}_g{g} M.qweight U32 (N, K*b/32), M.scales F16 (N, K/g), M.zeros U32 (N, ceil(K/g*b/32))
                                                             W = (q - z[n, k/g]) * s[n, k/g]
"""
import re
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .format import FormatError
from .packing import pack_bits, packed_words, unpack_bits

SUPPORTED_BITS = (3, 4)
SUPPORTED_GROUP_SIZES = (32, 64, 128)
_GROUPED = re.compile(r"q(\d+)_g(\d+)$")


@dataclass(frozen=True)
class Scheme:
    kind: str            # "f16" | "q8_row" | "grouped"
    bits: int = 16
    group_size: int = 0  # grouped only

    def __str__(self) -> str:
        return f"q{self.bits}_g{self.group_size}" if self.kind == "grouped" else self.kind

    @property
    def is_grouped(self) -> bool:
        return self.kind == "grouped"


def parse_scheme(text: str) -> Scheme:
    if text == "f16":
        return Scheme("f16")
    if text == "q8_row":
        return Scheme("q8_row", bits=8)
    match = _GROUPED.match(text)
    if match:
        bits, group_size = int(match.group(1)), int(match.group(2))
        if bits in SUPPORTED_BITS and group_size in SUPPORTED_GROUP_SIZES:
            return Scheme("grouped", bits, group_size)
    raise FormatError(f"unknown storage scheme '{text}': expected f16, q8_row or q{{3,4}}_g{{32,64,128}}")


def grouped_scheme(bits: int, group_size: int) -> Scheme:
    return parse_scheme(f"q{bits}_g{group_size}")


def module_tensor_specs(module: str, scheme: Scheme, rows: int, cols: int) -> dict:
    """name -> (dtype name, shape) of the tensors that store one module."""
    if scheme.kind == "f16":
        return {f"{module}.weight": ("F16", (rows, cols))}
    if scheme.kind == "q8_row":
        return {f"{module}.qweight": ("I8", (rows, cols)), f"{module}.scales": ("F16", (rows,))}
    if cols % scheme.group_size or cols % 32:
        raise FormatError(f"module '{module}': {cols} input features are not a multiple of "
                          f"group size {scheme.group_size} (and of 32)")
    groups = cols // scheme.group_size
    return {
        f"{module}.qweight": ("U32", (rows, cols * scheme.bits // 32)),
        f"{module}.scales": ("F16", (rows, groups)),
        f"{module}.zeros": ("U32", (rows, packed_words(groups, scheme.bits))),
    }


def _dims(config: Mapping) -> tuple:
    """(hidden, intermediate, vocab, q_dim, kv_dim): the sizes section 6 of FORMAT.md is written in."""
    return (config["hidden_size"], config["intermediate_size"], config["vocab_size"],
            config["num_attention_heads"] * config["head_dim"], config["num_key_value_heads"] * config["head_dim"])


def model_modules(metadata: Mapping) -> dict:
    """module name -> (Scheme, N, K) for every weight matrix of the model in `metadata`."""
    config, quant = metadata["config"], metadata["quantization"]
    hidden, inter, vocab, q_dim, kv_dim = _dims(config)
    decoder = grouped_scheme(quant["bits"], quant["group_size"])
    overrides = {name: parse_scheme(text) for name, text in quant.get("overrides", {}).items()}
    modules = {"embed": (parse_scheme(quant["embedding"]), vocab, hidden)}
    for i in range(config["num_hidden_layers"]):
        shapes = {"attn.q": (q_dim, hidden), "attn.k": (kv_dim, hidden), "attn.v": (kv_dim, hidden),
                  "attn.o": (hidden, q_dim), "mlp.gate": (inter, hidden), "mlp.up": (inter, hidden),
                  "mlp.down": (hidden, inter)}
        for short, (rows, cols) in shapes.items():
            modules[f"layers.{i}.{short}"] = (decoder, rows, cols)
    if quant["lm_head"] != "tied":
        modules["lm_head"] = (parse_scheme(quant["lm_head"]), vocab, hidden)
    for name, scheme in overrides.items():
        if name not in modules:
            raise FormatError(f"quantization.overrides names module '{name}', which the model does not have")
        modules[name] = (scheme,) + modules[name][1:]
    if (quant["lm_head"] == "tied") != bool(config["tie_word_embeddings"]):
        raise FormatError(f"quantization.lm_head is '{quant['lm_head']}' but config.tie_word_embeddings is "
                          f"{config['tie_word_embeddings']}: 'tied' is required exactly when embeddings are tied")
    return modules


def expected_tensors(metadata: Mapping) -> dict:
    """name -> (dtype name, shape) of every tensor a file with this metadata holds (FORMAT.md section 6)."""
    config = metadata["config"]
    hidden, inter, _, q_dim, kv_dim = _dims(config)
    specs = {}
    for module, (scheme, rows, cols) in model_modules(metadata).items():
        specs.update(module_tensor_specs(module, scheme, rows, cols))
    for i in range(config["num_hidden_layers"]):
        layer = f"layers.{i}"
        specs[f"{layer}.attn_norm.weight"] = ("F16", (hidden,))
        specs[f"{layer}.mlp_norm.weight"] = ("F16", (hidden,))
        if config["attention_bias"]:
            specs.update({f"{layer}.attn.q.bias": ("F16", (q_dim,)), f"{layer}.attn.k.bias": ("F16", (kv_dim,)),
                          f"{layer}.attn.v.bias": ("F16", (kv_dim,))})
        if config["attention_out_bias"]:
            specs[f"{layer}.attn.o.bias"] = ("F16", (hidden,))
        if config["mlp_bias"]:
            specs.update({f"{layer}.mlp.gate.bias": ("F16", (inter,)), f"{layer}.mlp.up.bias": ("F16", (inter,)),
                          f"{layer}.mlp.down.bias": ("F16", (hidden,))})
    specs["norm.weight"] = ("F16", (hidden,))
    return specs


def encode_grouped(module: str, q: np.ndarray, scales: np.ndarray, zeros: np.ndarray, bits: int) -> dict:
    """Integer weights q (N, K), scales (N, G) and integer zero points (N, G) -> the module's tensors."""
    return {
        f"{module}.qweight": pack_bits(q, bits),
        f"{module}.scales": np.ascontiguousarray(scales, dtype=np.float16),
        f"{module}.zeros": pack_bits(zeros, bits),
    }


def encode_q8_row(module: str, weight: np.ndarray) -> dict:
    """Symmetric per-row int8: s[n] = max|W[n]| / 127, q = round(W / s)."""
    weight = np.asarray(weight, dtype=np.float32)
    scales = (np.abs(weight).max(axis=1) / 127.0).astype(np.float16)
    safe = np.where(scales == 0, np.float16(1), scales).astype(np.float32)
    q = np.clip(np.rint(weight / safe[:, None]), -127, 127).astype(np.int8)
    return {f"{module}.qweight": q, f"{module}.scales": scales}


def encode_f16(module: str, weight: np.ndarray) -> dict:
    return {f"{module}.weight": np.ascontiguousarray(weight, dtype=np.float16)}


def dequantize_module(tensors: Mapping[str, np.ndarray], module: str, scheme: Scheme,
                      rows: int, cols: int) -> np.ndarray:
    """The reference dequantizer (the oracle of every kernel): -> float32 (N, K)."""
    if scheme.kind == "f16":
        return np.asarray(tensors[f"{module}.weight"], dtype=np.float32).reshape(rows, cols)
    scales = np.asarray(tensors[f"{module}.scales"], dtype=np.float32)
    if scheme.kind == "q8_row":
        return np.asarray(tensors[f"{module}.qweight"], dtype=np.float32) * scales[:, None]
    groups = cols // scheme.group_size
    q = unpack_bits(tensors[f"{module}.qweight"], scheme.bits, cols).astype(np.float32)
    zeros = unpack_bits(tensors[f"{module}.zeros"], scheme.bits, groups).astype(np.float32)
    q = q.reshape(rows, groups, scheme.group_size)
    return ((q - zeros[:, :, None]) * scales[:, :, None]).reshape(rows, cols)
