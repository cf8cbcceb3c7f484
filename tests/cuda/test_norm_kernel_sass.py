"""The RMSNorm kernels' loads, without a GPU: where the global loads of cuda/rms_norm.cu sit in its SASS
(tools/count_cuda_instructions.py --norm) for sm_87 and sm_90.

Why: a decode step runs two norms per layer, each one row per token of a few thousand floats that the
previous kernel left in L2, so a norm's time is the number of loads that wait one after another, not its
bytes. The kernel that keeps the row in registers issues all of them before its first barrier (one wait
for x and delta, the weight's in flight during the block's reduction); the loop kernel, which rows of
other shapes take, waits once per trip of its loops (for a 4096-column row at 256 threads: 16 trips per
pass, two passes, plus one per prepared group a warp handles). A load that slips into a loop would
bring those waits back; this catches it in CI. Needs nvcc and cuobjdump (the test extra's
nvidia-cuda-cuobjdump package)."""
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from count_cuda_instructions import compiled_sass, find_cuobjdump, norm_kernels  # noqa: E402

NVCC, CUOBJDUMP = shutil.which("nvcc"), find_cuobjdump()


@pytest.mark.skipif(NVCC is None or CUOBJDUMP is None, reason="needs nvcc and cuobjdump")
@pytest.mark.parametrize("arch", ["87", "90"])
def test_norm_kernels_issue_every_load_before_waiting(arch):
    kernels = norm_kernels(compiled_sass("rms_norm.cu", arch, NVCC, CUOBJDUMP))
    registers = {label: p for label, p in kernels.items() if label.startswith("registers")}
    assert sorted(registers) == [f"registers, {n} float4 per thread" for n in (1, 2, 4)], sorted(kernels)
    for label, placement in registers.items():
        slots = int(label.split(", ")[1].split()[0])
        assert placement["in_loops"] == 0, f"sm_{arch} {label}: {placement}"
        # x, delta and weight of every slot, issued before the block's barrier
        assert placement["before_barrier"] == placement["loads"] >= 3 * slots, f"sm_{arch} {label}: {placement}"
    # the measure tells the two kinds apart: the loop kernel's loads wait once per trip
    assert kernels["loop"]["in_loops"] > 0, kernels["loop"]
