#!/usr/bin/env bash
# Installs what tools/bench_generate.py needs besides awq_edge: llama-cpp-python, the llama.cpp
# baseline. PyPI has it as a source distribution only, so pip compiles llama.cpp with CMake here
# (10-20 minutes on 2 cores).
#
# -DGGML_NATIVE=ON builds for this machine's CPU (-march=native: its AVX2 / AVX-512 / VNNI), as a
# local llama.cpp build would, so the baseline is llama.cpp at its best on this CPU rather than a
# generic x86-64 build. AMX is left out (-mno-amx-*): on our machines the CPU reports AMX but
# ggml's AMX matmul dies with a general protection fault at its first ldtilecfg; LLAMA_CPP_AMX=1
# keeps it where AMX works.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ "${LLAMA_CPP_AMX:-0}" != 1 ]; then
  export CFLAGS="${CFLAGS:-} -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  export CXXFLAGS="${CXXFLAGS:-} -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
fi
# One compile job at a time and a lower priority, for a shared machine; set CMAKE_BUILD_PARALLEL_LEVEL
# for a faster build. --no-cache-dir: a wheel built earlier with other flags is not reused.
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-1}
CMAKE_ARGS="-DGGML_NATIVE=ON ${CMAKE_ARGS:-}" nice -n 10 "$PYTHON" -m pip install --no-cache-dir "llama-cpp-python>=0.3"
