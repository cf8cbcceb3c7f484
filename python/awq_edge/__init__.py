"""awq_edge: AWQ 4-bit quantization of LLaMA-family models and an on-device runtime for them."""
__version__ = "0.1.0"
