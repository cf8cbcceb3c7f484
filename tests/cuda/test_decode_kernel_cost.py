"""The decode kernel's issue budget, without a GPU: SASS instructions per weight in the main loop of
gemv_q4_kernel<1> (tools/count_cuda_instructions.py) for sm_87 and sm_90.

Why a bound: decode is memory-bound only while the SMs can issue the unpacking as fast as the memory
delivers weights. The fastest memory behind the tuning table's GPUs is an H200's: 4.8 TB/s = 9.2e12
4-bit weights/s with g128 scales and zero points (0.523 bytes a weight), against about 29.6e12
lane-instructions/s (132 SMs x 128 lanes x 1.75 GHz): above 3.2 instructions per weight the kernel
would be ALU-bound there (an H100, 3.35 TB/s, allows 4.6; an AGX Orin twice that). Earlier versions of
the loop spent 5.3 (a 64-bit division per tile), 4.2 and 3.4 (addresses derived again per tile); this
catches such a regression in CI. Needs nvcc and cuobjdump (the nvidia-cuda-cuobjdump package of the
test extra)."""
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from count_cuda_instructions import K_DEPTH, WEIGHTS_PER_TILE, decode_loop_cost, find_cuobjdump  # noqa: E402

NVCC, CUOBJDUMP = shutil.which("nvcc"), find_cuobjdump()
BUDGET = 3.2


@pytest.mark.skipif(NVCC is None or CUOBJDUMP is None, reason="needs nvcc and cuobjdump")
@pytest.mark.parametrize("arch", ["87", "90"])
def test_decode_loop_fits_the_issue_budget(arch):
    length = decode_loop_cost(arch, [1], NVCC, CUOBJDUMP)[1]
    per_weight = length / (K_DEPTH * WEIGHTS_PER_TILE)
    assert per_weight <= BUDGET, f"sm_{arch}: {per_weight:.2f} instructions per weight (budget {BUDGET})"
