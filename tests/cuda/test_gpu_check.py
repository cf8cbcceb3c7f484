"""tools/gpu_check.sh's stage selection (the stages themselves need a GPU): --stages runs the named stages
and those a prefix names, nothing else, and a list that names no stage is an error, not an empty success."""
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
