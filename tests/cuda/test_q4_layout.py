"""Host checks of the CUDA backend (no GPU needed, so they run in CI): the weight layout, the lane
arithmetic the kernels share with the host and the mma fragment placement (tests/cuda/test_q4_layout.cpp,
see its opening comment), the attention kernel's split / online-softmax / merge arithmetic
(test_attention_math.cpp), and the tuning table's parser and launch arithmetic (test_tuning.cpp),
compiled with the host C++ compiler and run."""
import subprocess
import sys
from pathlib import Path

from host_programs import build_host_program


def build_and_run(tmp_path, test_source: str, *sources: str) -> str:
    program = build_host_program(tmp_path / Path(test_source).stem, [test_source, *sources], ["cuda", "cpp/include"])
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
