"""The GPU's free and total memory as the driver reports them (cuMemGetInfo, CUDA driver API through ctypes), in
the primary context of GPU 0: the one the CUDA backend and torch use. No torch: importing it would add hundreds of
MiB to the process that tools/bench_cuda.py's `load` part measures.

    gpu = GpuMemory()   # None where there is no NVIDIA driver or GPU (the CUDA emulator, a CPU machine)
    gpu.free()          # bytes free now; before and after a load: what the load took on the GPU
    gpu.total()

Holding the primary context from the start means its own few hundred MiB are taken before the first reading.
"""
import ctypes


class GpuMemory:
    def __new__(cls):
        try:
            driver = ctypes.CDLL("libcuda.so.1")
        except OSError:
            return None
        device, context = ctypes.c_int(), ctypes.c_void_p()
        if driver.cuInit(0) != 0 or driver.cuDeviceGet(ctypes.byref(device), 0) != 0:
            return None
        if driver.cuDevicePrimaryCtxRetain(ctypes.byref(context), device) != 0:
            return None
        self = super().__new__(cls)
        self._driver, self._context = driver, context
        return self

    def _info(self) -> tuple:
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        self._driver.cuCtxPushCurrent_v2(self._context)
        try:
            status = self._driver.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total))
        finally:
            self._driver.cuCtxPopCurrent_v2(ctypes.byref(ctypes.c_void_p()))
        if status != 0:
            raise RuntimeError(f"cuMemGetInfo failed with CUDA driver error {status}")
        return free.value, total.value

    def free(self) -> int:
        return self._info()[0]

    def total(self) -> int:
        return self._info()[1]
