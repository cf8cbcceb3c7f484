"""Shared test configuration: hardware and real-model markers."""
import os

import pytest


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` need an NVIDIA GPU that this build's CUDA backend can use (cuda/), and skip
    cleanly without one, saying why."""
    from awq_edge._awq_edge import backends
    usable, reason = backends.available("cuda") if "cuda" in backends.compiled() else (False, "built without CUDA")
    skip_gpu = pytest.mark.skip(reason=f"needs an NVIDIA GPU: {reason}")
    for item in items:
        if "gpu" in item.keywords and not usable:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def smollm2_path():
    """The real SmolLM2-135M-Instruct GGUF (fetched once into the cache by the package's own code)."""
    from awq_edge.default_model import default_model_path
    try:
        return default_model_path(log=lambda message: None)
    except RuntimeError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"default model unavailable: {error}")


@pytest.fixture(scope="session")
def tiny_awqe(tmp_path_factory):
    """tiny_awqe(kind, **quantize_options) -> path of a tiny model of that kind (tests/tiny_models.py), quantized
    with RTN (group size 32, int8 LM head unless the options say otherwise); files are made once per session."""
    from awq_edge.quantize import QuantizeOptions, quantize_model
    from tiny_models import save_tiny_model

    made = {}

    def make(kind: str, **options):
        options = {"method": "rtn", "group_size": 32, "lm_head": "int8", **options}
        key = (kind, tuple(sorted(options.items())))
        if key not in made:
            directory = tmp_path_factory.mktemp(kind)
            source = save_tiny_model(kind, directory / "hf")
            made[key] = directory / "model.awqe"
            quantize_model(source, made[key], QuantizeOptions(**options))
        return made[key]

    return make
