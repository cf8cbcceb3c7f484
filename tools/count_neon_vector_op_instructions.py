"""Instructions executed per element by the decoder's operations other than the linear layers (rms_norm, the fused
residual add + rms_norm, RoPE, SwiGLU's silu_mul, attention) on aarch64, the portable C++ loops against NEON, counted
under qemu (no ARM hardware needed).

Cross-builds neon/bench_neon_vector_ops.cpp (cmake/toolchains/aarch64-linux-gnu.cmake), which calls one operation of
the CPU backend at one kernel level (reference: the portable vector_ops table; neon-fp32: the NEON one) on
SmolLM2-135M's sizes, and runs it under

    qemu-aarch64-static -cpu cortex-a53 -singlestep -d exec,nochain

once with --iterations 1 and once with --iterations 1 + N; (count_1+N - count_1) / N is everything one call executes
in steady state: the backend's method, the table's loops, libm's expf for the portable exp, attention's scratch
allocation (the first call also pays one-time costs such as resolving libm's symbols, hence the warm-up call). Elements per
call: rms_norm and add_rms_norm 576 (the hidden size), rope 768 (9 query + 3 key heads of 64), silu_mul 1536 (the
intermediate size), attention 9 heads x P positions x 64 (q.k, softmax and the weighted sum of V at decode position P);
and attention's parts for one head, straight from the vector_ops table: dot_rows (q.k) and axpy_rows (the weighted sum
of V) P x 64, softmax P.

    python tools/count_neon_vector_op_instructions.py [--positions 1024] [--ops rms_norm,...] [--build DIR]

Needs g++-aarch64-linux-gnu, qemu-user-static and cmake (tools/install.sh installs them on x86-64 Debian).
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from qemu_trace import cross_build, trace

LEVELS = ["reference", "neon-fp32"]  # the portable table, the NEON table


def elements(op: str, positions: int) -> int:
    return {"rms_norm": 576, "add_rms_norm": 576, "rope": 12 * 64, "silu_mul": 1536,
            "attention": 9 * positions * 64, "dot_rows": positions * 64, "softmax": positions,
            "axpy_rows": positions * 64}[op]


def executed(program: Path, op: str, level: str, positions: int, iterations: int) -> int:
    """Instructions the whole program executes under qemu (one logged line each)."""
    total = [0]

    def on_lines(lines):
        total[0] += sum(1 for line in lines if line.startswith(b"Trace"))

    trace(program, ["--op", op, "--level", level, "--positions", positions, "--iterations", iterations],
          "cortex-a53", on_lines)
    return total[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--positions", type=int, default=1024, help="attention's cached positions (decode position)")
    parser.add_argument("--ops", default="rms_norm,add_rms_norm,rope,silu_mul,attention,dot_rows,softmax,axpy_rows")
    parser.add_argument("--iterations", type=int, default=2, help="calls counted (after one warm-up call)")
    parser.add_argument("--build", type=Path, help="cross build folder (default: a temporary one)")
    args = parser.parse_args()
    missing = [p for p in ("aarch64-linux-gnu-g++", "qemu-aarch64-static", "cmake") if not shutil.which(p)]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: install g++-aarch64-linux-gnu, qemu-user-static and cmake")

    with tempfile.TemporaryDirectory() as temp:
        program = cross_build(args.build or Path(temp) / "build", "bench_neon_vector_ops")
        qemu_version = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True,
                                      text=True).stdout.split()[2]
        print(f"instructions executed per element, one call (1 thread) on SmolLM2-135M's sizes, counted under "
              f"qemu {qemu_version} -cpu cortex-a53")
        print(f"{'op':13} {'elements':>9} {'portable':>10} {'neon':>8} {'portable / neon':>16}")
        for op in args.ops.split(","):
            n = elements(op, args.positions)
            per_element = {}
            for level in LEVELS:
                base = executed(program, op, level, args.positions, 1)
                count = executed(program, op, level, args.positions, 1 + args.iterations)
                per_element[level] = (count - base) / args.iterations / n
            portable, neon = per_element["reference"], per_element["neon-fp32"]
            print(f"{op:13} {n:9d} {portable:10.2f} {neon:8.2f} {portable / neon:15.1f}x")
        print(f"reproduce: python tools/count_neon_vector_op_instructions.py --positions {args.positions} "
              f"--ops {args.ops} --iterations {args.iterations}")


if __name__ == "__main__":
    main()
