"""Every CUDA kernel compiles for Jetson Orin (sm_87) and Hopper (sm_90) without register spills or
local-memory use (ptxas -warn-spills -warn-lmem-usage, warnings as errors): a spill in the decode
kernel's loop would cost memory traffic the kernel exists to avoid. Needs nvcc, not a GPU.

Twice: with the nvcc on PATH (CUDA 13 here) and with CUDA 12.4, for the 12.x the backend also
promises (JetPack 6 has 12.2 or 12.6). tools/install_cuda12.sh assembles that compiler and
tools/install.sh runs it on x86-64 Debian: there, under CI, the 12.4 case must run; elsewhere it is
skipped when the compiler is missing."""
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p.name for p in (ROOT / "cuda").glob("*.cu"))
# where tools/install_cuda12.sh puts it
CUDA12 = Path(os.environ.get("AWQ_EDGE_CUDA12")
              or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "awq_edge" / "cuda-12.4")
NVCC_12 = CUDA12 / "bin" / "nvcc"


def debian_x86_64():
    """tools/install.sh's condition for running tools/install_cuda12.sh."""
    try:
        debian = platform.freedesktop_os_release().get("ID") == "debian"
    except OSError:
        debian = False
    return debian and platform.machine() == "x86_64"


def compiler(name):
    """(nvcc, extra flags) for a compiler name, or pytest.skip when it is not installed."""
    if name == "PATH":
        nvcc = shutil.which("nvcc")
        if nvcc is None:
            pytest.skip("no nvcc on this machine")
        return nvcc, []
    if not NVCC_12.is_file():
        if os.environ.get("CI") and debian_x86_64():
            pytest.fail(f"no CUDA 12.4 nvcc at {NVCC_12}: tools/install.sh should have run tools/install_cuda12.sh")
        pytest.skip(f"no CUDA 12.4 nvcc at {NVCC_12} (bash tools/install_cuda12.sh)")
    # CUDA 12.4 refuses g++ newer than 13; its host-side checks do not matter to a compile check
    return str(NVCC_12), ["-allow-unsupported-compiler"]


@pytest.mark.parametrize("nvcc_name", ["PATH", "12.4"])
@pytest.mark.parametrize("arch", ["87", "90"])
@pytest.mark.parametrize("source", SOURCES)
def test_kernel_compiles_without_spills(tmp_path, source, arch, nvcc_name):
    nvcc, flags = compiler(nvcc_name)
    command = [nvcc, "-std=c++17", "-O3", f"-arch=sm_{arch}", f"-I{ROOT / 'cuda'}", f"-I{ROOT / 'cpp' / 'include'}",
               "-Xptxas=-warn-spills,-warn-lmem-usage", "--Werror", "all-warnings", *flags,
               "-c", str(ROOT / "cuda" / source), "-o", str(tmp_path / "kernel.o")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, f"{source} for sm_{arch} with nvcc {nvcc_name}:\n{result.stderr}"
