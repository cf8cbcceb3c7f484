"""Benchmark: prefill and decode tokens/s of awq_edge against llama.cpp, same model, prompt and threads.

Three engines run in one process on one machine, greedy, with the same thread count, the same
prompt token ids and the same number of generated tokens:

  llama.cpp       llama-cpp-python on a GGUF file, timed by llama.cpp's own perf counters
                  (prompt eval: one llama_decode of the P prompt tokens; eval: N - 1 single-token steps)
  awq_edge        the Python Generator on an .awqe file, timed by the engine's generation stats
  awq-edge-run    the native CLI on the same .awqe file, its --stats line

Decode tokens/s is (generated - 1) / decode time for every engine: N tokens take N - 1 forward
passes after the prefill. Each engine runs once untimed first (page cache, lazy allocations); then
the repetitions are interleaved (llama.cpp, awq_edge, awq-edge-run, llama.cpp, ...) so machine
noise hits all of them alike. The table gives the median and, in brackets, min-max.

    python tools/bench_generate.py --awqe smollm2-w4g64.awqe [--gguf FILE] [--threads 2]
        [--prompt-tokens 128] [--new-tokens 128] [--repetitions 3] [--skip-llama-cpp]

llama-cpp-python: `bash tools/install_bench.sh` (built for this CPU). An .awqe file of the default
model: `awq-edge quantize -o smollm2-w4g64.awqe`.
"""
import argparse
import datetime
import multiprocessing
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

LLAMA_CPP, PYTHON, NATIVE = "llama.cpp", "awq_edge (Python)", "awq-edge-run (native)"

# awq-edge-run --stats: "[cpu (...)] load 0.1 s, prompt 128 tokens (950.3 tokens/s), generated 128 (180.2 tokens/s), ..."
NATIVE_STATS = re.compile(r"prompt (\d+) tokens \(([^ ]+) tokens/s\), generated (\d+) \(([^ ]+) tokens/s\)")


@dataclass
class Run:
    prompt_tokens: int
    generated_tokens: int
    prefill_tps: float
    decode_tps: float


# ------------------------------------------------------------------------------------------------ engines
class LlamaCpp:
    """llama.cpp through llama-cpp-python: the whole prompt in one batch, then greedy single-token steps."""

    def __init__(self, gguf: Path, threads: int, prompt_tokens: int, new_tokens: int):
        import llama_cpp
        self._api = llama_cpp
        # n_batch = n_ubatch = P: the prompt is one llama_decode; no mmap: the weights are read into memory.
        self.llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=prompt_tokens + new_tokens, n_batch=prompt_tokens,
                                   n_ubatch=prompt_tokens, n_threads=threads, n_threads_batch=threads,
                                   use_mmap=False, verbose=False)
        self.n_vocab = self.llm.n_vocab()

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=False, special=False)

    def detokenize(self, ids: list[int]) -> str:
        return self.llm.detokenize(ids).decode("utf-8", errors="replace")

    def _greedy(self) -> int:
        import numpy as np
        # Fetching the logits synchronizes the context, which closes llama.cpp's timing of that decode.
        logits = np.ctypeslib.as_array(self._api.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.n_vocab,))
        return int(np.argmax(logits))

    def run(self, ids: list[int], new_tokens: int) -> Run:
        self._api.llama_perf_context_reset(self.llm.ctx)
        self.llm.reset()  # the next eval() drops the KV cache from position 0
        self.llm.eval(ids)
        token = self._greedy()
        for _ in range(new_tokens - 1):
            self.llm.eval([token])
            token = self._greedy()
        perf = self._api.llama_perf_context(self.llm.ctx)
        if perf.n_p_eval != len(ids) or perf.n_eval != new_tokens - 1 or perf.t_eval_ms <= 0:
            sys.exit(f"llama.cpp's perf counters do not match the run: {perf.n_p_eval} prompt tokens "
                     f"(expected {len(ids)}), {perf.n_eval} evals (expected {new_tokens - 1}), {perf.t_eval_ms} ms")
        return Run(perf.n_p_eval, perf.n_eval + 1, perf.n_p_eval / (perf.t_p_eval_ms / 1e3),
                   perf.n_eval / (perf.t_eval_ms / 1e3))


class InOwnProcess:
    """An engine in a process of its own, so that its threads never share a process with another engine's:
    llama.cpp's OpenMP workers, still spinning after its run, slow awq_edge's next prefill by several percent."""

    def __init__(self, engine_class, *args):
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        context.Process(target=serve, args=(child, engine_class, args), daemon=True).start()
        child.close()  # the child's end lives on in the child only: recv() sees EOF when the child dies
        self._call("__init__")  # waits until the engine is loaded

    def _call(self, method: str, *args):
        self._connection.send((method, args))
        try:
            return self._connection.recv()
        except (EOFError, ConnectionError):
            sys.exit(f"the engine's process ended during {method}(); its error is above")

    def __getattr__(self, method: str):
        return lambda *args: self._call(method, *args)


def serve(connection, engine_class, args) -> None:
    """The loop of an InOwnProcess child: (method, args) in, its result out."""
    engine = engine_class(*args)
    while True:
        try:
            method, call_args = connection.recv()
        except EOFError:  # the benchmark is over
            return
        connection.send(None if method == "__init__" else getattr(engine, method)(*call_args))


class PythonGenerator:
    """awq_edge's Python Generator (the C++ engine through the extension module)."""

    def __init__(self, awqe: Path, threads: int):
        from awq_edge.generator import Generator
        self.generator = Generator(awqe, threads=threads, verify_checksums=False)

    def tokenize(self, text: str) -> list[int]:
        return self.generator.tokenize(text, add_special_tokens=False)

    def detokenize(self, ids: list[int]) -> str:
        return self.generator.detokenize(ids)

    def run(self, ids: list[int], new_tokens: int) -> Run:
        self.generator.reset()
        self.generator.generate(ids, new_tokens, ignore_eos=True)
        s = self.generator.last_result.stats
        return Run(s["prompt_tokens"], s["generated_tokens"], s["prompt_tokens"] / s["prefill_seconds"],
                   (s["generated_tokens"] - 1) / s["decode_seconds"])


class NativeCli:
    """awq-edge-run in a fresh process per run; it tokenizes the prompt text itself."""

    def __init__(self, awqe: Path, threads: int):
        self.executable = find_native_cli()
        self.awqe, self.threads = awqe, threads

    def run(self, prompt_text: str, new_tokens: int) -> Run:
        command = [self.executable, str(self.awqe), "-p", prompt_text, "-n", str(new_tokens), "--ignore-eos",
                   "--stats", "--threads", str(self.threads), "--no-verify"]
        result = subprocess.run(command, capture_output=True, text=True)
        stats = NATIVE_STATS.search(result.stderr)
        if result.returncode or not stats:
            sys.exit(f"awq-edge-run failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
        prompt, prefill, generated, decode = stats.groups()
        return Run(int(prompt), int(generated), float(prefill), float(decode))


def find_native_cli() -> str:
    """awq-edge-run is installed next to the awq-edge console script."""
    beside = Path(sysconfig.get_path("scripts")) / "awq-edge-run"
    if beside.exists():
        return str(beside)
    from shutil import which
    found = which("awq-edge-run")
    if not found:
        sys.exit(f"awq-edge-run is neither in {beside.parent} nor on PATH: install awq_edge "
                 f"(pip install -e .) or pass --skip-native")
    return found


# ------------------------------------------------------------------------------------------------ inputs
def prompt_ids(tokenizer, prompt_tokens: int) -> list[int]:
    """The first P tokens of the built-in evaluation text (CPython's pydoc topics, the part the
    quantizer never calibrates on)."""
    from awq_edge.corpus import BUILTIN_EVALUATION, read_texts
    text = read_texts(BUILTIN_EVALUATION)
    ids = tokenizer.tokenize(text[: 16 * prompt_tokens])  # English: about 4 characters a token
    if len(ids) < prompt_tokens:
        ids = tokenizer.tokenize(text)
    if len(ids) < prompt_tokens:
        sys.exit(f"the built-in text has only {len(ids)} tokens; ask for fewer --prompt-tokens")
    return ids[:prompt_tokens]


def model_parameters(gguf: Path) -> int:
    """Parameters of the model as stored in its GGUF file (a tied output matrix counted once)."""
    from gguf import GGUFReader
    return sum(int(tensor.n_elements) for tensor in GGUFReader(gguf).tensors)


def size_cell(path: Path, parameters: int) -> str:
    size = path.stat().st_size
    return f"{size / 2**20:.1f} MiB, {8 * size / parameters:.2f} bits/param"


# ------------------------------------------------------------------------------------------------ report
def machine() -> str:
    import psutil
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    return f"{cpu}, {psutil.cpu_count(logical=False)} physical cores / {os.cpu_count()} logical"


def load_average() -> str:
    return ", ".join(f"{load:.2f}" for load in os.getloadavg())


def versions(with_llama_cpp: bool) -> str:
    import awq_edge
    parts = [f"awq_edge {awq_edge.__version__}"]
    commit = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True)
    if commit.returncode == 0:
        parts[0] += f" (commit {commit.stdout.strip()})"
    if with_llama_cpp:
        import llama_cpp
        parts.append(f"llama-cpp-python {llama_cpp.__version__}")
    return "; ".join(parts) + f"; Python {platform.python_version()}"


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def ratio(values: list[float], baseline: list[float] | None) -> str:
    return f"{statistics.median(values) / statistics.median(baseline):.2f}x" if baseline else "-"


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", help="GGUF file for llama.cpp (default: the built-in SmolLM2-135M-Instruct Q4_1)")
    parser.add_argument("--awqe", help="the .awqe file of the same model for awq_edge "
                                       "(required unless both awq_edge engines are skipped)")
    parser.add_argument("--threads", type=int, default=None, help="threads for every engine (default: physical cores)")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--skip-llama-cpp", action="store_true")
    parser.add_argument("--skip-python", action="store_true", help="skip awq_edge's Python Generator")
    parser.add_argument("--skip-native", action="store_true", help="skip awq_edge's native CLI awq-edge-run")
    args = parser.parse_args()

    import psutil
    from awq_edge.default_model import default_model_path
    threads = args.threads or psutil.cpu_count(logical=False) or 1
    if min(threads, args.prompt_tokens, args.repetitions) < 1 or args.new_tokens < 2:
        parser.error("--threads, --prompt-tokens and --repetitions must be >= 1, --new-tokens >= 2")
    run_awq_edge = not (args.skip_python and args.skip_native)
    if run_awq_edge and not args.awqe:
        parser.error("--awqe FILE is required (make one with `awq-edge quantize -o smollm2-w4g64.awqe`), "
                     "or pass --skip-python --skip-native")
    if args.skip_llama_cpp and not run_awq_edge:
        parser.error("every engine is skipped")
    gguf = Path(args.gguf) if args.gguf else default_model_path()
    awqe = Path(args.awqe) if args.awqe else None
    for path in (gguf, awqe):
        if path and not path.is_file():
            parser.error(f"no such file: {path}")
    load_before = load_average()

    # Load every engine before timing anything; the tokenizer is llama.cpp's where it runs.
    engines = {}
    if not args.skip_llama_cpp:
        engines[LLAMA_CPP] = InOwnProcess(LlamaCpp, gguf, threads, args.prompt_tokens, args.new_tokens)
    if not args.skip_python:
        engines[PYTHON] = PythonGenerator(awqe, threads)
    if not args.skip_native:
        engines[NATIVE] = NativeCli(awqe, threads)
    tokenizer = engines.get(LLAMA_CPP) or engines.get(PYTHON) or PythonGenerator(awqe, threads)
    ids = prompt_ids(tokenizer, args.prompt_tokens)
    text = tokenizer.detokenize(ids)  # awq-edge-run takes text; it reports how many tokens it made of it

    def run(name: str) -> Run:
        engine = engines[name]
        return engine.run(text if name == NATIVE else ids, args.new_tokens)

    for name in engines:
        print(f"warming up {name} ...", flush=True)
        run(name)
    runs = {name: [] for name in engines}
    for repetition in range(args.repetitions):
        for name in engines:
            runs[name].append(run(name))
            print(f"  {repetition + 1}/{args.repetitions} {name}: prefill {runs[name][-1].prefill_tps:.1f} tok/s, "
                  f"decode {runs[name][-1].decode_tps:.1f} tok/s", flush=True)

    parameters = model_parameters(gguf)
    prefill = {name: [r.prefill_tps for r in rs] for name, rs in runs.items()}
    decode = {name: [r.decode_tps for r in rs] for name, rs in runs.items()}
    command = shlex.join(["python", "tools/bench_generate.py"] + sys.argv[1:])
    print()
    print(f"- date: {datetime.datetime.now():%Y-%m-%d %H:%M}; machine: {machine()}; "
          f"load average (1/5/15 min) before {load_before}, after {load_average()}")
    print(f"- versions: {versions(not args.skip_llama_cpp)}")
    if PYTHON in engines:
        print(f"- awq_edge backend: {engines[PYTHON].generator.backend}")
    if LLAMA_CPP in engines:
        import llama_cpp
        print(f"- llama.cpp system info: {llama_cpp.llama_print_system_info().decode().strip()}")
    print(f"- settings: {threads} threads, prompt {args.prompt_tokens} tokens (built-in evaluation text), "
          f"{args.new_tokens} new tokens, greedy, end-of-sequence ignored; {args.repetitions} repetitions "
          f"interleaved after one warm-up run each; median (min-max)")
    print(f"- command: `{command}`")
    print()
    print("| engine | file | size | prefill tok/s | decode tok/s | decode ratio vs llama.cpp | prefill ratio |")
    print("|---|---|---|---|---|---|---|")
    for name in engines:
        path = gguf if name == LLAMA_CPP else awqe
        print(f"| {name} | {path.name} | {size_cell(path, parameters)} | {spread(prefill[name])} | "
              f"{spread(decode[name])} | {ratio(decode[name], decode.get(LLAMA_CPP))} | "
              f"{ratio(prefill[name], prefill.get(LLAMA_CPP))} |")
    print()
    print(f"bits/param: file size in bits over the model's {parameters / 1e6:.1f} M parameters (as counted in "
          f"the GGUF file).")
    if LLAMA_CPP in engines:
        print("llama.cpp: its own perf counters (llama_decode to logits), so Python's loop around it is not counted; "
              "awq_edge's decode time includes sampling.")
    for name, rs in runs.items():
        counts = {(r.prompt_tokens, r.generated_tokens) for r in rs}
        if counts != {(args.prompt_tokens, args.new_tokens)}:
            print(f"note: {name} ran (prompt, generated) tokens = {sorted(counts)}, "
                  f"not ({args.prompt_tokens}, {args.new_tokens})")
    if PYTHON in engines and NATIVE in engines:
        def overhead(measure):  # extra time per token of the Python Generator over the native CLI
            return 100 * (statistics.median(measure[NATIVE]) / statistics.median(measure[PYTHON]) - 1)
        print(f"Python vs native overhead (time per token): decode {overhead(decode):+.1f}%, "
              f"prefill {overhead(prefill):+.1f}%")


if __name__ == "__main__":
    main()
