"""Instructions executed per weight by the NEON linear kernels, counted under qemu (no ARM hardware needed).

Cross-builds neon/bench_neon_linear.cpp (cmake/toolchains/aarch64-linux-gnu.cmake, linked without PIE so that the
addresses `nm` gives are the ones that run), then runs one call (1 thread) of a ROWS x COLS layer on TOKENS tokens
(default 1: decode; 8 or more: prefill) per scheme and level under qemu-aarch64-static with

    -singlestep -d exec,nochain -dfilter <the functions of neon/linear_neon.cpp but packing>

so that qemu logs one line per executed instruction inside those functions. Counted: everything linear_neon.cpp
executes for the call (x preparation, the row-block loop, the kernels); not counted: packing, the thread pool's
dispatch and libc. The table gives the total per weight and token, and the inner kernel function alone.

    python tools/count_neon_instructions.py [--rows 4096] [--cols 4096] [--schemes q4_g128,q4_g32,...] [--tokens 1]

Needs g++-aarch64-linux-gnu, qemu-user-static and cmake (tools/install.sh installs them on x86-64 Debian).
"""
import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from qemu_trace import cross_build, trace

NM = "aarch64-linux-gnu-nm"

# level -> (qemu CPU model that has its extensions, issue 5's target in instructions per weight)
LEVELS = {
    "neon-fp32": ("cortex-a53", None),
    "neon-fp16": ("cortex-a76", 0.6),
    "neon-dot": ("cortex-a76", 0.4),
    "neon-i8mm": ("max", 0.4),
}
NOT_COUNTED = ("pack_neon", "neon_level_supported")


def kernel_ranges(build_dir: Path, program: Path) -> list:
    """(start, size, demangled name) of every function of linear_neon.cpp in `program`, packing excluded."""
    objects = list(build_dir.rglob("linear_neon.cpp.o"))
    assert len(objects) == 1, f"expected one linear_neon.cpp.o under {build_dir}, found {objects}"
    own = {line.split()[-1] for line in subprocess.run([NM, "--defined-only", str(objects[0])], check=True,
                                                       capture_output=True, text=True).stdout.splitlines()
           if line.split()[-2] in "tT"}
    ranges = []
    for line in subprocess.run([NM, "-S", "--defined-only", str(program)], check=True, capture_output=True,
                               text=True).stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tT" and parts[3] in own:
            name = subprocess.run(["c++filt", parts[3]], capture_output=True, text=True).stdout.strip()
            if not any(skip in name for skip in NOT_COUNTED):
                ranges.append((int(parts[0], 16), int(parts[1], 16), name))
    return ranges


def count(program: Path, ranges: list, cpu: str, scheme: str, level: str, rows: int, cols: int,
          tokens: int) -> collections.Counter:
    """Executed instructions per function (demangled name) for one call on `tokens` tokens."""
    counts = collections.Counter()

    def on_lines(lines):
        for line in lines:
            # "Trace 0: 0x... [0000000001009331/0000000000413070/00000001/00000201] symbol"
            if line.startswith(b"Trace"):
                counts[line[line.index(b"/") + 1:line.index(b"/") + 17]] += 1

    filters = ",".join(f"0x{start:x}+0x{size:x}" for start, size, _ in ranges)
    trace(program, ["--scheme", scheme, "--rows", rows, "--cols", cols, "--levels", level, "--tokens", tokens,
                    "--threads", 1, "--iterations", 1], cpu, on_lines, filters)
    # program counters -> the function that holds them
    by_function = collections.Counter()
    starts = sorted(ranges)
    for pc_text, n in counts.items():
        pc = int(pc_text, 16)
        for start, size, name in starts:
            if start <= pc < start + size:
                by_function[name] += n
                break
    return by_function


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--schemes", default="q4_g128,q4_g32,q3_g128,q8_row,f16")
    parser.add_argument("--levels", default=",".join(LEVELS))
    parser.add_argument("--tokens", type=int, default=1, help="tokens per call: 1 decodes, 8 or more prefill")
    parser.add_argument("--build", type=Path, help="cross build folder (default: a temporary one)")
    args = parser.parse_args()
    missing = [p for p in ("aarch64-linux-gnu-g++", "qemu-aarch64-static", "cmake", NM) if not shutil.which(p)]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: install g++-aarch64-linux-gnu, qemu-user-static and cmake")

    with tempfile.TemporaryDirectory() as temp:
        build_dir = args.build or Path(temp) / "build"
        program = cross_build(build_dir, "bench_neon_linear")
        ranges = kernel_ranges(build_dir, program)
        weights = args.rows * args.cols * args.tokens  # per weight and token
        call = "one decode call (1 token" if args.tokens == 1 else f"one prefill call ({args.tokens} tokens"
        print(f"instructions executed per weight and token, {call}, 1 thread) of a {args.rows}x{args.cols} "
              f"layer, counted under qemu {subprocess.run(['qemu-aarch64-static', '--version'], capture_output=True, text=True).stdout.split()[2]}")
        print(f"{'scheme':8} {'level':10} {'qemu -cpu':11} {'instructions':>13} {'per weight':>11} "
              f"{'kernel fn':>10} {'target':>7}  kernel function")
        for scheme in args.schemes.split(","):
            for level in args.levels.split(","):
                cpu, target = LEVELS[level]
                if not scheme.startswith(("q3", "q4")):
                    target = None  # f16 and q8_row run the same fp32 kernel at every level
                    if level != "neon-fp32":
                        continue
                if args.tokens > 1:
                    target = None  # the targets are for decode
                functions = count(program, ranges, cpu, scheme, level, args.rows, args.cols, args.tokens)
                total = sum(functions.values())
                kernel, kernel_count = functions.most_common(1)[0]
                short = re.match(r"(?:\w+ )?([\w:]+(?:<[^>]*>)?)", kernel.replace("std::_Function_handler<void (long, long), ", "").replace("(anonymous namespace)::", "")
                                 .replace("awq_edge::cpu::", "")).group(1) + ("::lambda" if "lambda" in kernel else "")
                verdict = "" if target is None else f"{target:>5} {'ok' if total / weights <= target else 'MISSED'}"
                print(f"{scheme:8} {level:10} {cpu:11} {total:13d} {total / weights:11.3f} "
                      f"{kernel_count / weights:10.3f} {verdict:>7}  {short}")
        print(f"reproduce: python tools/count_neon_instructions.py --rows {args.rows} --cols {args.cols} "
              f"--schemes {args.schemes} --levels {args.levels} --tokens {args.tokens}")


if __name__ == "__main__":
    main()
