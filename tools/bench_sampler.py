"""Benchmark: microseconds per Sampler.sample() for vocabularies of 49152 and 128256 ids.

Each call gets a fresh copy of one step's logits (sample() overwrites them, as the engine's do);
the time of that copy alone is measured the same way and subtracted, so the table shows the
sampler plus nanobind's call overhead. Each cell is the fastest of --batches batches of --calls
calls (the fastest, because other processes on the machine only ever add time).

The logits look like a real model's step (--logits llm): N(0, 2) over the vocabulary plus 30 ids
lifted by 6..14, so top-p 0.9 keeps a few dozen ids. --logits flat (N(0, 0.3)) is the worst case
for top-p: it keeps most of the vocabulary. The repetition penalty sees a context of 256 ids.

    python tools/bench_sampler.py [--logits llm|flat] [--calls N] [--batches N]
"""
import argparse
import platform
import sys
import time

import numpy as np

from awq_edge._awq_edge import Sampler, SamplingParams

VOCABS = (49_152, 128_256)
CONTEXT_LENGTH = 256
SETTINGS = {
    "greedy": dict(temperature=0.0),
    "temperature 0.7": dict(temperature=0.7),
    "top-k 40": dict(top_k=40),
    "top-p 0.9": dict(top_p=0.9),
    "min-p 0.05": dict(min_p=0.05),
    "all combined": dict(temperature=0.7, top_k=40, top_p=0.9, min_p=0.05, repetition_penalty=1.1),
}


def step_logits(vocab: int, kind: str, rng) -> np.ndarray:
    if kind == "flat":
        return (rng.standard_normal(vocab) * 0.3).astype(np.float32)
    logits = (rng.standard_normal(vocab) * 2.0).astype(np.float32)
    logits[rng.choice(vocab, 30, replace=False)] += rng.uniform(6, 14, 30).astype(np.float32)
    return logits


def fastest_batch_us(call, calls: int, batches: int) -> float:
    best = float("inf")
    for _ in range(batches):
        start = time.perf_counter_ns()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter_ns() - start) / calls / 1e3)
    return best


def microseconds_per_sample(vocab: int, settings: dict, logits: np.ndarray, context: np.ndarray,
                            calls: int, batches: int) -> float:
    sampler = Sampler(SamplingParams(**settings), vocab)
    work = np.empty_like(logits)

    def copy_only():
        np.copyto(work, logits)

    def copy_and_sample():
        np.copyto(work, logits)
        sampler.sample(work, context)

    copy_and_sample()  # warm up: the sampler's buffers grow on the first call
    return (fastest_batch_us(copy_and_sample, calls, batches) - fastest_batch_us(copy_only, calls, batches))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logits", choices=("llm", "flat"), default="llm")
    parser.add_argument("--calls", type=int, default=200, help="calls per batch")
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    rows = {name: [] for name in SETTINGS}
    for vocab in VOCABS:
        logits = step_logits(vocab, args.logits, rng)
        context = rng.integers(0, vocab, CONTEXT_LENGTH).astype(np.int32)
        for name, settings in SETTINGS.items():
            rows[name].append(microseconds_per_sample(vocab, settings, logits, context, args.calls, args.batches))

    print(f"Sampler.sample(), microseconds per call, {args.logits} logits, fastest of {args.batches} x "
          f"{args.calls} calls; {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print()
    print("| settings | " + " | ".join(f"vocab {vocab}" for vocab in VOCABS) + " |")
    print("|---|" + "---:|" * len(VOCABS))
    for name, times in rows.items():
        print(f"| {name} | " + " | ".join(f"{t:.1f}" for t in times) + " |")
    print()
    print("    python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
