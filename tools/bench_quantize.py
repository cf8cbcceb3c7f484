"""Benchmark: AWQ vs round-to-nearest on SmolLM2-135M-Instruct, perplexity and quantization cost.

For W4 and W3 at group size 64 it quantizes the built-in model with RTN and with AWQ (calibration
on the built-in calibration part of CPython's pydoc topics), each in a fresh process so wall time
and peak RSS belong to that run alone; then it measures the sliding-window perplexity of every
file (dequantized by the numpy reference into transformers) and of the float model on the
disjoint evaluation part, and prints a markdown table for docs/BENCHMARKS.md.

    python tools/bench_quantize.py [--model PATH] [--eval-tokens N] [--workdir DIR]
"""
import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = [("rtn", 4), ("awq", 4), ("rtn", 3), ("awq", 3)]
GROUP_SIZE = 64


def child(model: str, method: str, bits: int, output: str, extra: dict) -> None:
    """Quantize once in this process and print one JSON line of its costs."""
    from awq_edge.quantize import QuantizeOptions, quantize_model
    started = time.perf_counter()
    report = quantize_model(model, output, QuantizeOptions(method=method, bits=bits, group_size=GROUP_SIZE, **extra))
    print(json.dumps({"seconds": time.perf_counter() - started, "file_bytes": report.file_bytes,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "linear_bpw": report.linear_bits_per_weight}))


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    import torch
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model path (default: the built-in SmolLM2-135M-Instruct GGUF)")
    parser.add_argument("--eval-tokens", type=int, default=None, help="score only the first N evaluation tokens")
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--stride", type=int, default=256)
    parser.add_argument("--search-samples", type=int, default=None, help="override the quantizer's default")
    parser.add_argument("--workdir", default=None, help="where the .awqe files go (default: a temporary dir)")
    parser.add_argument("--child", nargs=4, metavar=("MODEL", "METHOD", "BITS", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--child-options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, method, bits, out = args.child
        return child(model, method, int(bits), out, json.loads(args.child_options))

    import torch
    from awq_edge.corpus import BUILTIN_EVALUATION, read_texts
    from awq_edge.default_model import default_model_path
    from awq_edge.evaluate import load_awqe_as_transformers, load_source_as_transformers, perplexity, \
        transformers_logits

    model = Path(args.model) if args.model else default_model_path()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="awq_edge_bench_"))
    workdir.mkdir(parents=True, exist_ok=True)
    extra = {} if args.search_samples is None else {"search_samples": args.search_samples}
    costs = {}
    for method, bits in RUNS:
        out = workdir / f"{method}-w{bits}g{GROUP_SIZE}.awqe"
        print(f"quantizing {method} w{bits}g{GROUP_SIZE} ...", flush=True)
        result = subprocess.run([sys.executable, __file__, "--child", str(model), method, str(bits), str(out),
                                 "--child-options", json.dumps(extra)], capture_output=True, text=True)
        if result.returncode:
            sys.exit(f"quantization {method} w{bits} failed:\n{result.stderr[-3000:]}")
        costs[(method, bits)] = json.loads(result.stdout.strip().splitlines()[-1])

    text = read_texts(BUILTIN_EVALUATION)
    fp, tokenizer = load_source_as_transformers(model)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = torch.tensor(ids[: args.eval_tokens] if args.eval_tokens else ids)
    print("evaluating the float model ...", flush=True)
    fp_ppl = perplexity(transformers_logits(fp), ids, args.window, args.stride)
    del fp
    ppl = {}
    for method, bits in RUNS:
        print(f"evaluating {method} w{bits} ...", flush=True)
        quantized, _ = load_awqe_as_transformers(workdir / f"{method}-w{bits}g{GROUP_SIZE}.awqe")
        ppl[(method, bits)] = perplexity(transformers_logits(quantized), ids, args.window, args.stride).value

    command = " ".join(["python", "tools/bench_quantize.py"] + sys.argv[1:])
    print()
    print(f"- date: {datetime.date.today()}; machine: {machine()}")
    print(f"- command: `{command}`")
    print(f"- model: {model.name}; perplexity on {BUILTIN_EVALUATION}, {fp_ppl.tokens} tokens scored, "
          f"window {args.window}, stride {args.stride}; calibration: built-in calibration part, 128 x 512 tokens")
    print()
    print("| weights | method | perplexity | gap to float closed | bits/weight (linears) | file MiB | quantize time | peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| float32 | - | {fp_ppl.value:.3f} | - | 32 | - | - | - |")
    for method, bits in RUNS:
        cost = costs[(method, bits)]
        closed = "-"
        if method == "awq":
            rtn_gap = ppl[("rtn", bits)] - fp_ppl.value
            closed = f"{100 * (ppl[('rtn', bits)] - ppl[(method, bits)]) / rtn_gap:.0f}%" if rtn_gap > 0 else "n/a"
        print(f"| W{bits} g{GROUP_SIZE} | {method.upper()} | {ppl[(method, bits)]:.3f} | {closed} | "
              f"{cost['linear_bpw']:.3f} | {cost['file_bytes'] / 2**20:.1f} | {cost['seconds']:.0f} s | "
              f"{cost['peak_rss_mib']:.0f} MiB |")


if __name__ == "__main__":
    main()
