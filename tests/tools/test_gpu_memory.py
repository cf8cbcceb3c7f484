"""tools/gpu_memory.py: the driver's free GPU memory, which tools/bench_cuda.py reads around a load. Without an
NVIDIA driver it is absent (None), not a made-up number; with a GPU an allocation shows in it."""
import ctypes
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from gpu_memory import GpuMemory  # noqa: E402


def driver_present() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


@pytest.mark.skipif(driver_present(), reason="this machine has an NVIDIA driver")
def test_without_a_driver_there_is_no_reading():
    assert GpuMemory() is None


@pytest.mark.gpu
def test_an_allocation_shows_in_the_free_memory():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU")
    gpu = GpuMemory()
    assert gpu is not None
    torch.cuda.init()
    before = gpu.free()
    assert 0 < before <= gpu.total()
    block = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    assert before - gpu.free() >= 256 << 20
    del block
