"""tools/page_cache.py against what a read and posix_fadvise do to a file's pages (Linux)."""
import mmap
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from page_cache import cached_pages, drop_cached_pages  # noqa: E402

pytestmark = pytest.mark.skipif(os.uname().sysname != "Linux", reason="mincore's page cache report: Linux")


def test_a_read_file_is_cached_and_dropping_it_empties_the_cache(tmp_path):
    page = mmap.PAGESIZE
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(64 * page + 100))
    drop_cached_pages(path)
    assert cached_pages(path) == (0, 64)  # whole pages only: the 100-byte tail is not counted
    with open(path, "rb") as file:
        file.seek(8 * page)
        file.read(4 * page)
    cached, total = cached_pages(path, [(8 * page, 4 * page)])
    if cached < total:
        pytest.skip(f"this file system keeps {cached} of {total} read pages cached")
    assert cached_pages(path, [(8 * page - 1, 4 * page + 2)]) == (4, 4)  # pages wholly inside the range
    path.read_bytes()
    assert cached_pages(path) == (64, 64)
    drop_cached_pages(path)
    assert cached_pages(path) == (0, 64)
