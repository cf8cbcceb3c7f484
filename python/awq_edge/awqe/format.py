"""Constants of the .awqe format (docs/FORMAT.md, sections 2 and 4)."""
import struct

import numpy as np

MAGIC = b"AWQEDGE\0"
VERSION_MAJOR = 1
VERSION_MINOR = 0
BYTE_ORDER_MARK = 0x0A0B0C0D

HEADER_SIZE = 128
ENTRY_SIZE = 80
METADATA_OFFSET = HEADER_SIZE
DIRECTORY_ALIGNMENT = 8
DATA_ALIGNMENT = 16384  # page boundary for 4 KiB and 16 KiB pages
TENSOR_ALIGNMENT = 64   # cache line, widest vector load, >= 16 B for CUDA 128-bit loads
MAX_NAME_LENGTH = 1024
MAX_NDIM = 4

# Header fields after the magic, in order (offset 8..88), then reserved bytes and the header CRC.
HEADER_STRUCT = struct.Struct("<8sHHIQQQQQQQIIII36sI")
HEADER_FIELDS = (
    "magic", "version_major", "version_minor", "byte_order", "file_size",
    "metadata_offset", "metadata_size", "directory_offset", "directory_size",
    "data_offset", "data_size", "tensor_count", "tensor_alignment",
    "metadata_crc32", "directory_crc32", "reserved", "header_crc32",
)
assert HEADER_STRUCT.size == HEADER_SIZE

# name_offset, name_length, dtype, ndim, shape[4], offset, size, crc32, reserved (12 bytes)
ENTRY_STRUCT = struct.Struct("<IIII4QQQI12s")
assert ENTRY_STRUCT.size == ENTRY_SIZE

# code -> (name, numpy dtype); BF16 is exposed as raw uint16.
DTYPES = {
    0: ("F32", np.dtype("<f4")),
    1: ("F16", np.dtype("<f2")),
    2: ("BF16", np.dtype("<u2")),
    3: ("I8", np.dtype("i1")),
    4: ("U8", np.dtype("u1")),
    5: ("I32", np.dtype("<i4")),
    6: ("U32", np.dtype("<u4")),
}
DTYPE_CODE_BY_NAME = {name: code for code, (name, _) in DTYPES.items()}
DTYPE_NAME_BY_NUMPY = {
    np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("int8"): "I8",
    np.dtype("uint8"): "U8", np.dtype("int32"): "I32", np.dtype("uint32"): "U32",
}


def align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


class FormatError(ValueError):
    """A .awqe file (or what is about to be written as one) breaks docs/FORMAT.md."""
