"""Benchmark of the CUDA backend (issue 4's evidence), on the GPU at hand, in one run:

  linear   the q4 matrix-vector kernel (decode, 1 token) on LLaMA-2-7B / LLaMA-3-8B layer shapes:
           weight bytes read per second against the device's measured copy bandwidth (torch,
           device-to-device copy of 1 GiB: 2 bytes moved per byte copied). The weight is uploaded
           several times and the calls cycle through the copies, so it comes from memory, not L2.
  decode   tokens/s of a LLaMA-2-7B-shaped model with random weights (tools/random_model.py; speed
           does not depend on the values) at contexts 128 and 2048, against Hugging Face
           transformers in fp16 on the same GPU in the same run, and against the roofline:
           bytes read per token (weights + KV cache) / measured copy bandwidth.
  prefill  tokens/s of a 512-token prompt, against transformers fp16.
  load     what loading that model costs the machine, in a fresh process from a cold page cache: seconds,
           the drop of the system's free memory (on a Jetson, where CPU and GPU share DRAM, it includes the
           GPU's copy of the weights), the process's resident anonymous and file-backed memory, and how much of
           the file stays in the page cache (tools/page_cache.py). Beside an integrated GPU the backend drops
           the file's pages once they are uploaded (docs/ENGINE.md, CUDA memory), so the free memory should
           drop by about the weights once, not twice.
  boundary what one kernel boundary costs inside a CUDA graph on this GPU: a graph of 1000 dependent
           one-element kernels (torch), its replay time / 1000; times the kernels of one decode step
           (7 per layer + 3, as tests/cuda/test_cuda_emulator.py counts them) gives the step's floor
           before any byte is read. CUDA only.
  profile  where a decode step's time goes, at the first of --contexts (128): every kernel and copy the GPU ran during
           --steps steps (torch.profiler, whose CUPTI sees every kernel of the process, awq_edge's
           recorded and replayed steps included), per step by kernel: launches, microseconds, share
           of the step's span on the GPU; and how much of that span no kernel ran (boundaries, the
           host). CUDA only.

    python tools/bench_cuda.py [--parts linear decode prefill boundary load profile] [--shape llama2-7b]
                               [--model-dir DIR] [--weights gpu|host]
                               [--layers 4096x4096 4096x11008 ...]

`--weights host` (AWQ_EDGE_CUDA_WEIGHTS=host) has the CUDA backend keep the linear layers' weights in
pinned host memory that its kernels read through the GPU's address space: `linear` and `decode` then
say how fast the GPU reads the CPU's memory, which is what using the file's mapping in place would
get (on a Jetson the same DRAM as its own allocations; beside a discrete GPU, the bus).

Prints a markdown table per part with the GPU, driver, date and command, for docs/BENCHMARKS.md.
`--backend cpu --device cpu --shape tiny` runs the same code on a CPU (a check of the script, not
a benchmark). Needs torch with CUDA and transformers for the baselines.
"""
import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from page_cache import drop_cached_pages  # noqa: E402
from random_model import SHAPES, write_random_model  # noqa: E402

LINEAR_SHAPES = [(4096, 4096), (11008, 4096), (4096, 11008), (14336, 4096), (4096, 14336), (1024, 4096)]  # (N, K)


def layer_shape(text: str) -> tuple:
    """'NxK' -> (N, K): a layer of N output and K input features (K a multiple of 128)."""
    try:
        rows, cols = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a layer shape is NxK, for example 4096x11008, got '{text}'") from None
    if rows < 1 or cols < 128 or cols % 128 != 0:
        raise argparse.ArgumentTypeError(f"layer {text}: N must be >= 1 and K a multiple of 128 (group size)")
    return rows, cols


def machine_line(device: str) -> str:
    import torch
    if device == "cuda":
        name = torch.cuda.get_device_name(0)
        try:
            driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True).stdout.strip()
        except OSError:
            driver = "unknown"
        return f"{name}, driver {driver}, torch {torch.__version__} (CUDA {torch.version.cuda})"
    return f"CPU ({device}), torch {torch.__version__}"


def synchronize(device: str):
    import torch
    if device == "cuda":
        torch.cuda.synchronize()


def copy_bandwidth(device: str, gib: float = 1.0) -> float:
    """Bytes per second moved by a device-to-device copy (read + write)."""
    import torch
    n = int(gib * 2**30)
    a = torch.empty(n, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    b.copy_(a)
    synchronize(device)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        b.copy_(a)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    del a, b
    if device == "cuda":
        torch.cuda.empty_cache()  # on a Jetson the GPU's memory is the machine's
    return 2 * n / best


def random_q4(rows: int, cols: int, group: int, rng):
    from awq_edge.awqe.schemes import encode_grouped
    q = rng.integers(0, 16, size=(rows, cols))
    zeros = rng.integers(0, 16, size=(rows, cols // group))
    scales = rng.uniform(0.001, 0.05, size=(rows, cols // group))
    return list(encode_grouped("m", q, scales, zeros, 4).values())


def bench_linear(args, bandwidth: float):
    from awq_edge._awq_edge import backends
    rng = np.random.default_rng(0)
    print(f"\nweights in {'pinned host' if args.weights == 'host' else 'GPU'} memory (--weights {args.weights}; "
          "the CUDA backend's choice)")
    print("\n| layer (N x K) | q4 g128 MiB | us per call | GB/s | % of copy bandwidth |")
    print("|---|---|---|---|---|")
    for rows, cols in args.layers:
        layer = backends.Linear(args.backend, "q4_g128", rows, cols, random_q4(rows, cols, 128, rng))
        weight_bytes = rows * cols // 2 + rows * (cols // 128) * 3  # nibbles + fp16 scale + u8 zero per group
        copies = max(1, int(4 * args.cache_mib * 2**20 // weight_bytes) + 1)  # 4x the last-level cache
        x = rng.standard_normal((1, cols)).astype(np.float32)
        seconds = min(layer.time(x, args.repeats, copies) for _ in range(3))
        rate = weight_bytes / seconds
        print(f"| {rows} x {cols} | {weight_bytes / 2**20:.1f} | {seconds * 1e6:.1f} | {rate / 1e9:.1f} | "
              f"{100 * rate / bandwidth:.0f} % |")


def model_bytes_per_token(config: dict, path: Path, context: int) -> int:
    """Weights read for one token (the whole file minus the embedding table, plus one embedding row)
    and the KV cache read by attention at this context (fp16)."""
    from awq_edge.model_file import ModelFile
    entries = ModelFile(str(path), verify_checksums=False).tensors()
    total = sum(e["size"] for e in entries)
    embed = sum(e["size"] for e in entries if e["name"].startswith("embed."))
    kv_dim = config["num_key_value_heads"] * (config["hidden_size"] // config["num_attention_heads"])
    kv = 2 * config["num_hidden_layers"] * context * kv_dim * 2
    return total - embed + embed // config["vocab_size"] + kv


def transformers_model(shape: str, device: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    dtype = torch.float16 if device == "cuda" else torch.float32
    config = LlamaConfig(**SHAPES[shape], tie_word_embeddings=False)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    return model.eval()


def hf_decode_rate(model, device: str, context: int, steps: int) -> float:
    import torch
    ids = torch.randint(0, model.config.vocab_size, (1, context), device=device)
    with torch.no_grad():
        out = model(ids, use_cache=True)
        past, token = out.past_key_values, ids[:, -1:]
        for _ in range(3):  # warm-up
            out = model(token, past_key_values=past, use_cache=True)
            past = out.past_key_values
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            out = model(token, past_key_values=past, use_cache=True)
            past = out.past_key_values
            token = out.logits[:, -1:].argmax(-1)
        synchronize(device)
    return steps / (time.perf_counter() - start)


def hf_prefill_rate(model, device: str, tokens: int) -> float:
    import torch
    ids = torch.randint(0, model.config.vocab_size, (1, tokens), device=device)
    with torch.no_grad():
        model(ids)
        synchronize(device)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            model(ids)
            synchronize(device)
            best = min(best, time.perf_counter() - start)
    return tokens / best


def awq_decode_rate(generator, context: int, steps: int) -> float:
    generator.reset()
    rng = np.random.default_rng(context)
    ids = rng.integers(0, 256, context).tolist()
    generator.logits(ids)
    generator.logits([ids[-1]])  # warm-up step
    start = time.perf_counter()
    for i in range(steps):
        generator.logits([int(ids[i % context])])
    return steps / (time.perf_counter() - start)


def awq_prefill_rate(generator, tokens: int) -> float:
    ids = np.random.default_rng(tokens).integers(0, 256, tokens).tolist()
    best = float("inf")
    for _ in range(3):
        generator.reset()
        start = time.perf_counter()
        generator.logits(ids)
        best = min(best, time.perf_counter() - start)
    return tokens / best


KERNELS_PER_LAYER, KERNELS_PER_STEP = 7, 3  # a decode step of the CUDA backend (docs/ENGINE.md, "Fusions")


def bench_boundary(args):
    """Microseconds per kernel of a CUDA graph of dependent one-element kernels."""
    import torch
    if args.device != "cuda":
        print("\nboundary: needs a CUDA device (skipped)")
        return
    kernels = 1000
    x = torch.zeros(1, device="cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        for _ in range(3):
            x.add_(1)  # warm up outside the graph
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(kernels):
            x.add_(1)
    graph.replay()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.repeats):
        graph.replay()
    torch.cuda.synchronize()
    per_kernel = (time.perf_counter() - start) / (args.repeats * kernels)
    layers = SHAPES[args.shape]["num_hidden_layers"]
    step_kernels = KERNELS_PER_LAYER * layers + KERNELS_PER_STEP
    print(f"\n| kernel boundary in a CUDA graph | decode step of {args.shape} | their floor |")
    print("|---|---|---|")
    print(f"| {per_kernel * 1e6:.2f} us | {step_kernels} kernels | {step_kernels * per_kernel * 1e3:.3f} ms per token |")


def short_kernel_name(name: str) -> str:
    """'gemv_q4_kernel<1, false>' from the profiler's demangled 'void awq_edge::cuda::(anonymous
    namespace)::gemv_q4_kernel<1, false>(awq_edge::cuda::GemvOutputs, ...)'."""
    name = name.removeprefix("void ").replace("(anonymous namespace)::", "").replace("awq_edge::cuda::", "")
    depth = 0
    for i, character in enumerate(name):
        depth += character == "<"
        depth -= character == ">"
        if character == "(" and depth == 0:
            return name[:i].rstrip()
    return name


def step_breakdown(intervals, steps: int) -> tuple:
    """From the GPU's (name, start us, end us) of `steps` decode steps: rows (name, launches per step, us per
    step, share of the span) by time, the span per step (first start to last end, so the host's time between
    steps counts), the busy time per step (the union of the intervals), the launches per step and the median
    gap between one launch's end and the next one's start (what a boundary typically costs)."""
    totals = {}
    for name, start, end in intervals:
        count, total = totals.get(short_kernel_name(name), (0, 0.0))
        totals[short_kernel_name(name)] = (count + 1, total + end - start)
    span = (max(end for _, _, end in intervals) - min(start for _, start, _ in intervals)) / steps
    busy, reach, gaps = 0.0, float("-inf"), []
    for _, start, end in sorted(intervals, key=lambda interval: interval[1]):
        if reach > float("-inf"):
            gaps.append(max(0.0, start - reach))
        busy += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    rows = [(name, count / steps, total / steps, total / steps / span)
            for name, (count, total) in sorted(totals.items(), key=lambda item: -item[1][1])]
    return rows, span, busy / steps, len(intervals) / steps, float(np.median(gaps)) if gaps else 0.0


def profile_decode(generator, context: int, steps: int):
    """Prints where `steps` decode steps at `context` spend the GPU's time (torch.profiler)."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    generator.reset()
    ids = np.random.default_rng(context).integers(0, 256, context).tolist()
    generator.logits(ids)
    for token in ids[:2]:
        generator.logits([int(token)])  # recorded, then replayed: the profiled steps are replays
    torch.cuda.synchronize()
    sys.stdout.flush()  # what was printed survives a profiler that fails
    with profile(activities=[ProfilerActivity.CUDA]) as profiler:
        start = time.perf_counter()
        for i in range(steps):
            generator.logits([int(ids[i % context])])
        wall = (time.perf_counter() - start) / steps * 1e6
    intervals = [(e.name, e.time_range.start, e.time_range.end) for e in profiler.events()
                 if e.device_type == DeviceType.CUDA]
    if all(name.startswith(("Memcpy", "Memset")) for name, _, _ in intervals):
        print("\nprofile: the profiler saw no kernel (CUPTI missing, or not tracing CUDA graphs recorded before it "
              "started: try AWQ_EDGE_CUDA_GRAPHS=0, which times eager steps instead)")
        return
    rows, span, busy, launches, boundary = step_breakdown(intervals, steps)
    print(f"\n| decode step at context {context}, by kernel | launches per step | us per step | % of the span |")
    print("|---|---|---|---|")
    for name, count, micros, share in rows:
        print(f"| `{name}` | {count:.0f} | {micros:.1f} | {100 * share:.1f} % |")
    print(f"\nper step: {span:.0f} us on the GPU (first start to last end, the host's time between steps "
          f"included), {busy:.0f} us of it running something, {span - busy:.0f} us idle; {launches:.0f} launches, "
          f"median gap between two: {boundary:.2f} us; {wall:.0f} us of wall time per step under the profiler")


# Run in a fresh process by bench_load: loads the model and reports what that cost, as JSON.
LOAD_PROBE = '''
import json, sys, time
sys.path.insert(0, sys.argv[3])
from bench_memory import proc_fields, rss_parts
from gpu_memory import GpuMemory
from page_cache import cached_pages
from awq_edge.generator import Generator

gpu = GpuMemory()
gpu_before = gpu.free() if gpu else None
before = proc_fields("/proc/meminfo", ("MemFree",))["MemFree"]
start = time.perf_counter()
generator = Generator(sys.argv[1], backend=sys.argv[2], max_context=256)
seconds = time.perf_counter() - start
after = proc_fields("/proc/meminfo", ("MemFree",))["MemFree"]
process = rss_parts()
cached, total = cached_pages(sys.argv[1])
print(json.dumps(dict(backend=generator.backend, seconds=seconds, mem_free_drop=before - after,
                      gpu_taken=gpu_before - gpu.free() if gpu else None,
                      rss_anon=process["RssAnon"], rss_file=process["RssFile"], cached=cached, pages=total)))
'''


def bench_load(args, path: Path):
    """Loads the model in a fresh process, from a cold page cache for the file; on the CUDA backend twice: with the
    untied embedding table left in the file's mapping (the default) and uploaded (AWQ_EDGE_CUDA_EMBEDDING=gpu)."""
    if not Path("/proc/meminfo").exists():
        print("\nload: needs Linux's /proc (skipped)")
        return
    mib = 2**20
    embeddings = ["host", "gpu"] if args.backend == "cuda" else ["-"]
    rows = []
    for embedding in embeddings:
        drop_cached_pages(path)
        environment = {**os.environ, "AWQ_EDGE_CUDA_EMBEDDING": embedding} if embedding != "-" else None
        result = subprocess.run([sys.executable, "-c", LOAD_PROBE, str(path), args.backend, str(Path(__file__).parent)],
                                capture_output=True, text=True, env=environment)
        if result.returncode != 0:
            raise SystemExit(f"load: loading {path} failed:\n{result.stderr[-3000:]}")
        load = json.loads(result.stdout.strip().splitlines()[-1])
        gpu = "-" if load["gpu_taken"] is None else f"{load['gpu_taken'] / mib:.0f}"
        rows.append(f"| {embedding} | {load['seconds']:.2f} | {gpu} | {load['mem_free_drop'] / mib:.0f} | "
                    f"{load['rss_anon'] / mib:.0f} | {load['rss_file'] / mib:.0f} | {load['cached']} of {load['pages']} "
                    f"({100 * load['cached'] / max(1, load['pages']):.0f} %) |")
    print(f"\nloading {path.name} ({path.stat().st_size / mib:.0f} MiB) on {load['backend']}, cold page cache:")
    print("\n| embedding table | load s | GPU memory taken MiB | free memory drop MiB | process anon MiB | "
          "process file-backed MiB | file pages cached |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["linear", "decode", "prefill", "boundary", "load", "profile"],
                        choices=["linear", "decode", "prefill", "boundary", "load", "profile"])
    parser.add_argument("--shape", default="llama2-7b", choices=sorted(SHAPES))
    parser.add_argument("--layers", type=layer_shape, nargs="+", default=LINEAR_SHAPES, metavar="NxK",
                        help="the linear part's layer shapes (default: LLaMA-2-7B's and LLaMA-3-8B's)")
    parser.add_argument("--model-dir", type=Path, default=Path.home() / ".cache" / "awq_edge" / "bench")
    parser.add_argument("--backend", default="cuda")
    parser.add_argument("--weights", choices=["gpu", "host"], default=os.environ.get("AWQ_EDGE_CUDA_WEIGHTS") or "gpu",
                        help="where the CUDA backend keeps the linear layers' weights (default: AWQ_EDGE_CUDA_WEIGHTS, "
                             "else gpu)")
    parser.add_argument("--device", default="cuda", help="torch device of the baselines")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--cache-mib", type=float, default=64, help="last-level cache to defeat (H100: 50)")
    parser.add_argument("--steps", type=int, default=64, help="decode steps timed")
    parser.add_argument("--contexts", type=int, nargs="+", default=[128, 2048])
    parser.add_argument("--prompt-tokens", type=int, default=512)
    args = parser.parse_args()
    os.environ["AWQ_EDGE_CUDA_WEIGHTS"] = args.weights  # read by every CUDA backend this process creates

    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {machine_line(args.device)}")
    print(f"command: python {' '.join(shlex.quote(a) for a in sys.argv)}")
    bandwidth = copy_bandwidth(args.device)
    print(f"measured copy bandwidth: {bandwidth / 1e9:.0f} GB/s")
    if "linear" in args.parts:
        bench_linear(args, bandwidth)
    if "boundary" in args.parts:
        bench_boundary(args)
    if {"decode", "prefill", "load", "profile"} & set(args.parts):
        args.model_dir.mkdir(parents=True, exist_ok=True)
        path = args.model_dir / f"random-{args.shape}-q4_g128.awqe"
        if not path.exists():
            write_random_model(path, args.shape, "q4_g128", "f16")
    if "load" in args.parts:
        bench_load(args, path)
    if "profile" in args.parts and args.device != "cuda":
        print("\nprofile: needs a CUDA device (skipped)")
    if {"decode", "prefill"} & set(args.parts) or "profile" in args.parts and args.device == "cuda":
        from awq_edge.generator import Generator
        generator = Generator(str(path), backend=args.backend, max_context=max(args.contexts + [args.prompt_tokens]) + 16)
        print(f"\nawq_edge on {generator.backend}; {path.name} ({path.stat().st_size / 2**30:.2f} GiB)")
        model = transformers_model(args.shape, args.device) if {"decode", "prefill"} & set(args.parts) else None
        precision = "fp16" if args.device == "cuda" else "fp32"  # transformers_model's dtype
        config = SHAPES[args.shape]
        if "decode" in args.parts:
            print(f"\n| context | awq_edge tok/s | transformers {precision} tok/s | ratio | roofline tok/s | "
                  "% of roofline |")
            print("|---|---|---|---|---|---|")
            for context in args.contexts:
                ours = awq_decode_rate(generator, context, args.steps)
                theirs = hf_decode_rate(model, args.device, context, args.steps)
                roofline = bandwidth / model_bytes_per_token(config, path, context)
                print(f"| {context} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}x | {roofline:.1f} | "
                      f"{100 * ours / roofline:.0f} % |")
        if "prefill" in args.parts:
            ours = awq_prefill_rate(generator, args.prompt_tokens)
            theirs = hf_prefill_rate(model, args.device, args.prompt_tokens)
            print(f"\n| prefill {args.prompt_tokens} tokens | awq_edge {ours:.0f} tok/s | transformers {precision} "
                  f"{theirs:.0f} tok/s | ratio {ours / theirs:.2f}x |")
        if "profile" in args.parts and args.device == "cuda":
            profile_decode(generator, args.contexts[0], args.steps)


if __name__ == "__main__":
    main()
