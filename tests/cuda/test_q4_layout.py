"""Host checks of the CUDA backend (no GPU needed, so they run in CI): the weight layout, the lane
arithmetic the kernels share with the host and the mma fragment placement (tests/cuda/test_q4_layout.cpp,
see its opening comment), the attention kernel's split / online-softmax / merge arithmetic
(test_attention_math.cpp), and the tuning table's parser and launch arithmetic (test_tuning.cpp),
compiled with the host C++ compiler and run."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CXX = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


def build_and_run(tmp_path, test_source: str, *sources: str) -> str:
    if CXX is None:
        pytest.skip("no host C++ compiler")
    program = tmp_path / Path(test_source).stem
    command = [CXX, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'cuda'}",
               f"-I{ROOT / 'cpp' / 'include'}", str(ROOT / test_source), *[str(ROOT / s) for s in sources],
               "-o", str(program), "-pthread"]
    subprocess.run(command, check=True)
    result = subprocess.run([str(program)], capture_output=True, text=True)
    sys.stdout.write(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_layout_packing_and_lane_arithmetic(tmp_path):
    out = build_and_run(tmp_path, "tests/cuda/test_q4_layout.cpp", "cuda/weight_packing.cpp", "cpp/src/schemes.cpp",
                        "cpp/src/json.cpp", "cpp/src/tensor.cpp")
    assert "all checks passed" in out


def test_tuning_table(tmp_path):
    out = build_and_run(tmp_path, "tests/cuda/test_tuning.cpp", "cuda/tuning.cpp")
    assert "all checks passed" in out


def test_attention_arithmetic(tmp_path):
    out = build_and_run(tmp_path, "tests/cuda/test_attention_math.cpp")
    assert "all checks passed" in out
