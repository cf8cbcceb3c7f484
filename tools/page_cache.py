"""Which pages of a file the kernel holds in its page cache (Linux): for checking that loading a model onto a GPU
that shares DRAM with the CPU (Jetson) does not leave a second copy of the weights behind.

    cached_pages(path, ranges=None) -> (cached, total)   pages wholly inside the byte ranges [(offset, size), ...]
                                                          (default: the whole file) and how many are cached
    drop_cached_pages(path)                               asks the kernel to drop the file's clean, unmapped pages

Used by tools/bench_cuda.py (its `load` part) and tests/cuda/test_cuda_backend.py.
"""
import ctypes
import mmap
import os

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


def cached_pages(path, ranges=None) -> tuple:
    """mincore(2) on a fresh mapping of the file, which touches none of its pages."""
    size, page = os.path.getsize(path), mmap.PAGESIZE
    if ranges is None:
        ranges = [(0, size)]
    fd = os.open(path, os.O_RDONLY)
    try:
        address = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, _MAP_FAILED):
            raise OSError(ctypes.get_errno(), f"mmap of '{path}' failed")
        try:
            flags = (ctypes.c_ubyte * ((size + page - 1) // page))()
            if _libc.mincore(address, size, flags) != 0:
                raise OSError(ctypes.get_errno(), f"mincore on '{path}' failed")
        finally:
            _libc.munmap(address, size)
    finally:
        os.close(fd)
    pages = [p for offset, length in ranges for p in range(-(-offset // page), (offset + length) // page)]
    return sum(flags[p] & 1 for p in pages), len(pages)


def drop_cached_pages(path):
    """Writes the file back, then drops its cached pages that no process maps (posix_fadvise DONTNEED)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
