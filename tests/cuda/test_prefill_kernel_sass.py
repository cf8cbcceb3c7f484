"""The prefill kernels' tensor-core instructions, without a GPU: each instantiation of gemm_q4_kernel and
gemm_q4_staged_kernel (cuda/gemm_q4.cu) compiled for sm_87 and sm_90 and disassembled. The fp32-accumulating
ones (template flag false) must issue HMMA.16816.F32 only, the fp16-accumulating ones (true, tuning
gemm_fp16_accumulate) HMMA.16816.F16 only: on GeForce Ampere and Ada only the latter run at the full
tensor-core rate, which is the variant's reason to exist; the emulator cannot tell them apart. Needs nvcc
and cuobjdump (the nvidia-cuda-cuobjdump package of the test extra)."""
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from count_cuda_instructions import compiled_sass, find_cuobjdump, tensor_core_instructions  # noqa: E402

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
