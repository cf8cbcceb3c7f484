"""The numpy reader of .awqe files: the executable form of docs/FORMAT.md.

It checks everything section 7 of the format lists, in that order, and serves
tensors as read-only views of a memory map. Tests use it as the oracle for
the C++ reader and dequantize through it (schemes.dequantize_module).
"""
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .format import (
    BYTE_ORDER_MARK, DATA_ALIGNMENT, DIRECTORY_ALIGNMENT, DTYPES, ENTRY_STRUCT, HEADER_FIELDS, HEADER_SIZE,
    HEADER_STRUCT, MAGIC, MAX_NAME_LENGTH, MAX_NDIM, METADATA_OFFSET, VERSION_MAJOR, FormatError, align_up,
)
from .schemes import dequantize_module, expected_tensors, model_modules
from .writer import check_tensor_set

REQUIRED_METADATA = {
    "format": str, "architecture": str, "config": dict, "tokenizer": dict, "quantization": dict,
    "provenance": dict,
}
REQUIRED_CONFIG = {
    "vocab_size": int, "hidden_size": int, "intermediate_size": int, "num_hidden_layers": int,
    "num_attention_heads": int, "num_key_value_heads": int, "head_dim": int, "max_position_embeddings": int,
    "rms_norm_eps": (int, float), "rope": dict, "tie_word_embeddings": bool, "attention_bias": bool,
    "attention_out_bias": bool, "mlp_bias": bool,
}
REQUIRED_QUANTIZATION = {
    "method": str, "bits": int, "group_size": int, "zero_point": bool, "embedding": str, "lm_head": str,
}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple
    offset: int
    size: int
    crc32: int


class AwqeFile:
    """AwqeFile(path, verify=True): validated header, metadata and tensors of a .awqe file."""

    def __init__(self, path, verify: bool = True):
        self.path = Path(path)
        size = self.path.stat().st_size
        if size < HEADER_SIZE:
            self._fail(f"file is {size} bytes, shorter than the {HEADER_SIZE}-byte header (truncated?)")
        self._bytes = np.memmap(self.path, dtype=np.uint8, mode="r")
        self.header = self._read_header(size)
        self.metadata = self._read_metadata()
        self.tensor_infos = self._read_directory()
        check_tensor_set({n: (t.dtype, t.shape) for n, t in self.tensor_infos.items()},
                         self._expected_tensors(), f"'{self.path}'")
        if verify:
            for info in self.tensor_infos.values():
                found = zlib.crc32(self._bytes[info.offset: info.offset + info.size])
                if found != info.crc32:
                    self._fail(f"tensor '{info.name}': checksum mismatch (directory says {info.crc32:#010x}, "
                               f"data gives {found:#010x}); the file is corrupt, re-export it")

    def _fail(self, message: str):
        raise FormatError(f"'{self.path}': {message}")

    def _read_header(self, size: int) -> dict:
        raw = bytes(self._bytes[:HEADER_SIZE])
        header = dict(zip(HEADER_FIELDS, HEADER_STRUCT.unpack(raw)))
        if header["magic"] != MAGIC:
            self._fail(f"bad magic {header['magic']!r}, expected {MAGIC!r}: not an .awqe file")
        if header["byte_order"] != BYTE_ORDER_MARK:
            self._fail(f"byte-order mark is {header['byte_order']:#010x}, expected {BYTE_ORDER_MARK:#010x} "
                       f"(a big-endian or corrupt file)")
        if header["version_major"] != VERSION_MAJOR:
            newer = header["version_major"] > VERSION_MAJOR
            self._fail(f"file format {header['version_major']}.{header['version_minor']} is "
                       f"{'newer than' if newer else 'not supported by'} this reader ({VERSION_MAJOR}.x)"
                       + ("; upgrade awq_edge" if newer else "; re-export the model"))
        crc = zlib.crc32(raw[:124])
        if crc != header["header_crc32"]:
            self._fail(f"header checksum mismatch (stored {header['header_crc32']:#010x}, computed {crc:#010x})")
        if header["file_size"] != size:
            self._fail(f"header says the file is {header['file_size']} bytes, it is {size} "
                       f"({'truncated' if size < header['file_size'] else 'extended'})")
        h = header
        checks = [
            (h["metadata_offset"] == METADATA_OFFSET, f"metadata_offset {h['metadata_offset']}, expected {METADATA_OFFSET}"),
            (h["directory_offset"] == align_up(METADATA_OFFSET + h["metadata_size"], DIRECTORY_ALIGNMENT),
             f"directory_offset {h['directory_offset']} does not follow the {h['metadata_size']}-byte metadata"),
            (h["tensor_count"] >= 1, "tensor_count is 0"),
            (h["directory_size"] >= h["tensor_count"] * ENTRY_STRUCT.size,
             f"directory_size {h['directory_size']} is smaller than {h['tensor_count']} entries"),
            (h["data_offset"] == align_up(h["directory_offset"] + h["directory_size"], DATA_ALIGNMENT),
             f"data_offset {h['data_offset']} does not follow the directory at a {DATA_ALIGNMENT}-byte boundary"),
            (h["data_offset"] + h["data_size"] == size,
             f"data section [{h['data_offset']}, +{h['data_size']}) does not end at the file's end ({size})"),
            (h["tensor_alignment"] >= 64 and h["tensor_alignment"] & (h["tensor_alignment"] - 1) == 0
             and DATA_ALIGNMENT % h["tensor_alignment"] == 0,
             f"tensor_alignment {h['tensor_alignment']} is not a power of two in 64..{DATA_ALIGNMENT}"),
        ]
        for ok, message in checks:
            if not ok:
                self._fail(message)
        return header

    def _read_metadata(self) -> dict:
        start = self.header["metadata_offset"]
        raw = bytes(self._bytes[start: start + self.header["metadata_size"]])
        if zlib.crc32(raw) != self.header["metadata_crc32"]:
            self._fail("metadata checksum mismatch; the file is corrupt, re-export it")
        try:
            metadata = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            self._fail(f"metadata is not valid UTF-8 JSON: {error}")
        if not isinstance(metadata, dict):
            self._fail(f"metadata must be a JSON object, found {type(metadata).__name__}")
        for where, obj, fields in (("metadata", metadata, REQUIRED_METADATA),
                                   ("metadata.config", metadata.get("config"), REQUIRED_CONFIG),
                                   ("metadata.quantization", metadata.get("quantization"), REQUIRED_QUANTIZATION)):
            if not isinstance(obj, dict):
                self._fail(f"{where} must be a JSON object")
            for field, kind in fields.items():
                if field not in obj:
                    self._fail(f"{where}: required field '{field}' is missing")
                if not isinstance(obj[field], kind) or (kind is int and isinstance(obj[field], bool)):
                    self._fail(f"{where}.{field}: expected {getattr(kind, '__name__', 'number')}, "
                               f"found {type(obj[field]).__name__}")
        if metadata["format"] != "awqe":
            self._fail(f"metadata.format is '{metadata['format']}', expected 'awqe'")
        for field in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                      "num_key_value_heads", "head_dim", "max_position_embeddings"):
            if not 1 <= metadata["config"][field] < 2**31:
                self._fail(f"metadata.config.{field} is {metadata['config'][field]}, expected 1..2^31-1")
        if metadata["config"]["num_hidden_layers"] * 9 > self.header["tensor_count"]:
            self._fail(f"metadata.config.num_hidden_layers is {metadata['config']['num_hidden_layers']}, but the "
                       f"directory holds only {self.header['tensor_count']} tensors (at least 9 per layer)")
        return metadata

    def _read_directory(self) -> dict:
        h = self.header
        start, count = h["directory_offset"], h["tensor_count"]
        raw = bytes(self._bytes[start: start + h["directory_size"]])
        if zlib.crc32(raw) != h["directory_crc32"]:
            self._fail("directory checksum mismatch; the file is corrupt, re-export it")
        names = raw[count * ENTRY_STRUCT.size:]
        infos, previous_end = {}, h["data_offset"]
        for index in range(count):
            (name_offset, name_length, dtype, ndim, *shape, offset, size, crc, _reserved) = \
                ENTRY_STRUCT.unpack_from(raw, index * ENTRY_STRUCT.size)
            where = f"directory entry {index}"
            if not 1 <= name_length <= MAX_NAME_LENGTH or name_offset + name_length > len(names):
                self._fail(f"{where}: name [{name_offset}, +{name_length}) lies outside the {len(names)}-byte names area")
            try:
                name = names[name_offset: name_offset + name_length].decode("utf-8")
            except UnicodeDecodeError:
                self._fail(f"{where}: name is not valid UTF-8")
            where = f"tensor '{name}'"
            if name in infos:
                self._fail(f"{where} appears twice in the directory")
            if dtype not in DTYPES:
                self._fail(f"{where}: unknown dtype code {dtype} (known: {sorted(DTYPES)})")
            if not 1 <= ndim <= MAX_NDIM or any(d < 1 for d in shape[:ndim]) or any(shape[ndim:]):
                self._fail(f"{where}: bad shape (ndim {ndim}, dims {shape})")
            dtype_name, np_dtype = DTYPES[dtype]
            expected_size = int(np.prod(shape[:ndim], dtype=object)) * np_dtype.itemsize
            if size != expected_size:
                self._fail(f"{where}: size {size} bytes, but {dtype_name} {tuple(shape[:ndim])} needs {expected_size}")
            if offset % h["tensor_alignment"]:
                self._fail(f"{where}: offset {offset} is not a multiple of {h['tensor_alignment']}")
            if offset < previous_end:
                self._fail(f"{where}: offset {offset} overlaps the previous tensor or precedes the data section "
                           f"(which ends or starts at {previous_end})")
            if offset + size > h["file_size"]:
                self._fail(f"{where}: [{offset}, {offset + size}) runs past the end of the file ({h['file_size']})")
            previous_end = offset + size
            infos[name] = TensorInfo(name, dtype_name, tuple(shape[:ndim]), offset, size, crc)
        return infos

    def _expected_tensors(self) -> dict:
        try:
            return expected_tensors(self.metadata)
        except (KeyError, TypeError) as error:
            self._fail(f"metadata cannot describe a model: missing or malformed field {error}")
        except FormatError as error:
            self._fail(str(error))

    def tensor(self, name: str) -> np.ndarray:
        """Read-only view of a tensor's data in the mapping."""
        if name not in self.tensor_infos:
            raise KeyError(f"'{self.path}' has no tensor '{name}' ({len(self.tensor_infos)} tensors)")
        info = self.tensor_infos[name]
        np_dtype = next(d for n, d in DTYPES.values() if n == info.dtype)
        view = self._bytes[info.offset: info.offset + info.size].view(np_dtype).reshape(info.shape)
        return view

    def modules(self) -> dict:
        """module name -> (Scheme, N, K) for every weight matrix in the file."""
        return model_modules(self.metadata)

    def dequantized(self, module: str) -> np.ndarray:
        """The module's weight matrix as float32 (N, K), through the reference dequantizer."""
        scheme, rows, cols = self.modules()[module]
        return dequantize_module(self, module, scheme, rows, cols)

    def float_weights(self) -> dict:
        """Every weight as float32 under its float name ("layers.0.attn.q.weight", "norm.weight",
        "layers.0.attn.q.bias"), quantized modules dequantized by the reference dequantizer."""
        modules = self.modules()
        weights = {module: self.dequantized(module) for module in modules}
        weights = {f"{module}.weight": array for module, array in weights.items()}
        for name, info in self.tensor_infos.items():
            module = name.rsplit(".", 1)[0]
            if module not in modules or name.endswith(".bias"):
                weights[name] = self.tensor(name).astype(np.float32)
        return weights

    def __getitem__(self, name: str) -> np.ndarray:
        return self.tensor(name)

    def __contains__(self, name: str) -> bool:
        return name in self.tensor_infos
