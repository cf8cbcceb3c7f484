"""tools/bench_cuda.py and tools/tune_cuda.py end to end on the CPU backend with tiny shapes: a check of the
scripts (their arguments, the random model, the tables and the tuning-table line they print), so that a
lent GPU's few minutes are not lost to a script error. The numbers are not benchmarks."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("torch")
pytest.importorskip("transformers")


def run_tool(name, *arguments):
    result = subprocess.run([sys.executable, str(ROOT / "tools" / name), *arguments], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_bench_cuda_prints_every_table(tmp_path):
    out = run_tool("bench_cuda.py", "--backend", "cpu", "--device", "cpu", "--shape", "tiny", "--layers", "64x256",
                   "640x128", "--repeats", "1", "--steps", "2", "--contexts", "16", "40", "--prompt-tokens", "24",
                   "--cache-mib", "0.1", "--model-dir", str(tmp_path), "--weights", "host").stdout
    assert "weights in pinned host memory (--weights host; " in out, out
    assert re.search(r"^\| 64 x 256 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| \d+ % \|$", out, re.M), out
    assert re.search(r"^\| 640 x 128 \|", out, re.M), out
    assert "boundary: needs a CUDA device (skipped)" in out
    assert "profile: needs a CUDA device (skipped)" in out
    assert re.search(r"^\| context \| awq_edge tok/s \| transformers fp32 tok/s \|", out, re.M), out
    for context in (16, 40):
        assert re.search(rf"^\| {context} \| [\d.]+ \| [\d.]+ \| [\d.]+x \| [\d.]+ \| \d+ % \|$", out, re.M), out
    assert re.search(r"^\| prefill 24 tokens \| awq_edge \d+ tok/s \| transformers fp32 \d+ tok/s \| ratio", out,
                     re.M), out
    # load: on the CPU backend one row (the embedding table's place is the CUDA backend's choice), no GPU memory
    assert re.search(r"^\| - \| [\d.]+ \| - \| -?\d+ \| \d+ \| \d+ \| \d+ of \d+ \(\d+ %\) \|$", out, re.M), out
    assert (tmp_path / "random-tiny-q4_g128.awqe").exists()


def test_bench_cuda_profile_sums_a_steps_kernels_by_name():
    """The profile part's arithmetic (its torch.profiler trace needs a GPU): kernel names as the profiler
    demangles them, shortened; per-step launches and time by name; the span, the busy time (overlaps
    counted once) and the median gap between launches."""
    sys.path.insert(0, str(ROOT / "tools"))
    from bench_cuda import short_kernel_name, step_breakdown
    assert short_kernel_name("void awq_edge::cuda::(anonymous namespace)::gemv_q4_kernel<1, false>("
                             "awq_edge::cuda::GemvOutputs, uint4 const*, float const*)") == "gemv_q4_kernel<1, false>"
    assert short_kernel_name("void awq_edge::cuda::attention_kernel<4, 1>(awq_edge::cuda::AttentionArguments)") == \
        "attention_kernel<4, 1>"
    assert short_kernel_name("Memcpy HtoD (Pageable -> Device)") == "Memcpy HtoD"
    # two steps of: a 0-10, b 12-20 (a second stream's c overlapping it, 15-22), a 25-30; 70 us of host between
    step = [("void f<(int)1>(int)", 0, 10), ("void g(float*)", 12, 20), ("void h()", 15, 22), ("void f<(int)1>(int)", 25, 30)]
    intervals = step + [(name, start + 100, end + 100) for name, start, end in step]
    rows, span, busy, launches, boundary = step_breakdown(intervals, 2)
    assert rows == [("f<(int)1>", 2.0, 15.0, 15.0 / 65.0), ("g", 1.0, 8.0, 8.0 / 65.0), ("h", 1.0, 7.0, 7.0 / 65.0)]
    assert (span, busy, launches) == (65.0, 25.0, 4.0)  # 0-10, 12-22, 25-30 per step
    assert boundary == 2.0  # gaps 2, 0, 3, 70, 2, 0, 3


def test_bench_cuda_rejects_a_bad_layer_shape():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_cuda.py"), "--layers", "4096x100"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "K a multiple of 128" in result.stderr, result.stderr


def test_tune_cuda_times_every_candidate_and_prints_a_table_entry(tmp_path):
    result = run_tool("tune_cuda.py", "--backend", "cpu", "--layers", "64x256", "--repeats", "1", "--copies", "1",
                      "--shape", "tiny", "--model-dir", str(tmp_path))
    log = result.stderr
    assert len(re.findall(r"^gemv_max_warps=\d gemv_warps_per_sm=\d+: [\d.]+ us$", log, re.M)) == 16, log
    assert len(re.findall(r"^gemm_warps=\d: [\d.]+ ms$", log, re.M)) == 4, log
    assert len(re.findall(r"^gemm_strips=\d: [\d.]+ ms$", log, re.M)) == 4, log
    assert len(re.findall(r"^gemm_fp16_accumulate=[01]: [\d.]+ ms$", log, re.M)) == 2, log
    assert len(re.findall(r"^attention_blocks_per_sm=\d+: [\d.]+ ms per token$", log, re.M)) == 5, log
    # the line cuda/tuning.cpp's kTable takes: {device, major, minor, min SMs, max SMs, measured, {config}}
    assert re.fullmatch(r'    \{"this CPU \(script check\)", 0, 0, 0, 0, true, \{[1248], \d+, [1-4], \d+, [1248], (true|false)\}\},\n',
                        result.stdout), result.stdout
