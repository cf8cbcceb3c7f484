"""awq_edge: AWQ 4-bit quantization of LLaMA-family models and an on-device runtime for them.

    import awq_edge
    with awq_edge.Generator("model.awqe") as g:
        print(g.generate("The capital of France is", max_new_tokens=16))

The engine (Generator, ModelFile) is the compiled extension; it is imported on first use, so the quantizer
(awq_edge.quantize) also works where the extension is not built.
"""
__version__ = "0.1.0"

_ENGINE = {"Generator": "generator", "GenerationResult": "generator", "ModelFile": "model_file",
           "ModelFileError": "model_file"}

__all__ = [*_ENGINE, "__version__"]


def __getattr__(name: str):
    if name in _ENGINE:
        import importlib
        return getattr(importlib.import_module(f".{_ENGINE[name]}", __name__), name)
    raise AttributeError(f"module 'awq_edge' has no attribute '{name}'")
