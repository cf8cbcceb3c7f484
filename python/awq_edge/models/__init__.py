"""Model configurations awq_edge supports and how their Hugging Face checkpoints name tensors."""

from .config import SUPPORTED_ARCHITECTURES, ModelConfig, UnsupportedModelError, hf_tensor_names

__all__ = ["SUPPORTED_ARCHITECTURES", "ModelConfig", "UnsupportedModelError", "hf_tensor_names"]
