"""Shared test configuration: hardware and real-model markers."""
import os

import pytest


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` need an NVIDIA GPU and skip cleanly without one."""
    has_gpu = False
    try:
        import torch
        has_gpu = torch.cuda.is_available()
    except ImportError:
        pass
    skip_gpu = pytest.mark.skip(reason="needs an NVIDIA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
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
