"""The C++ interface: `cmake --install` of the engine gives a CMake package that a separate project
(examples/cpp) builds against with find_package(awq_edge), and the installed native CLI awq-edge-run works."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("c++") is None,
                                reason="needs cmake and a C++ compiler")


def run(*command, **kwargs):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The engine built without Python and installed into a prefix."""
    work = tmp_path_factory.mktemp("cmake_package")
    prefix = work / "prefix"
    jobs = str(os.cpu_count() or 2)
    run("cmake", "-S", ROOT, "-B", work / "build", "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_INSTALL_PREFIX={prefix}",
        f"-DPython_EXECUTABLE={sys.executable}")
    run("cmake", "--build", work / "build", "--parallel", jobs)
    run("cmake", "--install", work / "build")
    return work, prefix


def test_example_builds_against_the_installed_package_and_runs(installed, tiny_awqe):
    work, prefix = installed
    assert (prefix / "include" / "awq_edge" / "generator.h").is_file()
    assert list((prefix / "lib").glob("**/awq_edgeConfig.cmake")) or list(prefix.glob("lib*/cmake/awq_edge"))
    run("cmake", "-S", ROOT / "examples" / "cpp", "-B", work / "example", f"-DCMAKE_PREFIX_PATH={prefix}")
    run("cmake", "--build", work / "example")
    model = tiny_awqe("llama")
    result = run(work / "example" / "complete", model, "The quick brown fox", "8")
    assert "8 tokens, finish: length" in result.stderr or "finish: stop" in result.stderr


def test_installed_native_cli_matches_python_generator(installed, tiny_awqe):
    from awq_edge.generator import Generator

    _, prefix = installed
    model = tiny_awqe("llama")
    result = run(prefix / "bin" / "awq-edge-run", model, "-p", "The quick brown fox", "-n", "12", "--ignore-eos",
                 "--stats")
    expected = Generator(model).generate("The quick brown fox", max_new_tokens=12, ignore_eos=True)
    assert result.stdout == expected + "\n"
    assert "finish: length" in result.stderr


def test_native_cli_reports_bad_input(installed, tmp_path):
    _, prefix = installed
    result = subprocess.run([prefix / "bin" / "awq-edge-run", tmp_path / "missing.awqe", "-p", "hi"],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "missing.awqe" in result.stderr
    result = subprocess.run([prefix / "bin" / "awq-edge-run", "model.awqe"], capture_output=True, text=True)
    assert result.returncode == 2 and "no prompt given" in result.stderr
