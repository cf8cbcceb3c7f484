"""The one writer of .awqe files (docs/FORMAT.md).

Tensors stream into a spill file as they are added, so a model is written one
block at a time without holding it in memory. finish() lays out header,
metadata and directory, copies the data behind them into a temporary file in
the destination directory, and renames it into place only when complete: an
interrupted export never leaves a file under the requested name.
"""
import json
import os
import shutil
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np

from .format import (
    DATA_ALIGNMENT, DIRECTORY_ALIGNMENT, DTYPE_CODE_BY_NAME, DTYPE_NAME_BY_NUMPY, ENTRY_STRUCT,
    HEADER_FIELDS, HEADER_SIZE, HEADER_STRUCT, MAGIC, MAX_NAME_LENGTH, MAX_NDIM, METADATA_OFFSET, TENSOR_ALIGNMENT,
    VERSION_MAJOR, VERSION_MINOR, BYTE_ORDER_MARK, FormatError, align_up,
)
from .schemes import expected_tensors


def check_tensor_set(found: Mapping[str, tuple], expected: Mapping[str, tuple], where: str) -> None:
    """Raise FormatError naming the first missing, extra or mis-shaped tensor."""
    missing = [name for name in expected if name not in found]
    if missing:
        raise FormatError(f"{where}: missing tensor '{missing[0]}' (expected {expected[missing[0]][0]} "
                          f"{expected[missing[0]][1]}; {len(missing)} missing in all)")
    extra = [name for name in found if name not in expected]
    if extra:
        raise FormatError(f"{where}: unexpected tensor '{extra[0]}' ({len(extra)} not in the model's tensor set)")
    for name, (dtype, shape) in expected.items():
        if tuple(found[name]) != (dtype, tuple(shape)):
            raise FormatError(f"{where}: tensor '{name}': expected {dtype} {tuple(shape)}, "
                              f"found {found[name][0]} {tuple(found[name][1])}")


class AwqeWriter:
    """with AwqeWriter(path) as w: w.add_tensor(name, array) ...; w.finish(metadata)"""

    def __init__(self, path, tensor_alignment: int = TENSOR_ALIGNMENT):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"cannot write '{self.path}': directory '{self.path.parent}' does not exist")
        if tensor_alignment < 64 or tensor_alignment & (tensor_alignment - 1) or DATA_ALIGNMENT % tensor_alignment:
            raise ValueError(f"tensor_alignment must be a power of two in 64..{DATA_ALIGNMENT}, got {tensor_alignment}")
        self.tensor_alignment = tensor_alignment
        self._spill_path = self.path.parent / f".{self.path.name}.data-{os.getpid()}"
        self._partial_path = self.path.parent / f".{self.path.name}.partial-{os.getpid()}"
        self._spill = open(self._spill_path, "wb")
        self._entries = {}  # name -> (dtype name, shape, offset in data section, size, crc32)
        self._finished = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if not self._finished:
            self.abort()
        return False

    @property
    def data_bytes(self) -> int:
        return self._spill.tell()

    def add_tensor(self, name: str, array: np.ndarray) -> None:
        array = np.asarray(array)
        encoded = name.encode("utf-8")
        if not encoded or len(encoded) > MAX_NAME_LENGTH or b"\0" in encoded:
            raise FormatError(f"tensor name {name!r}: must be 1..{MAX_NAME_LENGTH} bytes of UTF-8 without NUL")
        if name in self._entries:
            raise FormatError(f"tensor '{name}' added twice")
        if array.dtype not in DTYPE_NAME_BY_NUMPY:
            raise FormatError(f"tensor '{name}': dtype {array.dtype} is not storable "
                              f"(use one of {sorted(str(d) for d in DTYPE_NAME_BY_NUMPY)})")
        if not 1 <= array.ndim <= MAX_NDIM or 0 in array.shape:
            raise FormatError(f"tensor '{name}': shape {array.shape} must have 1..{MAX_NDIM} non-zero dimensions")
        offset = align_up(self._spill.tell(), self.tensor_alignment)
        self._spill.write(b"\0" * (offset - self._spill.tell()))
        data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        self._spill.write(data)
        self._entries[name] = (DTYPE_NAME_BY_NUMPY[array.dtype], tuple(array.shape), offset, len(data),
                               zlib.crc32(data))

    def finish(self, metadata: Mapping) -> Path:
        """Check the tensor set against the metadata, write the file atomically, return its path."""
        check_tensor_set({name: e[:2] for name, e in self._entries.items()}, expected_tensors(metadata),
                         f"'{self.path}'")
        metadata_bytes = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"),
                                    allow_nan=False).encode("utf-8")
        directory = self._directory_bytes(metadata_bytes)
        directory_offset = align_up(METADATA_OFFSET + len(metadata_bytes), DIRECTORY_ALIGNMENT)
        data_offset = align_up(directory_offset + len(directory), DATA_ALIGNMENT)
        self._spill.flush()
        data_size = self._spill.tell()
        fields = dict(
            version_major=VERSION_MAJOR, version_minor=VERSION_MINOR,
            byte_order=BYTE_ORDER_MARK, file_size=data_offset + data_size, metadata_offset=METADATA_OFFSET,
            metadata_size=len(metadata_bytes), directory_offset=directory_offset,
            directory_size=len(directory), data_offset=data_offset, data_size=data_size,
            tensor_count=len(self._entries), tensor_alignment=self.tensor_alignment,
            metadata_crc32=zlib.crc32(metadata_bytes), directory_crc32=zlib.crc32(directory),
            reserved=b"\0" * 36,
        )
        try:
            with open(self._partial_path, "wb") as out:
                out.write(b"\0" * HEADER_SIZE)  # the magic stays zero until everything else is on disk
                out.write(metadata_bytes)
                out.write(b"\0" * (directory_offset - out.tell()))
                out.write(directory)
                out.write(b"\0" * (data_offset - out.tell()))
                with open(self._spill_path, "rb") as spill:
                    shutil.copyfileobj(spill, out, 16 << 20)
                out.flush()
                os.fsync(out.fileno())
                out.seek(0)
                out.write(header_bytes(fields))
                out.flush()
                os.fsync(out.fileno())
            os.replace(self._partial_path, self.path)
        finally:
            self.abort()
        self._finished = True
        return self.path

    def abort(self) -> None:
        """Remove the temporary files; the destination is left untouched."""
        if not self._spill.closed:
            self._spill.close()
        for temporary in (self._spill_path, self._partial_path):
            temporary.unlink(missing_ok=True)

    def _directory_bytes(self, metadata_bytes: bytes) -> bytes:
        data_offset = align_up(align_up(METADATA_OFFSET + len(metadata_bytes), DIRECTORY_ALIGNMENT)
                               + len(self._entries) * ENTRY_STRUCT.size
                               + sum(len(n.encode()) for n in self._entries), DATA_ALIGNMENT)
        entries, names = [], bytearray()
        for name, (dtype, shape, offset, size, crc) in sorted(self._entries.items(), key=lambda e: e[1][2]):
            encoded = name.encode("utf-8")
            padded_shape = tuple(shape) + (0,) * (MAX_NDIM - len(shape))
            entries.append(ENTRY_STRUCT.pack(len(names), len(encoded), DTYPE_CODE_BY_NAME[dtype], len(shape),
                                             *padded_shape, data_offset + offset, size, crc, b"\0" * 12))
            names += encoded
        return b"".join(entries) + bytes(names)


def header_bytes(fields: Mapping) -> bytes:
    """Pack the header with MAGIC and a freshly computed header CRC."""
    values = dict(fields, magic=MAGIC, header_crc32=0)
    packed = HEADER_STRUCT.pack(*(values[name] for name in HEADER_FIELDS))
    return packed[:124] + zlib.crc32(packed[:124]).to_bytes(4, "little")
