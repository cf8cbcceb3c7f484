"""AWQ and round-to-nearest quantization of a checkpoint into an .awqe file."""
from .pipeline import QuantizeError, QuantizeOptions, QuantizeReport, quantize_model, resolve_group_size

__all__ = ["QuantizeError", "QuantizeOptions", "QuantizeReport", "quantize_model", "resolve_group_size"]
