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
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from count_cuda_instructions import (K_DEPTH, LINE, WEIGHTS_PER_TILE, compiled_sass, decode_loop_cost,  # noqa: E402
                                     find_cuobjdump, main_loop)

NVCC, CUOBJDUMP = shutil.which("nvcc"), find_cuobjdump()
BUDGET = 3.2


@pytest.mark.skipif(NVCC is None or CUOBJDUMP is None, reason="needs nvcc and cuobjdump")
@pytest.mark.parametrize("arch", ["87", "90"])
def test_decode_loop_fits_the_issue_budget(arch):
    length = decode_loop_cost(arch, [1], NVCC, CUOBJDUMP)[1]
    per_weight = length / (K_DEPTH * WEIGHTS_PER_TILE)
    assert per_weight <= BUDGET, f"sm_{arch}: {per_weight:.2f} instructions per weight (budget {BUDGET})"


@pytest.mark.skipif(NVCC is None or CUOBJDUMP is None, reason="needs nvcc and cuobjdump")
@pytest.mark.parametrize("arch", ["87", "90"])
def test_lm_head_keeps_four_weight_loads_in_flight(arch):
    """cuda/dense_linear.cu (the f16 and int8 LM head): each trip of a lane's loop issues its 4 streaming 16-byte
    weight loads together (2 KB per warp in flight), which a fast GPU's bandwidth needs from the warps an SM
    holds; the kernel before it had one 8- or 16-byte load in flight per lane."""
    sass = compiled_sass("dense_linear.cu", arch, NVCC, CUOBJDUMP)
    functions = re.split(r"Function : (\S+)", sass)
    kernels = {name: body for name, body in zip(functions[1::2], functions[2::2]) if "dense_linear_kernel" in name}
    assert len(kernels) == 2, sorted(kernels)  # f16 and int8
    for name, body in kernels.items():
        loop = main_loop([(int(address, 16), text) for address, text in LINE.findall(body)])
        loads = [text for _, text in loop if "LDG.E.EF" in text]
        assert len(loads) == 4 and all(".128" in text for text in loads), f"sm_{arch} {name}: {loads}"
