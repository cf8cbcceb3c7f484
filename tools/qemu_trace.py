"""What the NEON instruction counters (count_neon_instructions.py, count_neon_vector_op_instructions.py) share:
cross-building a program of the engine for aarch64, and running it under qemu with one log line per executed
instruction, streamed through a FIFO (the log of one call is gigabytes) to a callback."""
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLCHAIN = ROOT / "cmake" / "toolchains" / "aarch64-linux-gnu.cmake"


def cross_build(build_dir: Path, target: str) -> Path:
    """Builds `target` (a program of neon/CMakeLists.txt) for aarch64 in build_dir; returns its path."""
    if not (build_dir / "CMakeCache.txt").exists():
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build_dir), f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN}",
                        "-DCMAKE_BUILD_TYPE=Release"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(build_dir), "-j2", "--target", target], check=True,
                   stdout=subprocess.DEVNULL)
    return build_dir / "neon" / target


def trace(program: Path, arguments: list, cpu: str, on_lines, address_filter: str = "") -> None:
    """Runs `program arguments` under qemu-aarch64-static -cpu `cpu` -singlestep -d exec,nochain (restricted to
    `address_filter`, qemu's -dfilter syntax, when given) and hands every chunk of complete log lines (a list of
    bytes) to on_lines. Exits with qemu's error when the program fails."""
    with tempfile.TemporaryDirectory() as temp:
        fifo = Path(temp) / "exec.log"
        os.mkfifo(fifo)

        def read():
            with open(fifo, "rb") as log:
                rest = b""
                while chunk := log.read(1 << 22):
                    lines = (rest + chunk).split(b"\n")
                    rest = lines.pop()
                    on_lines(lines)

        reader = threading.Thread(target=read)
        reader.start()
        command = ["qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu", "-cpu", cpu, "-singlestep",
                   "-d", "exec,nochain"] + (["-dfilter", address_filter] if address_filter else [])
        run = subprocess.run(command + ["-D", str(fifo), str(program)] + [str(a) for a in arguments],
                             capture_output=True, text=True)
        reader.join()
        if run.returncode != 0:
            sys.exit(f"{program.name} failed under qemu: {run.stderr}")
