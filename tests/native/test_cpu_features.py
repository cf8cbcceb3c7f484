"""The NEON backend's CPU feature detection (neon/cpu_features.cpp), built for and run on the host: the Linux
hwcap and macOS sysctl mappings (tests/native/test_cpu_features.cpp). The macOS path has no macOS machine to
run on here; this is where its mapping is checked."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CXX = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


@pytest.mark.skipif(CXX is None, reason="no host C++ compiler")
def test_feature_mapping(tmp_path):
    program = tmp_path / "test_cpu_features"
    subprocess.run([CXX, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'neon'}",
                    str(ROOT / "tests" / "native" / "test_cpu_features.cpp"), str(ROOT / "neon" / "cpu_features.cpp"),
                    "-o", str(program)], check=True)
    result = subprocess.run([str(program)], capture_output=True, text=True)
    assert result.returncode == 0 and "all checks passed" in result.stdout, result.stdout + result.stderr
