"""Benchmark: the CPU backend's linear layers (_awq_edge.cpu_kernels) on SmolLM2-135M's shapes.

For each scheme, weight shape N x K, batch m, kernel level and thread count it prints the time
per call (timed in C++, the median of --rounds rounds of enough calls to last ~50 ms), the weight
bytes read per second (the whole stored matrix once a call: fp16 / int8 / packed ints plus scales
and zero points) and GFLOP/s (2 m N K per call). Decode (m = 1) is bound by the GB/s column;
prefill (m > 1) by GFLOP/s. Weights are random but valid (awq_edge.awqe.schemes encoders).

By default the same matrix is multiplied again and again, so small ones are read from cache.
--cold-mb 64 makes the calls cycle through copies of the matrix totalling at least 64 MB, so that
each call reads its weights from memory, as a decode step of a whole model does.

SmolLM2-135M: hidden 576, intermediate 1536, 9 q heads / 3 kv heads of 64, vocab 49152, so
    q/o 576x576, k/v 192x576, gate/up 1536x576, down 576x1536, lm head 49152x576
plus a 4096x4096 matrix of a 7B model.

    python tools/bench_cpu_linear.py [--schemes f16,q8_row,q4_g64] [--m 1,64] [--threads 1,2]
                                     [--levels avx2,avx512,reference] [--shapes 576x576,...]
                                     [--rounds 5] [--cold-mb 64]

Run it on an idle machine: the numbers move with anything else running on the cores.
"""
import argparse
import math
import shlex
import statistics
import sys

import numpy as np

from awq_edge._awq_edge import cpu_kernels
from awq_edge.awqe.schemes import encode_f16, encode_grouped, encode_q8_row, parse_scheme

SMOLLM2_SHAPES = ["576x576", "192x576", "1536x576", "576x1536", "49152x576"]
BIG_SHAPE = "4096x4096"
TARGET_SECONDS = 0.05


def random_tensors(scheme_name: str, rows: int, cols: int) -> list:
    rng = np.random.default_rng(0)
    scheme = parse_scheme(scheme_name)
    if scheme.kind == "f16":
        return list(encode_f16("m", rng.standard_normal((rows, cols), dtype=np.float32) * 0.05).values())
    if scheme.kind == "q8_row":
        return list(encode_q8_row("m", rng.standard_normal((rows, cols), dtype=np.float32) * 0.05).values())
    groups, top = cols // scheme.group_size, (1 << scheme.bits) - 1
    q = rng.integers(0, top + 1, size=(rows, cols), dtype=np.uint8)
    zeros = rng.integers(0, top + 1, size=(rows, groups), dtype=np.uint8)
    scales = rng.uniform(0.001, 0.05, size=(rows, groups)).astype(np.float16)
    return list(encode_grouped("m", q, scales, zeros, scheme.bits).values())


def seconds_per_call(layer, x, rounds: int, copies: int) -> float:
    estimate = layer.time(x, 1, copies)
    repeats = max(1, min(10000, int(TARGET_SECONDS / max(estimate * copies, 1e-7))))
    return statistics.median(layer.time(x, repeats, copies) for _ in range(rounds))


def simd_levels() -> str:
    """The SIMD kernel levels this CPU runs, e.g. "avx2,avx512"."""
    best = cpu_kernels.best_kernel_level()
    return {"avx512": "avx2,avx512", "avx2": "avx2"}.get(best, best)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schemes", default="f16,q8_row,q4_g64,q4_g128,q3_g64", help="comma-separated schemes")
    parser.add_argument("--shapes", default=",".join(SMOLLM2_SHAPES + [BIG_SHAPE]), help="NxK, comma-separated")
    parser.add_argument("--m", default="1,64,512", help="batch sizes (rows of x)")
    parser.add_argument("--levels", default=simd_levels(), help="reference, avx2 and/or avx512")
    parser.add_argument("--threads", default=f"1,{cpu_kernels.physical_core_count()}", help="thread counts")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds; the median is reported")
    parser.add_argument("--cold-mb", type=float, default=0,
                        help="cycle through copies of each matrix totalling this many MB (0: one matrix, hot caches)")
    args = parser.parse_args(argv)

    split = lambda text: [item for item in text.split(",") if item]
    print(f"$ python {' '.join(shlex.quote(arg) for arg in ['tools/bench_cpu_linear.py'] + (argv or sys.argv[1:]))}")
    print(f"best kernel level: {cpu_kernels.best_kernel_level()}, physical cores: {cpu_kernels.physical_core_count()}")
    print()
    print("| scheme | N x K | m | level | threads | copies | time/call | weight GB/s | GFLOP/s |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|")
    for scheme in split(args.schemes):
        for shape in split(args.shapes):
            rows, cols = (int(v) for v in shape.split("x"))
            if parse_scheme(scheme).is_grouped and cols % parse_scheme(scheme).group_size:
                continue
            tensors = random_tensors(scheme, rows, cols)
            weight_bytes = sum(t.nbytes for t in tensors)
            copies = max(1, math.ceil(args.cold_mb * 1e6 / weight_bytes))
            for level in split(args.levels):
                for threads in (int(t) for t in split(args.threads)):
                    layer = cpu_kernels.LinearLayer(scheme, rows, cols, tensors, level=level, threads=threads)
                    for m in (int(v) for v in split(args.m)):
                        if level == "reference" and m * rows * cols > 2e8:
                            continue  # minutes per call; the reference is for tests
                        x = np.random.default_rng(1).standard_normal((m, cols), dtype=np.float32)
                        seconds = seconds_per_call(layer, x, args.rounds, copies)
                        print(f"| {scheme} | {rows}x{cols} | {m} | {level} | {threads} | {copies} | "
                              f"{seconds * 1e6:,.1f} us | {weight_bytes / seconds / 1e9:.1f} | "
                              f"{2 * m * rows * cols / seconds / 1e9:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
