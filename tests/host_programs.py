"""Test programs of plain C++ parts (the CUDA backend's packing and lane arithmetic, the NEON backend's CPU
feature mapping, MappedFile), built with the host C++ compiler without CMake, so that CI runs them anywhere."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CXX = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


def build_host_program(output: Path, sources, include_dirs, flags=()) -> Path:
    """Compiles `sources` (paths from the repository root) into `output`, warnings as errors, with the extra
    compiler `flags` (a sanitizer); skips the calling test when the machine has no C++ compiler."""
    if CXX is None:
        pytest.skip("no host C++ compiler")
    subprocess.run([CXX, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", *flags,
                    *[f"-I{ROOT / d}" for d in include_dirs], *[str(ROOT / s) for s in sources], "-o", str(output),
                    "-pthread"], check=True)
    return output
