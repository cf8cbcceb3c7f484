"""The CUDA backend's own code, kernels included, run without a GPU on the CPU emulator (cuda/emulator/).

The engine and the Python extension are built once per session with -DAWQ_EDGE_CUDA=OFF
-DAWQ_EDGE_CUDA_EMULATOR=ON: cuda/*.cu compile as host C++, every GPU thread runs as a fiber, warp shuffles,
__syncthreads and mma.sync are emulated as CUDA specifies them, and stream capture records CUDA graphs.

1. tests/cuda/test_emulator.cpp: the emulator itself (shuffles, barriers, mma against double, graph
   recording, pinned host memory read by a kernel, and the mistakes it reports: divergent shuffles, partial barriers, refused launches, races
   that the thread order exposes); tests/cuda/test_prepared_writers.cpp: the RMSNorm kernels' prepared
   output, byte for byte that of prepare_activations.
2. tests/cuda/test_cuda_backend.py's GPU tests (every linear kernel against numpy at odd shapes, logits of
   every tiny model against transformers, attention shapes, graph replay equal to eager) and
   tests/cpp/test_backend_operations.py's (the other operations one at a time against numpy, the attention
   block both fused and by the primitives the decoder does not call) on the emulated backend, in a child
   pytest that imports the emulated extension; once more with the threads of every block run in reverse
   order, so that a missing barrier changes a result.

3. The real model: SmolLM2-135M (W4 g64, int8 LM head; hidden 576, 9 query heads on 3 kv heads, a
   49152-token vocabulary) gives the CPU backend's greedy text through `awq-edge-run --backend cuda`.
4. Out-of-bounds accesses (what compute-sanitizer's memcheck finds on a GPU): awq-edge-run and the emulator
   test built with AddressSanitizer, where device memory is malloc'd host memory of the exact size, run
   tiny models of every weight scheme through prefill and decode on the emulated backend.
5. Races inside a block (what compute-sanitizer's racecheck finds on a GPU): the same built with
   ThreadSanitizer, every emulated thread a TSan fiber ordered only by block start, __syncthreads and block
   end (cuda/emulator/race_detection.h), run the emulator test, the RMSNorm kernels' test and two models
   whose norms, attention and linear kernels use several warps, through prefill and decode; seeded races
   (a missing barrier in shared memory, a plain += in global memory, lanes relying on a shuffle) are
   reported.

What it cannot show: speed, races between the blocks of a grid (they run one after another here; a
kernel that relies on block order shows in the reverse-order run), register and occupancy limits, and
the inline PTX that the emulator replaces (lop3, ld.global.cs, mma.sync: the host paths of
fragment_math.h and tensor_core.cpp stand in). Those need a GPU (tools/gpu_check.sh).
"""
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def emulated_build(tmp_path_factory):
    if shutil.which("cmake") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the CUDA emulator tests: cmake is missing (the test extra installs it)")
        pytest.skip("needs cmake")
    build = tmp_path_factory.mktemp("build-cuda-emulator")
    configure = subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                                "-DAWQ_EDGE_CUDA=OFF", "-DAWQ_EDGE_CUDA_EMULATOR=ON", "-DAWQ_EDGE_PYTHON=ON",
                                f"-DPython_EXECUTABLE={sys.executable}"], capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compile_ = subprocess.run(["cmake", "--build", str(build), "-j2", "--target", "_awq_edge", "test_emulator",
                               "test_prepared_writers", "awq-edge-run"], capture_output=True, text=True)
    assert compile_.returncode == 0, compile_.stdout[-5000:] + compile_.stderr[-5000:]
    return build


@pytest.fixture(scope="session")
def emulated_package(emulated_build, tmp_path_factory):
    """A copy of the installed awq_edge Python package whose extension module is the emulated build's."""
    import awq_edge
    installed = Path(awq_edge.__file__).parent
    root = tmp_path_factory.mktemp("emulated-package")
    shutil.copytree(installed, root / "awq_edge", ignore=shutil.ignore_patterns("_awq_edge*.so", "_awq_edge*.pyd",
                                                                                "__pycache__"))
    modules = list(emulated_build.glob("_awq_edge*.so"))
    assert len(modules) == 1, f"expected one extension module in {emulated_build}, found {modules}"
    shutil.copy2(modules[0], root / "awq_edge")
    return root


@pytest.mark.parametrize("build", ["emulated_build", "race_checked_build"])
def test_emulator_runs_kernels_as_cuda_specifies(build, request):
    """Also under ThreadSanitizer, without a report (there the deliberately racy kernel is left to
    test_thread_sanitizer_reports_racing_threads_of_a_block)."""
    run = subprocess.run([str(request.getfixturevalue(build) / "cuda" / "emulator" / "test_emulator")],
                         capture_output=True, text=True, timeout=300, env=SANITIZER)
    print(run.stdout)
    assert run.returncode == 0 and run.stdout.rstrip().endswith("OK"), run.stdout + run.stderr[-5000:]
    assert run.stdout.count("ok  ") >= (15 if build == "emulated_build" else 14)


@pytest.mark.parametrize("build", ["emulated_build", "sanitized_build", "race_checked_build"])
def test_norm_kernels_write_the_prepared_bytes_of_their_output(build, request):
    """tests/cuda/test_prepared_writers.cpp: rms_norm.cu's kernels (rows in registers, and the loop) against
    prepare_activations and a double reference, also under AddressSanitizer (rows past a warp's end) and
    ThreadSanitizer (the loop kernel's barrier between writing a row and preparing it)."""
    program = request.getfixturevalue(build) / "cuda" / "emulator" / "test_prepared_writers"
    run = subprocess.run([str(program)], capture_output=True, text=True, timeout=300, env=SANITIZER)
    print(run.stdout)
    assert run.returncode == 0 and run.stdout.rstrip().endswith("OK"), run.stdout + run.stderr[-3000:]
    assert run.stdout.count("ok  ") == 33


# thread order -> (SMs of the emulated sm_87, AWQ_EDGE_CUDA_TUNING). The first run is a Jetson AGX Orin (16
# SMs) with its tuning-table entry: up to 8 warps per strip in decode; in prefill the split-K kernel with 2
# warps for the small shapes and the x-staged kernel with 4 strips per block where that gives 8+ blocks. The
# second runs the threads last to first on one SM, so that every prefill takes the x-staged kernel (8 strips
# per block, with spare warps where N is small), and decode with 2 warps per strip and many attention splits.
RUNS = {"forward": ("16", ""),
        "reverse": ("1", "gemm_strips=8,gemv_max_warps=2,gemm_warps=3,attention_blocks_per_sm=64")}


@pytest.mark.parametrize("order", RUNS)
def test_gpu_tests_pass_on_the_emulated_backend(emulated_package, tmp_path, order):
    """tests/cuda/test_cuda_backend.py, GPU tests only, against the emulated extension. The reverse order
    runs a representative subset (shapes of every kernel path and the end-to-end logits)."""
    selection = ["-m", "gpu"]
    if order == "reverse":
        selection += ["-k", "(matches_numpy and (33-256 or 1000-1536) and (q4_g32 or q3_g64 or f16)) "
                            "or logits_match_transformers or attention_shapes or long_contexts or prepared_operands or cuda_graphs "
                            "or emulated or backend_operations"]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(emulated_package), str(ROOT / "tests")]),
                   "AWQ_EDGE_CUDA_EMULATED": "1", "AWQ_EDGE_CUDA_EMULATOR_ORDER": order,
                   "AWQ_EDGE_CUDA_EMULATOR_SMS": RUNS[order][0], "AWQ_EDGE_CUDA_TUNING": RUNS[order][1]}
    run = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "tests" / "cuda" / "test_cuda_backend.py"),
                          str(ROOT / "tests" / "cpp" / "test_backend_operations.py"), *selection, "-q", "-p",
                          "no:cacheprovider", f"--basetemp={tmp_path / 'child'}", "-o", "addopts="],
                         cwd=ROOT, env=environment, capture_output=True, text=True, timeout=1800)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    print(summary)
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-3000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary


def test_tuner_prints_the_emulated_gpus_table_entry(emulated_package):
    """tools/tune_cuda.py on the CUDA backend (tiny shapes; the attention candidates need a large model): the
    entry names the GPU's compute capability and SM count, read from the backend, not from torch."""
    environment = {**os.environ, "PYTHONPATH": str(emulated_package), "AWQ_EDGE_CUDA_EMULATED": "1",
                   "AWQ_EDGE_CUDA_EMULATOR_SMS": "12"}
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "tune_cuda.py"), "--backend", "cuda", "--layers",
                          "64x256", "--repeats", "1", "--copies", "1", "--no-attention"], capture_output=True,
                         text=True, timeout=600, env=environment)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith('    {"CUDA emulator on the CPU (tests only)", 8, 7, 12, 12, true, {'), run.stdout


def test_bench_cuda_measures_loading_with_the_embedding_table_in_both_places(emulated_package, tmp_path):
    """tools/bench_cuda.py's load part on the CUDA backend: a row with the untied embedding table left in the file's
    mapping (the default) and one with it uploaded; the emulator has no driver to ask for GPU memory ("-")."""
    environment = {**os.environ, "PYTHONPATH": str(emulated_package), "AWQ_EDGE_CUDA_EMULATED": "1"}
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_cuda.py"), "--parts", "load", "--backend", "cuda",
                          "--device", "cpu", "--shape", "tiny", "--model-dir", str(tmp_path)], capture_output=True,
                         text=True, timeout=600, env=environment)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "on cuda (CUDA emulator on the CPU" in run.stdout, run.stdout
    for place in ("host", "gpu"):
        assert re.search(rf"^\| {place} \| [\d.]+ \| - \| -?\d+ \| \d+ \| \d+ \| \d+ of \d+ \(\d+ %\) \|$", run.stdout,
                         re.M), run.stdout


@pytest.mark.slow
def test_real_model_greedy_text_matches_the_cpu_backend(emulated_build, smollm2_path, tmp_path):
    """A short prompt and 8 greedy tokens (about a minute on the emulator: every decode step runs 210 linear
    layers and the 49152-row LM head as fibers)."""
    from awq_edge import Generator
    from awq_edge.quantize import QuantizeOptions, quantize_model
    path = tmp_path / "smollm2-rtn-w4g64.awqe"
    quantize_model(smollm2_path, path, QuantizeOptions(method="rtn", bits=4, group_size=64, lm_head="int8"))
    prompt = "The capital of France is"
    expected = Generator(path, backend="cpu").generate(prompt, max_new_tokens=8, ignore_eos=True)
    run = subprocess.run([str(emulated_build / "awq-edge-run"), str(path), "-p", prompt, "-n", "8", "--ignore-eos",
                          "--backend", "cuda", "--stats"], capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "CUDA emulator on the CPU" in run.stderr
    assert run.stdout == expected + "\n", (run.stdout, expected)


def kernels_per_decode_step(awq_edge_run, model, prompt, environment, tmp_path):
    """{kernel name: launches} of one decode step, from the emulator's launch log of two runs that differ
    by four decode steps (eager, recorded and replayed steps alike: a replayed graph logs its kernels)."""
    counts = []
    for tokens in (4, 8):
        log = tmp_path / f"launches-{tokens}.log"
        run = subprocess.run([str(awq_edge_run), str(model), "-p", prompt, "-n", str(tokens), "--ignore-eos",
                              "--backend", "cuda"], capture_output=True, text=True, timeout=600,
                             env={**environment, "AWQ_EDGE_CUDA_EMULATOR_LAUNCH_LOG": str(log)})
        assert run.returncode == 0, run.stderr[-3000:]
        counts.append(Counter(line.split(" grid=")[0] for line in log.read_text().splitlines()))
    steps = counts[1] - counts[0]
    assert all(count % 4 == 0 for count in steps.values()), steps
    return {name: count // 4 for name, count in steps.items()}


# case -> (model overrides, group size, prompt repeats, AWQ_EDGE_CUDA_TUNING)
KERNEL_COUNT_CASES = {
    "one split": (dict(), 32, 1, ""),
    # a prompt of a few hundred tokens (a split takes at least 64 positions) and 16 attention blocks per SM,
    # so that the attention kernel merges up to 4 splits itself
    "many splits": (dict(), 32, 12, "attention_blocks_per_sm=16"),
    # groups of 128: 4 gate/up blocks per group of the down projection's input, a head of 128 = one group
    "group 128": (dict(num_attention_heads=2, num_key_value_heads=1, head_dim=128), 128, 1, ""),
}


@pytest.mark.parametrize("case", KERNEL_COUNT_CASES)
def test_a_decode_step_launches_seven_kernels_per_layer(emulated_build, tmp_path, case):
    """Every kernel boundary costs the GPU a few microseconds even inside a CUDA graph: on an H100, where a
    LLaMA-2-7B token's weights take about 1.2 ms to read, 550 kernels per token (17 per layer) would cost
    about as much again. Per layer a decode step runs: the residual add fused with RMSNorm, which also
    prepares its output for the q4 kernels; q, k and v in one launch; attention (the new keys and values
    stored, the splits merged and the output prepared for the o projection, in the same kernel); the o
    projection; RMSNorm; gate and up in one launch, which also prepares its output for the down projection;
    the down projection. Plus the embedding, the final norm and the LM head."""
    from awq_edge.quantize import QuantizeOptions, quantize_model
    from tiny_models import save_tiny_model
    overrides, group_size, repeats, tuning = KERNEL_COUNT_CASES[case]
    layers = 3
    model = tmp_path / "model.awqe"
    quantize_model(save_tiny_model("llama", tmp_path / "hf", num_hidden_layers=layers, max_position_embeddings=512,
                                   **overrides), model,
                   QuantizeOptions(method="rtn", group_size=group_size, lm_head="int8"))
    environment = {**os.environ, "AWQ_EDGE_CUDA_TUNING": tuning}
    prompt = "Count the kernels of a step." * repeats
    assert kernels_per_decode_step(emulated_build / "awq-edge-run", model, prompt, environment, tmp_path) == {
        "embed_dense": 1, "rms_norm": 2 * layers + 1, "gemv_q4": 3 * layers, "gemv_q4 (gated)": layers,
        "attention": layers, "dense_linear": 1}


def build_with_sanitizer(tmp_path_factory, name: str, flags: str) -> Path:
    """awq-edge-run, test_emulator and test_prepared_writers for the emulator, built with `flags`."""
    if shutil.which("cmake") is None:
        pytest.skip("needs cmake")
    build = tmp_path_factory.mktemp(f"build-cuda-emulator-{name}")
    configure = subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                                "-DAWQ_EDGE_CUDA=OFF", "-DAWQ_EDGE_CUDA_EMULATOR=ON", f"-DCMAKE_CXX_FLAGS={flags}"],
                               capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compile_ = subprocess.run(["cmake", "--build", str(build), "-j2", "--target", "awq-edge-run", "test_emulator",
                               "test_prepared_writers"], capture_output=True, text=True)
    assert compile_.returncode == 0, compile_.stdout[-5000:] + compile_.stderr[-5000:]
    return build


@pytest.fixture(scope="session")
def sanitized_build(tmp_path_factory):
    """Built with AddressSanitizer: device memory is malloc'd host memory of the exact size."""
    return build_with_sanitizer(tmp_path_factory, "asan", "-fsanitize=address -fno-omit-frame-pointer")


@pytest.fixture(scope="session")
def race_checked_build(tmp_path_factory):
    """Built with ThreadSanitizer: every emulated thread a TSan fiber (cuda/emulator/race_detection.h)."""
    return build_with_sanitizer(tmp_path_factory, "tsan", "-fsanitize=thread")


# a report stops the program with exit status 66 (both sanitizers' options, for either build)
SANITIZER = {**os.environ, "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1",
             "TSAN_OPTIONS": "halt_on_error=1:exitcode=66"}


def test_address_sanitizer_reports_a_kernel_reading_out_of_bounds(sanitized_build):
    run = subprocess.run([str(sanitized_build / "cuda" / "emulator" / "test_emulator"), "--read-out-of-bounds"],
                         capture_output=True, text=True, env=SANITIZER, timeout=300)
    assert run.returncode != 0 and "heap-buffer-overflow" in run.stderr and "copy_kernel" in run.stderr, \
        run.stdout + run.stderr[-3000:]


# name -> (kind, config overrides, quantize options): every weight scheme the kernels take (q4 and q3, group
# sizes 32/64/128, int8, fp16 and int4 LM heads, tied embeddings), and attention with 2 and 16 query heads per
# kv head and head dims of 1, 3 (a partial last one) and 8 elements per lane
IN_BOUNDS_MODELS = {
    "llama_q4_g32": ("llama", {}, dict(group_size=32, lm_head="int8")),
    "qwen2_q3_g64": ("qwen2", {}, dict(bits=3, group_size=64, lm_head="fp16")),
    "tied_q4_g128": ("llama_tied", {}, dict(group_size=128, lm_head="int4")),
    "group16": ("llama", dict(num_attention_heads=16, num_key_value_heads=1, head_dim=16), dict(group_size=64)),
    "head_dim80": ("llama", dict(num_attention_heads=2, num_key_value_heads=2, head_dim=80), dict(group_size=32)),
    "head_dim256": ("llama", dict(num_attention_heads=1, num_key_value_heads=1, head_dim=256), dict(group_size=32)),
}


@pytest.mark.parametrize("name", IN_BOUNDS_MODELS)
def test_kernels_stay_in_bounds(sanitized_build, tmp_path, name):
    """A 30-token prompt (prefill: the tensor-core kernels, split-K on 16 SMs and x-staged with 2 strips per
    block on 1, each accumulating in fp32 and in fp16: the tiny models' scales are small enough for it) and 12
    decode steps (the matrix-vector kernels, recorded and replayed as graphs) without an AddressSanitizer
    report."""
    kind, overrides, options = IN_BOUNDS_MODELS[name]
    path = save_sanitizer_model(tmp_path, kind, overrides, {"lm_head": "int8", **options})
    for sms, tuning in [("16", ""), ("1", "gemm_strips=2"), ("16", "gemm_fp16_accumulate=1"),
                        ("1", "gemm_strips=2,gemm_fp16_accumulate=1")]:
        run_without_report(sanitized_build, path, 12, sms, tuning, "AddressSanitizer")


def save_sanitizer_model(tmp_path, kind: str, overrides: dict, options: dict) -> Path:
    """A tiny model of `kind` with the config `overrides`, quantized with RTN and `options`."""
    from awq_edge.quantize import QuantizeOptions, quantize_model
    from tiny_models import save_tiny_model
    path = tmp_path / "model.awqe"
    quantize_model(save_tiny_model(kind, tmp_path / "hf", **overrides), path,
                   QuantizeOptions(**{"method": "rtn", **options}))
    return path


def run_without_report(build: Path, model: Path, steps: int, sms: str, tuning: str, sanitizer: str):
    """awq-edge-run of `build` on the emulated backend: a 30-token prompt (prefill) and `steps` decode steps, on
    `sms` SMs with AWQ_EDGE_CUDA_TUNING=`tuning`, must end normally without a report of `sanitizer`."""
    prompt = "The quick brown fox jumps over the lazy dog, and then some more words follow here."
    environment = {**SANITIZER, "AWQ_EDGE_CUDA_EMULATOR_SMS": sms, "AWQ_EDGE_CUDA_TUNING": tuning}
    run = subprocess.run([str(build / "awq-edge-run"), str(model), "-p", prompt, "-n", str(steps), "--ignore-eos",
                          "--backend", "cuda", "--stats"], capture_output=True, text=True, env=environment,
                         timeout=600)
    assert run.returncode == 0 and sanitizer not in run.stderr, run.stderr[-6000:]
    assert "CUDA emulator on the CPU" in run.stderr and f"generated {steps}" in run.stderr, run.stderr[-2000:]


# --race kind -> the kernel TSan must name: a missing __syncthreads between a shared-memory write and another
# thread's read; every thread of the block adding to one global int without an atomic; lanes of a warp that
# rely on a shuffle (which orders no memory) between a shared-memory write and a read
RACES = {"shared": "racy_neighbour_kernel", "global": "racy_counter_kernel", "shuffle": "shuffle_ordered_kernel"}


@pytest.mark.parametrize("kind", RACES)
def test_thread_sanitizer_reports_racing_threads_of_a_block(race_checked_build, kind):
    run = subprocess.run([str(race_checked_build / "cuda" / "emulator" / "test_emulator"), "--race", kind],
                         capture_output=True, text=True, env=SANITIZER, timeout=300)
    assert run.returncode == 66 and "WARNING: ThreadSanitizer: data race" in run.stderr, run.stdout + run.stderr[-3000:]
    assert RACES[kind] in run.stderr, run.stderr[-3000:]


# name -> (config overrides, quantize options, SMs, AWQ_EDGE_CUDA_TUNING): hidden 1024, so that the RMSNorm
# blocks have several warps, and heads whose dim the group size divides, so that attention writes the o
# projection's prepared operand (a barrier between the warps' rows and the groups they prepare). The first
# runs as an AGX Orin with its table entry; the second on one SM with every prefill on the x-staged kernel
# (8 strips per block, 3 warps), fp16 accumulation, 2 warps per decode strip and attention split many ways.
RACE_FREE_MODELS = {
    "q4_g64_head128": (dict(hidden_size=1024, intermediate_size=512, num_attention_heads=8, num_key_value_heads=2,
                            head_dim=128), dict(group_size=64, lm_head="int8"), "16", ""),
    "q3_g64_group16": (dict(hidden_size=1024, intermediate_size=512, num_attention_heads=16, num_key_value_heads=1,
                            head_dim=64), dict(bits=3, group_size=64, lm_head="fp16"), "1",
                       "gemm_strips=8,gemm_warps=3,gemm_fp16_accumulate=1,gemv_max_warps=2,attention_blocks_per_sm=64"),
}


@pytest.mark.parametrize("name", RACE_FREE_MODELS)
def test_kernels_are_free_of_races_within_a_block(race_checked_build, tmp_path, name):
    """A 30-token prompt (the tensor-core prefill kernels, the prefill attention) and 8 decode steps (the
    matrix-vector kernels, recorded and replayed as graphs) without a ThreadSanitizer report. Removing any
    one of the kernels' __syncthreads was checked to be reported here or by the prepared writers' test,
    except the one before last_block_to_finish's counter, which orders writes for other blocks."""
    overrides, options, sms, tuning = RACE_FREE_MODELS[name]
    path = save_sanitizer_model(tmp_path, "llama", overrides, options)
    run_without_report(race_checked_build, path, 8, sms, tuning, "ThreadSanitizer")
