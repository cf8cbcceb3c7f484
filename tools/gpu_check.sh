#!/usr/bin/env bash
# The CUDA backend's checks and measurements on a machine with an NVIDIA GPU, in one command, for a
# short session on a lent GPU (the issue's evidence list, issue 4): builds the package for this GPU,
# runs the GPU tests, compute-sanitizer (memcheck, racecheck) on a subset of them, the benchmarks and
# the tuner. Every stage writes its log under $OUT (default ./gpu-results) and the run goes on after
# a failed stage; the summary at the end says which failed.
#
#   OUT=results bash tools/gpu_check.sh [--quick] [--stages NAME,NAME...]
#
#   --quick    no sanitizers, no tuner
#   --stages   only these stages (names as in the summary; a prefix selects several: "sanitizer"),
#              for a lent GPU whose calls are limited to 10 minutes each, for example
#                1. --stages machine,build,backend,pytest-host,pytest-gpu,count-instructions
#                2. --stages build,bench-cuda          (the build is incremental: build/{wheel_tag})
#                3. --stages build,sanitizer-memcheck (with the staged run), later sanitizer-racecheck
#                4. --stages build,tune-cuda,pytest-gpu-staged
#
# Needs torch and transformers (baselines, tests), nvcc, nvidia-smi; compute-sanitizer if present.
# No network: the SmolLM2 end-to-end test (it downloads its model) is not run here.
set -u
cd "$(dirname "$0")/.."
out=${OUT:-gpu-results}
quick=""
stages=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=--quick ;;
    --stages) stages=${2:?--stages needs a comma-separated list}; shift ;;
    *) echo "gpu_check.sh: unknown argument '$1' (expected --quick or --stages LIST)" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
summary=()

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
  local start=$SECONDS
  if "$@" > "$out/$name.log" 2>&1; then
    summary+=("ok      $name ($((SECONDS - start)) s)")
  else
    summary+=("FAILED  $name ($((SECONDS - start)) s): see $out/$name.log")
  fi
}

stage machine bash -c 'date -u; nvidia-smi; nvcc --version; python3 -c "import torch; print(torch.__version__, torch.version.cuda)"'
stage build pip install --no-build-isolation --no-deps -v .
stage backend python3 -c "from awq_edge._awq_edge import backends; print(backends.compiled(), backends.available('cuda'))"
stage pytest-host python3 -m pytest -q tests/cuda/test_q4_layout.py tests/cuda/test_kernels_compile.py
stage pytest-gpu python3 -m pytest -q -m gpu tests/cuda tests/cpp/test_backend_operations.py -rs
# the test shapes are too small for the x-staged prefill kernel on a big GPU: once more with it forced
staged="gemm_strips=4,gemm_staged_always=1"
stage pytest-gpu-staged env AWQ_EDGE_CUDA_TUNING=$staged python3 -m pytest -q -m gpu tests/cuda/test_cuda_backend.py \
  -k "matches_numpy or matches_transformers"
stage count-instructions python3 tools/count_cuda_instructions.py
if [ "$quick" != "--quick" ] && command -v compute-sanitizer > /dev/null; then
  # a subset: the sanitizers slow kernels down by 10-100x (prepared_operands and long_contexts: the
  # kernels whose last block to finish completes the work, after atomicAdd and __threadfence; the
  # attention block by the primitives, which the decoder does not use)
  subset=(-q -m gpu tests/cuda/test_cuda_backend.py tests/cpp/test_backend_operations.py -k "linear_matches_numpy and (q4_g128 or q8_row) and (33-256 or 1-128) or logits_match_transformers and (8-llama] or 128-qwen2) or replayed or prepared_operands or long_context or attention_block and mixed")
  stage sanitizer-memcheck compute-sanitizer --tool memcheck --error-exitcode 1 python3 -m pytest "${subset[@]}"
  stage sanitizer-racecheck compute-sanitizer --tool racecheck --error-exitcode 1 python3 -m pytest "${subset[@]}"
  stage sanitizer-memcheck-staged env AWQ_EDGE_CUDA_TUNING=$staged \
    compute-sanitizer --tool memcheck --error-exitcode 1 python3 -m pytest "${subset[@]}"
  stage sanitizer-racecheck-staged env AWQ_EDGE_CUDA_TUNING=$staged \
    compute-sanitizer --tool racecheck --error-exitcode 1 python3 -m pytest "${subset[@]}"
fi
stage bench-cuda python3 tools/bench_cuda.py
if [ "$quick" != "--quick" ]; then
  stage tune-cuda python3 tools/tune_cuda.py
fi

if [ ${#summary[@]} -eq 0 ]; then
  echo "gpu_check.sh: no stage matched --stages '$stages'" | tee "$out/summary.txt" >&2
  exit 2
fi
printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
