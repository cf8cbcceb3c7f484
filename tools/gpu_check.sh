#!/usr/bin/env bash
# The CUDA backend's checks and measurements on a machine with an NVIDIA GPU, in one command, for a
# short session on a lent GPU (the issue's evidence list, issue 4): builds the package for this GPU,
# runs the benchmarks, the GPU tests, compute-sanitizer (memcheck, racecheck) on a subset of the
# tests and the tuner. Every stage writes its log under $OUT (default ./gpu-results); the run goes on
# after a failed stage, and summary.txt, rewritten after every stage, says which failed.
#
#   OUT=results bash tools/gpu_check.sh [--budget SECONDS] [--quick] [--stages NAME,NAME...]
#
#   --budget   the whole run's time: no stage starts with less than a minute of it left, and a stage
#              that would run past it is stopped (TIMED OUT in the summary). The stages run in the
#              order of what the evidence needs most, so a short budget still gives the first ones:
#              build, kernel bandwidth, decode/prefill speed, a decode step's profile by kernel (and with
#              programmatic dependent launches), GPU tests, memcheck, racecheck, tuner, the x-staged
#              prefill kernel's tests, the tests with programmatic launches, loading memory, decode with
#              the embedding table uploaded (AWQ_EDGE_CUDA_EMBEDDING=gpu), kernel bandwidth and decode with the
#              weights in pinned host memory (AWQ_EDGE_CUDA_WEIGHTS=host), prefill with fp16 accumulation and
#              the tests with it, the staged sanitizer runs.
#              For a lent GPU with 15 minutes in all (start-up included), one call:
#                OUT=$OUT bash tools/gpu_check.sh --budget 500      (run's timeout_s 560)
#   --quick    no sanitizers, no tuner
#   --stages   only these stages (names as in the summary; a prefix selects several: "sanitizer",
#              "bench-cuda"), e.g. for a second call: --stages build,sanitizer-racecheck,tune-cuda
#              (the build directory build/{wheel_tag} makes a repeated build incremental)
#
# Needs torch and transformers (baselines, tests), nvcc, nvidia-smi; compute-sanitizer (on PATH, beside
# nvcc or in /usr/local/cuda/bin) if present. A selected stage that cannot run is in the summary as
# skipped, with the reason.
# No network: the SmolLM2 end-to-end test (it downloads its model) is not run here. The host-only
# checks (packing helpers, compile check, SASS instruction count) run in CI; stages pytest-host and
# count-instructions repeat them here, last.
set -u
cd "$(dirname "$0")/.."
out=${OUT:-gpu-results}
quick=""
stages=""
budget=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=--quick ;;
    --stages) stages=${2:?--stages needs a comma-separated list}; shift ;;
    --budget)
      budget=${2:?--budget needs a number of seconds}
      [[ $budget =~ ^[0-9]+$ ]] || { echo "gpu_check.sh: --budget '$budget' is not a whole number of seconds" >&2; exit 2; }
      shift ;;
    *) echo "gpu_check.sh: unknown argument '$1' (expected --budget SECONDS, --quick or --stages LIST)" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
summary=()
started=$SECONDS
minimum_stage_seconds=${GPU_CHECK_MINIMUM_STAGE_SECONDS:-60}  # the variable: for tests/cuda/test_gpu_check.py

selected() {  # selected NAME: whether --stages names NAME or a prefix of it (all stages without --stages)
  [ -z "$stages" ] && return 0
  local wanted
  for wanted in ${stages//,/ }; do
    [[ $1 == "$wanted"* ]] && return 0
  done
  return 1
}

stage() {  # stage NAME COMMAND...: runs COMMAND, output to $out/NAME.log, records the outcome
  local name=$1
  shift
  selected "$name" || return 0
  local limit=()
  if [ -n "$budget" ]; then
    local left=$((budget - (SECONDS - started)))
    [ "$left" -gt 0 ] || left=0
    if [ "$left" -lt "$minimum_stage_seconds" ]; then
      summary+=("skipped $name: ${left} s of the ${budget} s budget left")
      printf '%s\n' "${summary[@]}" > "$out/summary.txt"
      return 0
    fi
    limit=(timeout --kill-after=10 "$left")
  fi
  local start=$SECONDS status=0
  "${limit[@]}" "$@" > "$out/$name.log" 2>&1 || status=$?
  local took="($((SECONDS - start)) s)"
  if [ "$status" -eq 0 ]; then
    summary+=("ok      $name $took")
  elif [ ${#limit[@]} -gt 0 ] && { [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; }; then
    summary+=("TIMED OUT $name $took at the end of the ${budget} s budget: see $out/$name.log")
  else
    summary+=("FAILED  $name $took, exit status $status: see $out/$name.log")
  fi
  printf '%s\n' "${summary[@]}" > "$out/summary.txt"
}

sanitize() {  # sanitize TOOL [ENV=VALUE]: compute-sanitizer TOOL on a subset of the GPU tests
  # a subset: the sanitizers slow kernels down by 10-100x (prepared_operands and long_contexts: the
  # kernels whose last block to finish completes the work, after atomicAdd and __threadfence; the
  # attention block by the primitives, which the decoder does not use)
  local tool=$1
  shift
  env "$@" "$sanitizer" --tool "$tool" --error-exitcode 1 python3 -m pytest -q -m gpu \
    tests/cuda/test_cuda_backend.py tests/cpp/test_backend_operations.py -k "linear_matches_numpy and (q4_g128 or q8_row) and (33-256 or 1-128) or logits_match_transformers and (8-llama] or 128-qwen2) or replayed or prepared_operands or long_context or attention_block and mixed or fp16_accumulation_matches_numpy and q4_g64 and 576-576"
}
skipped() {  # skipped NAME REASON: records a selected stage that does not run, and why
  selected "$1" || return 0
  summary+=("skipped $1: $2")
  printf '%s\n' "${summary[@]}" > "$out/summary.txt"
}
# compute-sanitizer: on PATH, else beside nvcc, else in /usr/local/cuda/bin
sanitizer=$(command -v compute-sanitizer || true)
for candidate in "$(dirname "$(readlink -f "$(command -v nvcc || echo /nonexistent)")")/compute-sanitizer" \
                 /usr/local/cuda/bin/compute-sanitizer; do
  [ -z "$sanitizer" ] && [ -x "$candidate" ] && sanitizer=$candidate
done
sanitizers_missing=""
if [ "$quick" = "--quick" ]; then
  sanitizers_missing="--quick"
elif [ -z "$sanitizer" ]; then
  sanitizers_missing="compute-sanitizer is neither on PATH nor beside nvcc nor in /usr/local/cuda/bin"
fi
sanitizer_stage() {  # sanitizer_stage NAME TOOL [ENV=VALUE]
  local name=$1
  shift
  if [ -n "$sanitizers_missing" ]; then skipped "$name" "$sanitizers_missing"; else stage "$name" sanitize "$@"; fi
}
# the test shapes are too small for the x-staged prefill kernel on a big GPU: once more with it forced
staged="AWQ_EDGE_CUDA_TUNING=gemm_strips=4,gemm_staged_always=1"

stage machine bash -c 'date -u; nvidia-smi; nvcc --version; python3 -c "import torch; print(torch.__version__, torch.version.cuda)"'
stage build pip install --no-build-isolation --no-deps -v .
stage backend python3 -c "from awq_edge._awq_edge import backends; print(backends.compiled(), backends.available('cuda'))"
# the benchmarks first: the speed targets are what no emulator can check (the GPU tests pass on it), and a
# kernel that breaks on the GPU breaks them too
stage bench-cuda-linear python3 tools/bench_cuda.py --parts linear boundary
stage bench-cuda-decode python3 tools/bench_cuda.py --parts decode prefill
# where a decode step's GPU time goes, by kernel (torch.profiler attaching to recorded steps: its own process)
stage bench-cuda-profile python3 tools/bench_cuda.py --parts profile --contexts 128
# the same with programmatic dependent launches (Hopper; launch.h): whether they shorten the step's idle time
stage bench-cuda-profile-programmatic env AWQ_EDGE_CUDA_TUNING=programmatic_launch=1 python3 tools/bench_cuda.py \
  --parts profile --contexts 128
stage pytest-gpu python3 -m pytest -q -m gpu tests/cuda tests/cpp/test_backend_operations.py -rs --durations=15
sanitizer_stage sanitizer-memcheck memcheck
sanitizer_stage sanitizer-racecheck racecheck
if [ "$quick" != "--quick" ]; then
  stage tune-cuda python3 tools/tune_cuda.py
else
  skipped tune-cuda --quick
fi
stage pytest-gpu-staged env $staged python3 -m pytest -q -m gpu tests/cuda/test_cuda_backend.py \
  -k "matches_numpy or matches_transformers"
# every end-to-end test with programmatic dependent launches: a kernel touching memory before its wait races
stage pytest-gpu-programmatic env AWQ_EDGE_CUDA_TUNING=programmatic_launch=1 python3 -m pytest -q -m gpu \
  tests/cuda/test_cuda_backend.py -k "matches_transformers or replayed or long_context"
stage bench-cuda-load python3 tools/bench_cuda.py --parts load
# the untied embedding table uploaded instead of read from the file's mapping: what the default costs per step
stage bench-cuda-decode-embedding-gpu env AWQ_EDGE_CUDA_EMBEDDING=gpu python3 tools/bench_cuda.py --parts decode \
  --contexts 128
# the linear layers' weights in pinned host memory (AWQ_EDGE_CUDA_WEIGHTS=host): how fast the kernels read the
# CPU's memory, what using the file's mapping in place would get (a Jetson: the same DRAM; a discrete GPU: the bus)
stage bench-cuda-weights-host python3 tools/bench_cuda.py --weights host --parts linear decode --contexts 128 \
  --steps 16
# prefill with each group summed in fp16 (gemm_fp16_accumulate; the tuner times it on the layers too), and the
# linear and end-to-end tests with it (the GPU's fp16 rounding inside mma is not the emulator's)
stage bench-cuda-prefill-fp16-accumulate env AWQ_EDGE_CUDA_TUNING=gemm_fp16_accumulate=1 python3 tools/bench_cuda.py \
  --parts prefill
stage pytest-gpu-fp16-accumulate env AWQ_EDGE_CUDA_TUNING=gemm_fp16_accumulate=1 python3 -m pytest -q -m gpu \
  tests/cuda/test_cuda_backend.py -k "matches_numpy or matches_transformers"
sanitizer_stage sanitizer-memcheck-staged memcheck $staged
sanitizer_stage sanitizer-racecheck-staged racecheck $staged
stage pytest-host python3 -m pytest -q tests/cuda/test_q4_layout.py tests/cuda/test_kernels_compile.py
stage count-instructions python3 tools/count_cuda_instructions.py

if [ ${#summary[@]} -eq 0 ]; then
  echo "gpu_check.sh: no stage matched --stages '$stages'" | tee "$out/summary.txt" >&2
  exit 2
fi
cat "$out/summary.txt"
