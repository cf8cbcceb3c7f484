"""The accuracy cost of the NEON int8-activation path: perplexity of a model through the NEON levels under qemu against
the host's Reference kernels, on the start of the built-in evaluation text (the part bench_quantize.py scores).

Cross-builds tests/native/neon_logits.cpp (cmake/toolchains/aarch64-linux-gnu.cmake) and runs every window of the
sliding-window perplexity (awq_edge.evaluate.perplexity) through it under qemu-aarch64-static, the first window through
each level also timed. Emulated, so slow: about a minute per 256-token window of SmolLM2-135M at an int8 level.

    python tools/bench_neon_perplexity.py MODEL.awqe [--tokens 1024] [--window 256] [--levels neon-dot,neon-i8mm]
"""
import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from awq_edge import Generator
from awq_edge.corpus import builtin_split
from awq_edge.evaluate import perplexity

ROOT = Path(__file__).resolve().parents[1]
TOOLCHAIN = ROOT / "cmake" / "toolchains" / "aarch64-linux-gnu.cmake"
CPU_OF_LEVEL = {"neon-fp32": "cortex-a53", "neon-fp16": "cortex-a76", "neon-dot": "cortex-a76", "neon-i8mm": "max"}


def build(build_dir: Path) -> Path:
    if not (build_dir / "CMakeCache.txt").exists():
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build_dir), f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN}"],
                       check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(build_dir), "-j2", "--target", "neon_logits"], check=True,
                   stdout=subprocess.DEVNULL)
    return build_dir / "neon" / "neon_logits"


def qemu_logits(program: Path, model: Path, level: str, vocab: int, temp: Path):
    def logits(ids: torch.Tensor) -> torch.Tensor:
        ids = ids[0].tolist()
        out = temp / "logits.f32"
        subprocess.run(["qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu", "-cpu", CPU_OF_LEVEL[level], str(program),
                        str(model), "neon", level, str(len(ids)), str(out), *map(str, ids)], check=True,
                       stdout=subprocess.DEVNULL)
        return torch.from_numpy(np.fromfile(out, dtype=np.float32).reshape(1, len(ids), vocab))
    return logits


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--tokens", type=int, default=1024, help="evaluation tokens scored")
    parser.add_argument("--window", type=int, default=256, help="window = stride (non-overlapping windows)")
    parser.add_argument("--levels", default="neon-dot,neon-i8mm")
    parser.add_argument("--build", type=Path, help="cross build folder (default: a temporary one)")
    args = parser.parse_args()

    with Generator(args.model, kernels="reference") as host:
        ids = torch.tensor(host.tokenize(builtin_split("evaluation"))[:args.tokens])

        def host_logits(window):
            host.reset()
            return torch.from_numpy(np.asarray(host.logits(window[0].tolist(), all_positions=True)))[None]

        reference = perplexity(host_logits, ids, window=args.window, stride=args.window)
        vocab = host.vocab_size
    rows = [("reference (host)", "-", reference.value, 0.0, None)]
    with tempfile.TemporaryDirectory() as temp:
        program = build(args.build or Path(temp) / "build")
        for level in args.levels.split(","):
            start = time.perf_counter()
            result = perplexity(qemu_logits(program, args.model, level, vocab, Path(temp)), ids, window=args.window,
                                stride=args.window)
            seconds = time.perf_counter() - start
            rows.append((level, CPU_OF_LEVEL[level], result.value, result.value / reference.value - 1, seconds))
    print(f"{args.model.name}: {reference.tokens} tokens of the built-in evaluation text, windows of {args.window}")
    print("| kernels | qemu -cpu | perplexity | vs reference | qemu seconds |")
    print("|---|---|---|---|---|")
    for level, cpu, value, delta, seconds in rows:
        print(f"| {level} | {cpu} | {value:.4f} | {delta:+.3%} | {'' if seconds is None else f'{seconds:.0f}'} |")
    print(f"reproduce: python tools/bench_neon_perplexity.py {args.model} --tokens {args.tokens} --window {args.window} "
          f"--levels {args.levels}")


if __name__ == "__main__":
    main()
