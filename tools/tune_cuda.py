"""Measure the CUDA kernels' launch configurations on the GPU at hand and print its tuning-table entry
for cuda/tuning.cpp (kTable), replacing an unmeasured one.

Each candidate is applied through AWQ_EDGE_CUDA_TUNING (read when a backend is created) and timed:
  gemv_max_warps x gemv_warps_per_sm   q4 matrix-vector, 1 token, on the LLaMA-2-7B / LLaMA-3-8B layer
                                       shapes (sum of the times; weights cycled through copies so they
                                       come from memory)
  gemm_warps                           q4 matrix-matrix (split-K kernel), 128 tokens, same shapes
  gemm_strips                          q4 matrix-matrix at 512 tokens: the x-staged kernel with 2, 4 or 8
                                       strips per block against the split-K kernel (1)
  gemm_fp16_accumulate                 the same with each group summed in fp16 (1) or fp32 (0); taken only
                                       when at least 5 % faster, since its sums are less precise
  attention_blocks_per_sm              decode steps of a random LLaMA-2-7B-shaped model at context 2048
                                       (tools/random_model.py), skipped with --no-attention

    python tools/tune_cuda.py [--no-attention] [--model-dir DIR] [--layers NxK ...] [--shape llama2-7b]

`--backend cpu` runs the timing loops on the CPU backend (which ignores the settings): a check of
the script only.
"""
import argparse
import itertools
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cuda import LINEAR_SHAPES, layer_shape, random_q4  # noqa: E402
from random_model import SHAPES, write_random_model  # noqa: E402


def with_tuning(text: str):
    os.environ["AWQ_EDGE_CUDA_TUNING"] = text


def time_linear(backend: str, layers: dict, tokens: int, repeats: int, copies: int) -> float:
    from awq_edge._awq_edge import backends
    total = 0.0
    rng = np.random.default_rng(tokens)
    for (rows, cols), tensors in layers.items():
        layer = backends.Linear(backend, "q4_g128", rows, cols, tensors)
        x = rng.standard_normal((tokens, cols)).astype(np.float32)
        total += min(layer.time(x, repeats, copies) for _ in range(3))
    return total


def time_decode(backend: str, path: Path, context: int, steps: int) -> float:
    from awq_edge.generator import Generator
    generator = Generator(str(path), backend=backend, max_context=context + steps + 8)
    ids = np.random.default_rng(0).integers(0, 256, context).tolist()
    generator.logits(ids)
    start = time.perf_counter()
    for i in range(steps):
        generator.logits([ids[i]])
    return (time.perf_counter() - start) / steps


def cuda_device(backend: str) -> tuple:
    """(name, major, minor, SMs) of the GPU, from the backend's description ("cuda (NAME, sm_87, 16 SMs, ...")
    rather than torch, which a Jetson may not have with CUDA."""
    from awq_edge._awq_edge import backends
    description = backends.Operations(backend).description
    found = re.match(r"cuda \((.+), sm_(\d+)(\d), (\d+) SMs,", description)
    if found is None:
        raise SystemExit(f"tune_cuda.py: cannot read the GPU from the backend's description '{description}'")
    return found[1], int(found[2]), int(found[3]), int(found[4])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="cuda")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--no-attention", action="store_true")
    parser.add_argument("--layers", type=layer_shape, nargs="+", default=LINEAR_SHAPES, metavar="NxK",
                        help="the layer shapes timed (default: LLaMA-2-7B's and LLaMA-3-8B's)")
    parser.add_argument("--shape", default="llama2-7b", choices=sorted(SHAPES),
                        help="the random model whose decode steps time the attention splits")
    parser.add_argument("--model-dir", type=Path, default=Path.home() / ".cache" / "awq_edge" / "bench")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    layers = {(rows, cols): random_q4(rows, cols, 128, rng) for rows, cols in args.layers}
    best = {}

    results = []
    for max_warps, per_sm in itertools.product([1, 2, 4, 8], [8, 16, 24, 32]):
        with_tuning(f"gemv_max_warps={max_warps},gemv_warps_per_sm={per_sm}")
        results.append((time_linear(args.backend, layers, 1, args.repeats, args.copies), max_warps, per_sm))
        print(f"gemv_max_warps={max_warps} gemv_warps_per_sm={per_sm}: {results[-1][0] * 1e6:.1f} us", file=sys.stderr)
    _, best["gemv_max_warps"], best["gemv_warps_per_sm"] = min(results)

    results = []
    for warps in [1, 2, 3, 4]:
        with_tuning(f"gemm_warps={warps}")
        results.append((time_linear(args.backend, layers, 128, max(2, args.repeats // 5), 1), warps))
        print(f"gemm_warps={warps}: {results[-1][0] * 1e3:.2f} ms", file=sys.stderr)
    _, best["gemm_warps"] = min(results)

    results = []
    for strips in [1, 2, 4, 8]:  # 1: the split-K kernel with the gemm_warps just found
        with_tuning(f"gemm_warps={best['gemm_warps']},gemm_strips={strips}")
        results.append((time_linear(args.backend, layers, 512, max(2, args.repeats // 5), 1), strips))
        print(f"gemm_strips={strips}: {results[-1][0] * 1e3:.2f} ms", file=sys.stderr)
    _, best["gemm_strips"] = min(results)

    times = {}
    for fp16 in [0, 1]:
        with_tuning(f"gemm_warps={best['gemm_warps']},gemm_strips={best['gemm_strips']},gemm_fp16_accumulate={fp16}")
        times[fp16] = time_linear(args.backend, layers, 512, max(2, args.repeats // 5), 1)
        print(f"gemm_fp16_accumulate={fp16}: {times[fp16] * 1e3:.2f} ms", file=sys.stderr)
    best["gemm_fp16_accumulate"] = "true" if times[1] < 0.95 * times[0] else "false"

    best["attention_blocks_per_sm"] = 4
    if not args.no_attention:
        args.model_dir.mkdir(parents=True, exist_ok=True)
        path = args.model_dir / f"random-{args.shape}-q4_g128.awqe"  # the name bench_cuda.py gives it
        if not path.exists():
            write_random_model(path, args.shape, "q4_g128", "f16")
        results = []
        for blocks in [1, 2, 4, 8, 16]:
            with_tuning(f"attention_blocks_per_sm={blocks}")
            results.append((time_decode(args.backend, path, 2048, 32), blocks))
            print(f"attention_blocks_per_sm={blocks}: {results[-1][0] * 1e3:.2f} ms per token", file=sys.stderr)
        _, best["attention_blocks_per_sm"] = min(results)
    os.environ.pop("AWQ_EDGE_CUDA_TUNING", None)

    name, major, minor, sms = "this CPU (script check)", 0, 0, 0
    if args.backend == "cuda":
        name, major, minor, sms = cuda_device(args.backend)
    print(f'    {{"{name}", {major}, {minor}, {sms}, {sms}, true, '
          f'{{{best["gemv_max_warps"]}, {best["gemv_warps_per_sm"]}, {best["gemm_warps"]}, '
          f'{best["attention_blocks_per_sm"]}, {best["gemm_strips"]}, {best["gemm_fp16_accumulate"]}}}}},')


if __name__ == "__main__":
    main()
