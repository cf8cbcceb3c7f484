"""The CPU backend's thread pool (cpp/backends/cpu/thread_pool.cpp) through tests/cpp/backends/cpu/test_thread_pool.cpp:
every run covers [0, n) exactly once and returns when it is done, on 1, 2, 3 and 8 threads, through runs of
alternating sizes back to back; built plainly (8 threads on a 2-core machine make workers late for a run) and
with ThreadSanitizer, which reports any access the pool's protocol leaves unordered. The pool before commit
"thread pool: close the previous job" ran a chunk twice or hung here within 20000 rounds, and its ThreadSanitizer
build reported its race on the first rounds."""
import os
import subprocess

import pytest

from host_programs import build_host_program

SOURCES = ["tests/cpp/backends/cpu/test_thread_pool.cpp", "cpp/backends/cpu/thread_pool.cpp"]


@pytest.mark.parametrize("sanitizer, rounds", [(None, 5000), ("thread", 500)])
def test_every_run_covers_its_range_once(tmp_path, sanitizer, rounds):
    flags = [f"-fsanitize={sanitizer}"] if sanitizer else []
    program = build_host_program(tmp_path / "test_thread_pool", SOURCES, ["cpp/backends/cpu"], flags)
    run = subprocess.run([str(program), str(rounds)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TSAN_OPTIONS": "halt_on_error=1:exitcode=66"})
    print(run.stdout)
    assert run.returncode == 0 and "all checks passed" in run.stdout, run.stdout + run.stderr[-5000:]
