"""tools/gpu_check.sh's stage selection and time budget (the stages themselves need a GPU): --stages runs the
named stages and those a prefix names, nothing else, and a list that names no stage is an error, not an empty
success; --budget stops the stage that runs past it and skips the ones after, saying so in the summary."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run(tmp_path, *arguments):
    return subprocess.run(["bash", str(SCRIPT), *arguments], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OUT": str(tmp_path)})


def test_stages_runs_only_the_named_stages(tmp_path):
    result = run(tmp_path, "--stages", "backen")  # a prefix of "backend"
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "summary.txt").read_text().splitlines()[0].split()[:2] == ["ok", "backend"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backend.log", "summary.txt"]
    assert "cpu" in (tmp_path / "backend.log").read_text()


def test_a_list_that_names_no_stage_is_an_error(tmp_path):
    result = run(tmp_path, "--stages", "benchmark-everything")
    assert result.returncode == 2 and "no stage matched --stages 'benchmark-everything'" in result.stderr


def test_an_unknown_argument_is_an_error(tmp_path):
    result = run(tmp_path, "--fast")
    assert result.returncode == 2 and "unknown argument '--fast'" in result.stderr
    assert not (tmp_path / "summary.txt").exists()


def test_a_stage_that_would_outrun_the_budget_is_stopped_and_later_stages_are_skipped(tmp_path):
    # pytest-gpu imports torch and collects the whole GPU suite (over 10 s here) before skipping it: a 2 s
    # budget stops it; pytest-gpu-staged, pytest-gpu-programmatic and pytest-gpu-fp16-accumulate then find less
    # than the minimum left and do not start
    result = subprocess.run(["bash", str(SCRIPT), "--budget", "2", "--stages", "pytest-gpu"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OUT": str(tmp_path), "GPU_CHECK_MINIMUM_STAGE_SECONDS": "1"})
    assert result.returncode == 0, result.stderr
    first, *later = (tmp_path / "summary.txt").read_text().splitlines()
    assert first.startswith("TIMED OUT pytest-gpu (") and "at the end of the 2 s budget" in first
    assert [line.split(":")[0] for line in later] == ["skipped pytest-gpu-staged", "skipped pytest-gpu-programmatic",
                                                      "skipped pytest-gpu-fp16-accumulate"]
    assert all(line.endswith(" s of the 2 s budget left") for line in later), later
    assert (tmp_path / "pytest-gpu.log").exists() and not (tmp_path / "pytest-gpu-staged.log").exists()


def test_a_spent_budget_skips_every_stage_and_says_why(tmp_path):
    result = run(tmp_path, "--budget", "0", "--stages", "backend,machine")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "summary.txt").read_text().splitlines() == [
        "skipped machine: 0 s of the 0 s budget left", "skipped backend: 0 s of the 0 s budget left"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.txt"]


def test_a_budget_that_is_not_a_number_is_an_error(tmp_path):
    result = run(tmp_path, "--budget", "10m")
    assert result.returncode == 2 and "--budget '10m' is not a whole number of seconds" in result.stderr


def test_quick_skips_the_sanitizers_and_the_tuner_and_says_so(tmp_path):
    result = run(tmp_path, "--quick", "--stages", "sanitizer-racecheck,tune")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "summary.txt").read_text().splitlines() == [
        "skipped sanitizer-racecheck: --quick", "skipped tune-cuda: --quick", "skipped sanitizer-racecheck-staged: --quick"]


def test_the_sanitizer_beside_nvcc_runs_the_test_subset(tmp_path):
    """A toolkit whose bin/ is not on PATH, only a link to its nvcc: compute-sanitizer is found beside the nvcc the
    link points to (a stand-in that records its arguments)."""
    toolkit, on_path, out = tmp_path / "cuda" / "bin", tmp_path / "path", tmp_path / "out"
    toolkit.mkdir(parents=True)
    on_path.mkdir()
    (toolkit / "nvcc").write_text("#!/bin/sh\nexit 0\n")
    (toolkit / "compute-sanitizer").write_text('#!/bin/sh\necho "sanitizer called with: $*"\n')
    for tool in ("nvcc", "compute-sanitizer"):
        (toolkit / tool).chmod(0o755)
    (on_path / "nvcc").symlink_to(toolkit / "nvcc")
    path = os.pathsep.join([str(on_path)] + [p for p in os.environ["PATH"].split(os.pathsep)
                                             if not (Path(p) / "compute-sanitizer").exists()])
    result = subprocess.run(["bash", str(SCRIPT), "--stages", "sanitizer-memcheck-staged"], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "OUT": str(out), "PATH": path})
    assert result.returncode == 0, result.stderr
    assert (out / "summary.txt").read_text().startswith("ok      sanitizer-memcheck-staged (")
    log = (out / "sanitizer-memcheck-staged.log").read_text()
    assert log.startswith("sanitizer called with: --tool memcheck --error-exitcode 1 python3 -m pytest -q -m gpu "), log
    assert "long_context" in log
