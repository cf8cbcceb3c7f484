"""Random weight matrices in every storage scheme of docs/FORMAT.md section 5, with their reference
dequantization, for the backends' linear-layer tests (CPU, NEON, CUDA)."""
import numpy as np

from awq_edge.awqe.schemes import dequantize_module, encode_f16, encode_grouped, encode_q8_row, parse_scheme

GROUPED = [f"q{bits}_g{group}" for bits in (3, 4) for group in (32, 64, 128)]
SCHEMES = ["f16", "q8_row"] + GROUPED


def random_module(scheme_name: str, rows: int, cols: int, seed: int, scales=(0.001, 0.05)):
    """(tensors in FORMAT.md order, W (N, K) float32 from the reference dequantizer); grouped schemes
    draw their scales uniformly from the range `scales`."""
    rng = np.random.default_rng(seed)
    scheme = parse_scheme(scheme_name)
    if scheme.kind == "f16":
        tensors = encode_f16("m", rng.standard_normal((rows, cols)) * 0.1)
    elif scheme.kind == "q8_row":
        tensors = encode_q8_row("m", rng.standard_normal((rows, cols)) * 0.1)
    else:
        groups, top = cols // scheme.group_size, (1 << scheme.bits) - 1
        q = rng.integers(0, top + 1, size=(rows, cols))
        zeros = rng.integers(0, top + 1, size=(rows, groups))
        scales = rng.uniform(*scales, size=(rows, groups))
        tensors = encode_grouped("m", q, scales, zeros, scheme.bits)
    weight = dequantize_module(tensors, "m", scheme, rows, cols)
    return list(tensors.values()), weight
