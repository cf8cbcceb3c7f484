"""The .awqe flat weight format: writer, numpy reader and reference dequantizer (docs/FORMAT.md)."""
from .format import FormatError
from .packing import pack_bits, unpack_bits
from .reader import AwqeFile, TensorInfo
from .schemes import Scheme, dequantize_module, expected_tensors, parse_scheme
from .writer import AwqeWriter

__all__ = ["AwqeFile", "AwqeWriter", "FormatError", "Scheme", "TensorInfo", "dequantize_module",
           "expected_tensors", "pack_bits", "parse_scheme", "unpack_bits"]
