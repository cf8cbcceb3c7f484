"""The NEON backend without ARM hardware: the engine is cross-compiled for aarch64 with Debian's
g++-aarch64-linux-gnu (cmake/toolchains/aarch64-linux-gnu.cmake) and run under qemu-aarch64-static,
for CPU models that differ in the extensions the kernels use, so that every kernel level runs:

    cortex-a53   baseline NEON            neon-fp32
    cortex-a76   + FP16, DotProd          neon-fp32, neon-fp16, neon-dot
    max          + I8MM                   all four

1. tests/native/test_neon_kernels.cpp: each level against the Reference level (odd shapes, every scheme).
   tests/native/test_neon_vector_ops.cpp: the NEON inner loops of norms, RoPE, attention and SwiGLU against the
   portable ones, and the NEON exp against exp in double.
2. End to end: a tiny model through `awq-edge-run --backend neon` gives the same greedy text as the
   host's Reference kernels (faithful levels), and through tests/native/neon_logits.cpp the same
   logits within a stated tolerance (every level, prefill and decode).

Skipped, with the reason, where the cross compiler, qemu or cmake is missing (tools/install.sh
installs them on x86-64 Debian/Ubuntu); never skipped in CI.
"""
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLCHAIN = ROOT / "cmake" / "toolchains" / "aarch64-linux-gnu.cmake"
QEMU = shutil.which("qemu-aarch64-static")
SYSROOT = "/usr/aarch64-linux-gnu"

# CPU model -> the NEON levels it must run (the detection must find exactly these)
CPU_LEVELS = {
    "cortex-a53": ["neon-fp32"],
    "cortex-a76": ["neon-fp32", "neon-fp16", "neon-dot"],
    "max": ["neon-fp32", "neon-fp16", "neon-dot", "neon-i8mm"],
}
PROMPT = "Once upon a time"


def missing_tools():
    needed = {"aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu", "qemu-aarch64-static": "qemu-user-static",
              "cmake": "cmake"}
    return [f"{program} (package {package})" for program, package in needed.items() if not shutil.which(program)]


@pytest.fixture(scope="session")
def aarch64_build(tmp_path_factory):
    """The engine, awq-edge-run and the test programs, cross-built for aarch64 once per session."""
    missing = missing_tools()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the NEON tests; missing: {', '.join(missing)} (tools/install.sh installs them)")
        pytest.skip(f"needs {', '.join(missing)}; tools/install.sh installs them on x86-64 Debian/Ubuntu")
    build = tmp_path_factory.mktemp("build-aarch64")
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN}",
                    "-DCMAKE_BUILD_TYPE=Release"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "-j2", "--target", "awq-edge-run", "test_neon_kernels",
                    "test_neon_vector_ops", "neon_logits"], check=True, capture_output=True)
    return build


def qemu(cpu, *command, timeout=600):
    return subprocess.run([QEMU, "-L", SYSROOT, "-cpu", cpu, *map(str, command)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("cpu", CPU_LEVELS)
def test_kernels_against_reference(aarch64_build, cpu):
    run = qemu(cpu, aarch64_build / "neon" / "test_neon_kernels")
    assert run.returncode == 0 and run.stdout.rstrip().endswith("OK"), run.stdout + run.stderr
    ran = [line.split()[0] for line in run.stdout.splitlines() if " cases, 0 failed" in line]
    assert ran == CPU_LEVELS[cpu], run.stdout


# What test_neon_vector_ops.cpp checks, one line per op; all must run.
VECTOR_OPS = ["add", "add_sum_squares", "axpy_rows", "dot_rows", "exp (ulp vs double)", "rotate_half", "scale_mul",
              "silu_mul", "softmax", "sum_squares"]


@pytest.mark.parametrize("cpu", ["cortex-a53", "max"])
def test_vector_ops_against_portable(aarch64_build, cpu):
    """The NEON table of vector_ops.h (baseline NEON: the same code on every CPU model) against the portable one."""
    run = qemu(cpu, aarch64_build / "neon" / "test_neon_vector_ops")
    print(run.stdout)
    assert run.returncode == 0 and run.stdout.rstrip().endswith("OK"), run.stdout + run.stderr
    ran = sorted(line.split(" cases")[0].rsplit(None, 1)[0].strip() for line in run.stdout.splitlines()
                 if " cases, 0 failed" in line)
    assert ran == VECTOR_OPS, run.stdout


@pytest.mark.parametrize("cpu", ["cortex-a53", "cortex-a76"])
def test_greedy_text_matches_reference_kernels(aarch64_build, tiny_awqe, cpu):
    """The faithful path (neon-fp32 on cortex-a53, neon-fp16 on cortex-a76) gives the host's greedy text."""
    from awq_edge import Generator
    path = tiny_awqe("llama")
    with Generator(path, kernels="reference") as generator:
        expected = generator.generate(PROMPT, max_new_tokens=24, ignore_eos=True)
    run = qemu(cpu, aarch64_build / "awq-edge-run", path, "-p", PROMPT, "-n", 24, "--ignore-eos", "--backend", "neon",
               "--kernels", "neon", "--threads", 2, "--stats")
    assert run.returncode == 0, run.stderr
    level = "neon-fp16" if cpu == "cortex-a76" else "neon-fp32"
    assert f"({level} kernels" in run.stderr
    assert run.stdout == expected + "\n"


# level -> (CPU model that has it, tolerance of max |logits - ref| relative to max |ref|)
LOGIT_LEVELS = {
    "neon-fp32": ("cortex-a53", 1e-4),
    "neon-fp16": ("cortex-a76", 1e-2),
    "neon-dot": ("cortex-a76", 5e-2),
    "neon-i8mm": ("max", 5e-2),
}


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("level", LOGIT_LEVELS)
def test_logits_match_reference_kernels(aarch64_build, tiny_awqe, tmp_path, kind, level):
    """Every level, through prefill (12 tokens) and 6 decode steps, against the host's Reference kernels."""
    from awq_edge import Generator
    cpu, tolerance = LOGIT_LEVELS[level]
    path = tiny_awqe(kind, bits=4, group_size=32) if kind == "llama" else tiny_awqe(kind, bits=3, group_size=64)
    with Generator(path, kernels="reference") as generator:
        ids = generator.tokenize(PROMPT + " there lived a small dragon who loved to read books")[:18]
        expected = np.asarray(generator.logits(ids, all_positions=True), dtype=np.float32)
    out = tmp_path / "logits.f32"
    run = qemu(cpu, aarch64_build / "neon" / "neon_logits", path, "neon", level, 12, out, *ids)
    assert run.returncode == 0, run.stderr
    assert f"({level} kernels" in run.stdout
    logits = np.fromfile(out, dtype=np.float32).reshape(expected.shape)
    error = np.abs(logits - expected).max() / np.abs(expected).max()
    print(f"{kind} {level}: max |logits - ref| / max |ref| = {error:.3g}")
    assert error <= tolerance, f"max |logits - ref| / max |ref| = {error:.3g} > {tolerance}"
    if level in ("neon-fp32", "neon-fp16"):
        assert (logits.argmax(-1) == expected.argmax(-1)).all()
