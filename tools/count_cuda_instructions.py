"""Static cost of the CUDA linear kernels without a GPU: SASS instructions in their main loops,
compiled by nvcc for each architecture and disassembled.

Decode: instructions per weight in the main loop of gemv_q4_kernel<M> (cuda/gemv_q4.cu).

The main loop is the backward branch around the streaming weight loads (LDG.E.EF.128); one trip
handles kDepth tiles, 32 weights per lane each, so instructions per weight = trip length /
(kDepth * 32). This counts issue slots, not time: it tells whether the ALUs can keep up with the
memory (e.g. an H200 issues about 29.6e12 lane-instructions/s against 4.8 TB/s = 9.2e12 weights/s
with their g128 scales and zero points, so up to ~3.2 instructions per weight fit; an H100, 4.6), not
how fast the kernel runs.

Prefill (--prefill): the main loop of each gemm_q4_kernel / gemm_q4_staged_kernel instantiation
(cuda/gemm_q4.cu), the backward branch around the HMMAs: one trip is one 32-column block of a warp,
32 mma.m16n8k16, and every other instruction there competes with them for issue slots (an SM
sub-partition issues one instruction per cycle; its tensor cores take about 8 cycles per m16n8k16 on
an A100 or an Orin, about 4 on an H100, so a trip's 32 take 256 and 128). Every path of the range counts once (the fp16 kernels' includes the fold, which
runs once per group).

RMSNorm (--norm): where the global loads of cuda/rms_norm.cu's kernels sit. A decode step's norm reads
one row per token from L2, so its time is the number of loads that wait one after another: a load
inside a loop waits once per trip, loads issued before the first barrier wait once together.

    python tools/count_cuda_instructions.py [--arch 87 90] [--tokens 1 2 4 8]
    python tools/count_cuda_instructions.py --prefill [--arch 87 90]
    python tools/count_cuda_instructions.py --norm [--arch 87 90]

Needs nvcc and cuobjdump with the nvdisasm it calls: the CUDA toolkit's, or the PyPI packages
`nvidia-cuda-cuobjdump` and `nvidia-cuda-nvdisasm` (part of the test extra on x86-64 Linux), which are
found without --cuobjdump.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
K_DEPTH = 4          # cuda/gemv_q4.cu: tiles in flight per warp, handled per loop trip
WEIGHTS_PER_TILE = 32  # per lane: 4 rows x 8 columns

LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")


def kernel_sass(sass: str, tokens: int) -> list[tuple[int, str]]:
    """(address, instruction) of gemv_q4_kernel<tokens, false> (the plain one, not the gated MLP variant)."""
    marker = re.compile(r"Function : (\S+)")
    functions = marker.split(sass)
    for name, body in zip(functions[1::2], functions[2::2]):
        if "gemv_q4_kernel" in name and f"ILi{tokens}ELb0E" in name:
            return [(int(address, 16), text) for address, text in LINE.findall(body)]
    raise SystemExit(f"gemv_q4_kernel<{tokens}, false> not found in the disassembly")


def backward_branches(instructions: list[tuple[int, str]]) -> list[tuple[int, int]]:
    """(target, address) of every branch back to an earlier instruction: the ranges that loops repeat."""
    ranges = []
    for address, text in instructions:
        match = re.search(r"\bBRA\s+(?:`\()?(?:\.L_x_\d+|0x([0-9a-f]+))", text)
        if match and match.group(1) is not None and int(match.group(1), 16) < address:
            ranges.append((int(match.group(1), 16), address))
    return ranges


def main_loop(instructions: list[tuple[int, str]], anchor: str = "LDG.E.EF") -> list[tuple[int, str]]:
    """The instructions of the longest backward branch's range that contains an `anchor` instruction
    (default: the decode kernel's streaming weight loads)."""
    anchors = [a for a, text in instructions if anchor in text]
    best = None
    for target, address in backward_branches(instructions):
        if any(target <= a <= address for a in anchors):
            if best is None or address - target > best[1] - best[0]:
                best = (target, address)
    if best is None:
        raise SystemExit(f"no loop around {anchor} found")
    return [(a, text) for a, text in instructions if best[0] <= a <= best[1]]


def main_loop_length(instructions: list[tuple[int, str]]) -> int:
    """Instructions in the backward branch's range that contains the streaming weight loads."""
    return len(main_loop(instructions))


def find_cuobjdump():
    """cuobjdump on PATH, else the one the nvidia-cuda-cuobjdump wheel installs (nvidia/cu*/bin/)."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    try:
        import nvidia
    except ImportError:
        return None
    for root in getattr(nvidia, "__path__", []):
        for candidate in sorted(Path(root).glob("cu*/bin/cuobjdump")):
            return str(candidate)
    return None


def compiled_sass(source: str, arch: str, nvcc: str, cuobjdump: str) -> str:
    """The SASS of cuda/<source> compiled for sm_<arch>, as cuobjdump prints it."""
    with tempfile.TemporaryDirectory() as tmp:
        obj = Path(tmp) / f"{Path(source).stem}_{arch}.o"
        subprocess.run([nvcc, "-std=c++17", "-O3", f"-arch=sm_{arch}", f"-I{ROOT / 'cuda'}",
                        f"-I{ROOT / 'cpp' / 'include'}", "-c", str(ROOT / "cuda" / source), "-o", str(obj)],
                       check=True)
        # cuobjdump runs nvdisasm, which the PyPI packages put next to it
        env = {**os.environ, "PATH": f"{Path(cuobjdump).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        return subprocess.run([cuobjdump, "-sass", str(obj)], check=True, capture_output=True, text=True,
                              env=env).stdout


def decode_loop_cost(arch: str, tokens_list, nvcc: str, cuobjdump: str) -> dict:
    """{tokens: loop instructions per 4 tiles} of gemv_q4_kernel<tokens, false> compiled for sm_<arch>."""
    sass = compiled_sass("gemv_q4.cu", arch, nvcc, cuobjdump)
    return {tokens: main_loop_length(kernel_sass(sass, tokens)) for tokens in tokens_list}


def prefill_loop_costs(sass: str) -> dict:
    """{mangled gemm_q4 kernel name: (main loop instructions, HMMAs among them)}."""
    costs = {}
    functions = re.split(r"Function : (\S+)", sass)
    for name, body in zip(functions[1::2], functions[2::2]):
        if "gemm_q4" in name:
            loop = main_loop([(int(address, 16), text) for address, text in LINE.findall(body)], "HMMA")
            costs[name] = (len(loop), sum(1 for _, text in loop if re.search(r"\bHMMA\.", text)))
    return costs


def prefill_kernel_label(name: str) -> str:
    """'split K, fp32' or 'x staged S = 4, fp16' from a mangled gemm_q4 kernel name."""
    accumulation = "fp16" if re.search(r"Lb1EE", name) else "fp32"
    staged = re.search(r"gemm_q4_staged_kernelILi(\d+)E", name)
    return f"x staged S = {staged[1]}, {accumulation}" if staged else f"split K, {accumulation}"


def global_load_placement(instructions: list[tuple[int, str]]) -> dict:
    """Where a kernel's global loads (LDG) sit: how many in all, inside a loop (each trip waits for its own,
    one after another), and before the first block barrier (issued together, one wait for all)."""
    loads = [a for a, text in instructions if re.search(r"\bLDG\.", text)]
    loops = backward_branches(instructions)
    barriers = [a for a, text in instructions if "BAR.SYNC" in text]
    first_barrier = min(barriers) if barriers else float("inf")
    return {"loads": len(loads), "in_loops": sum(1 for a in loads if any(t <= a <= b for t, b in loops)),
            "before_barrier": sum(1 for a in loads if a < first_barrier)}


def norm_kernels(sass: str) -> dict:
    """{label: global_load_placement} of each RMSNorm kernel of cuda/rms_norm.cu."""
    placements = {}
    functions = re.split(r"Function : (\S+)", sass)
    for name, body in zip(functions[1::2], functions[2::2]):
        slots = re.search(r"rms_norm_registers_kernelILi(\d+)E", name)
        label = f"registers, {slots[1]} float4 per thread" if slots else "loop" if "rms_norm_loop" in name else None
        if label:
            placements[label] = global_load_placement([(int(a, 16), t) for a, t in LINE.findall(body)])
    return placements


def tensor_core_instructions(sass: str) -> dict:
    """{mangled kernel name: set of its HMMA variants (e.g. 'HMMA.16816.F32')}."""
    functions = re.split(r"Function : (\S+)", sass)
    return {name: set(re.findall(r"\bHMMA\.[0-9A-Z.]+", body)) for name, body in zip(functions[1::2], functions[2::2])}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["87", "90"])
    parser.add_argument("--tokens", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--prefill", action="store_true", help="count the prefill kernels' loops instead")
    parser.add_argument("--norm", action="store_true", help="where the RMSNorm kernels' global loads sit instead")
    parser.add_argument("--nvcc", default=shutil.which("nvcc"))
    parser.add_argument("--cuobjdump", default=find_cuobjdump())
    args = parser.parse_args()
    if not args.nvcc or not args.cuobjdump:
        sys.exit("needs nvcc and cuobjdump (see the module docstring)")
    if args.norm:
        print("| arch | kernel | global loads | inside a loop | before the first barrier |")
        print("|---|---|---|---|---|")
        for arch in args.arch:
            for label, p in sorted(norm_kernels(compiled_sass("rms_norm.cu", arch, args.nvcc, args.cuobjdump)).items()):
                print(f"| sm_{arch} | {label} | {p['loads']} | {p['in_loops']} | {p['before_barrier']} |")
        return
    if args.prefill:
        print("| arch | kernel | loop instructions | HMMA | per HMMA |")
        print("|---|---|---|---|---|")
        for arch in args.arch:
            costs = prefill_loop_costs(compiled_sass("gemm_q4.cu", arch, args.nvcc, args.cuobjdump))
            for name, (length, hmma) in sorted(costs.items(), key=lambda item: prefill_kernel_label(item[0])):
                print(f"| sm_{arch} | {prefill_kernel_label(name)} | {length} | {hmma} | {length / hmma:.2f} |")
        return
    print("| arch | tokens | loop instructions (4 tiles) | per weight | per weight and token |")
    print("|---|---|---|---|---|")
    for arch in args.arch:
        for tokens, length in decode_loop_cost(arch, args.tokens, args.nvcc, args.cuobjdump).items():
            per_weight = length / (K_DEPTH * WEIGHTS_PER_TILE)
            print(f"| sm_{arch} | {tokens} | {length} | {per_weight:.2f} | {per_weight / tokens:.2f} |")


if __name__ == "__main__":
    main()
