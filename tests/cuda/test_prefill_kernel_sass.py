"""The prefill kernels' tensor-core instructions, without a GPU: each instantiation of gemm_q4_kernel and
gemm_q4_staged_kernel (cuda/gemm_q4.cu) compiled for sm_87 and sm_90 and disassembled.

1. The fp32-accumulating ones (template flag false) must issue HMMA.16816.F32 only, the fp16-accumulating
   ones (true, tuning gemm_fp16_accumulate) HMMA.16816.F16 only: on GeForce Ampere and Ada only the latter
   run at the full tensor-core rate, which is the variant's reason to exist; the emulator cannot tell them
   apart.
2. Their main loops' issue budget (tools/count_cuda_instructions.py --prefill): every instruction beside
   the 32 HMMA of a trip takes an issue slot the tensor cores wait for. The fp32 loops spent 9.6 to 15
   instructions per HMMA before W became the A operand (register moves, per-load address arithmetic and
   bound checks) and 4.5 to 6.5 since; the fp16 ones, whose loops include the once-per-group fold, 21 to
   26 and 12.8 to 15.4. The bounds catch a return of that overhead.

Needs nvcc and cuobjdump (the nvidia-cuda-cuobjdump package of the test extra)."""
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from count_cuda_instructions import (compiled_sass, find_cuobjdump, prefill_kernel_label,  # noqa: E402
                                     prefill_loop_costs, tensor_core_instructions)

NVCC, CUOBJDUMP = shutil.which("nvcc"), find_cuobjdump()


@pytest.mark.skipif(NVCC is None or CUOBJDUMP is None, reason="needs nvcc and cuobjdump")
@pytest.mark.parametrize("arch", ["87", "90"])
def test_each_prefill_kernel_accumulates_in_the_precision_it_is_named_for(arch):
    sass = compiled_sass("gemm_q4.cu", arch, NVCC, CUOBJDUMP)
    kernels = {name: kinds for name, kinds in tensor_core_instructions(sass).items() if "gemm_q4" in name}
    # gemm_q4_kernel<bool> and gemm_q4_staged_kernel<S, bool> for S = 2, 4, 8: the bool is the last
    # template argument, mangled Lb0E / Lb1E
    assert len(kernels) == 8, sorted(kernels)
    for name, kinds in kernels.items():
        fp16 = re.search(r"Lb([01])EE", name)[1] == "1"
        assert kinds == {"HMMA.16816.F16" if fp16 else "HMMA.16816.F32"}, f"sm_{arch} {name}: {kinds}"


INSTRUCTIONS_PER_HMMA = {"fp32": 7.0, "fp16": 16.5}


@pytest.mark.skipif(NVCC is None or CUOBJDUMP is None, reason="needs nvcc and cuobjdump")
@pytest.mark.parametrize("arch", ["87", "90"])
def test_each_prefill_loop_fits_the_issue_budget(arch):
    costs = prefill_loop_costs(compiled_sass("gemm_q4.cu", arch, NVCC, CUOBJDUMP))
    assert len(costs) == 8, sorted(costs)
    for name, (length, hmma) in costs.items():
        label = prefill_kernel_label(name)
        assert hmma == 32, f"sm_{arch} {label}: {hmma} HMMA in the main loop, expected one block's 32"
        budget = INSTRUCTIONS_PER_HMMA[label[-4:]]
        assert length / hmma <= budget, f"sm_{arch} {label}: {length / hmma:.2f} instructions per HMMA (budget {budget})"
