"""MappedFile::prefetch (cpp/src/mapped_file.cpp): the loader asks the kernel to read a layer's weights
while it repacks the layer before (cpp/src/model.cpp). tests/cpp/test_mapped_file.cpp, compiled with the host
C++ compiler, maps a file and prefetches part of it; mincore (tools/page_cache.py) then shows that part in the
page cache, and nothing of it without the prefetch."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from page_cache import cached_pages, drop_cached_pages  # noqa: E402
from host_programs import build_host_program  # noqa: E402

MIB = 2**20

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore and posix_fadvise: Linux")


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    return build_host_program(tmp_path_factory.mktemp("mapped_file") / "test_mapped_file",
                              ["tests/cpp/test_mapped_file.cpp", "cpp/src/mapped_file.cpp"], ["cpp/include"])


def uncached_file(tmp_path) -> Path:
    path = tmp_path / "weights.bin"
    path.write_bytes(os.urandom(4 * MIB))
    os.sync()  # dirty pages cannot be dropped
    drop_cached_pages(path)
    if cached_pages(path)[0] != 0:
        pytest.skip(f"the file system of {tmp_path} keeps the file's pages cached (tmpfs?)")
    return path


def cached_after(path, offset, size, seconds=10.0):
    """The pages of [offset, offset + size) cached, once all are or `seconds` have passed (the reads run after
    the advice returns)."""
    deadline = time.monotonic() + seconds
    while True:
        cached, total = cached_pages(path, [(offset, size)])
        if cached == total or time.monotonic() > deadline:
            return cached, total
        time.sleep(0.05)


def test_prefetch_reads_the_range_into_the_page_cache(tmp_path, program):
    path = uncached_file(tmp_path)
    out = subprocess.run([str(program), str(path), str(MIB), str(2 * MIB)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr
    cached, total = cached_after(path, MIB, 2 * MIB)
    assert (cached, total) == (total, 2 * MIB // os.sysconf("SC_PAGE_SIZE"))


def test_without_prefetch_mapping_the_file_reads_nothing(tmp_path, program):
    path = uncached_file(tmp_path)
    out = subprocess.run([str(program), str(path), "0", "0"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr
    time.sleep(0.5)
    assert cached_pages(path, [(MIB, 2 * MIB)])[0] == 0
