"""The NEON backend's CPU feature detection (neon/cpu_features.cpp), built for and run on the host: the Linux
hwcap and macOS sysctl mappings (tests/native/test_cpu_features.cpp). The macOS path has no macOS machine to
run on here; this is where its mapping is checked."""
import subprocess

from host_programs import build_host_program


def test_feature_mapping(tmp_path):
    program = build_host_program(tmp_path / "test_cpu_features",
                                 ["tests/native/test_cpu_features.cpp", "neon/cpu_features.cpp"], ["neon"])
    result = subprocess.run([str(program)], capture_output=True, text=True)
    assert result.returncode == 0 and "all checks passed" in result.stdout, result.stdout + result.stderr
