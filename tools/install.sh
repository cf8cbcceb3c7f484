#!/usr/bin/env bash
# Installs awq_edge (with its C++ extension) and what its tests need, on a fresh Debian/Ubuntu machine
# with Python >= 3.10 and pip. Used by the README's first command and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# A C++17 compiler for the extension (present on most machines; apt-get only if missing).
if ! command -v c++ >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends g++
fi

# The NEON backend's tests (tests/native/) cross-compile for aarch64 and run under qemu's user-mode
# emulator: on x86-64 Linux with apt, install the cross compiler and qemu when they are missing.
if [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] && command -v apt-get >/dev/null 2>&1 &&
   ! { command -v aarch64-linux-gnu-g++ && command -v qemu-aarch64-static; } >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends g++-aarch64-linux-gnu qemu-user-static
fi

# A CUDA 12.4 compiler for tests/cuda/test_kernels_compile.py, which compiles the CUDA kernels with it
# and with the nvcc on PATH: on x86-64 Debian, about 120 MB of downloads once, into
# ~/.cache/awq_edge/cuda-12.4 (tools/install_cuda12.sh says what and from where).
# Optional for using awq_edge: a failure is reported and the install goes on (CI then fails that test).
if [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] && grep -qx 'ID=debian' /etc/os-release 2>/dev/null; then
  PYTHON="$PYTHON" bash tools/install_cuda12.sh ||
    echo "[install] warning: the CUDA 12.4 compiler for the compile check was not installed (see above)" >&2
fi

# PyTorch: keep an installed one; otherwise 2.13.0 (on machines with a local CPU wheel pip takes it,
# elsewhere PyPI's default build). Install your own build first to choose CPU/CUDA yourself.
if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
  "$PYTHON" -m pip install "torch==2.13.0"
fi

"$PYTHON" -m pip install ".[test]"
