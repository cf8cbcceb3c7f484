"""Every CUDA kernel compiles for Jetson Orin (sm_87) and Hopper (sm_90) without register spills or
local-memory use (ptxas -warn-spills -warn-lmem-usage, warnings as errors): a spill in the decode
kernel's loop would cost memory traffic the kernel exists to avoid. Needs nvcc, not a GPU."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NVCC = shutil.which("nvcc")
SOURCES = sorted(p.name for p in (ROOT / "cuda").glob("*.cu"))


@pytest.mark.skipif(NVCC is None, reason="no nvcc on this machine")
@pytest.mark.parametrize("arch", ["87", "90"])
@pytest.mark.parametrize("source", SOURCES)
def test_kernel_compiles_without_spills(tmp_path, source, arch):
    command = [NVCC, "-std=c++17", "-O3", f"-arch=sm_{arch}", f"-I{ROOT / 'cuda'}", f"-I{ROOT / 'cpp' / 'include'}",
               "-Xptxas=-warn-spills,-warn-lmem-usage", "--Werror", "all-warnings",
               "-c", str(ROOT / "cuda" / source), "-o", str(tmp_path / "kernel.o")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, f"{source} for sm_{arch}:\n{result.stderr}"
