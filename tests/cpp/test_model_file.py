"""The C++ reader (awq_edge._awq_edge.ModelFile) against the Python writer and the numpy reader,
and against broken files: every corruption raises ModelFileError naming the problem, never a crash.

Broken files are made by patching the bytes of a valid tiny file (tests/awqe_samples.py); where a
test wants to get past a checksum, fix_crcs() recomputes the header, metadata and directory CRCs.
"""
import gc
import json
import zlib

import numpy as np
import pytest

from awq_edge import _awq_edge
from awq_edge.awqe import AwqeFile, FormatError
from awq_edge.awqe.format import ENTRY_STRUCT, HEADER_FIELDS, HEADER_STRUCT, align_up
from awq_edge.model_file import ModelFile, ModelFileError
from awqe_samples import write_tiny_file

ENTRY_FIELDS = ("name_offset", "name_length", "dtype", "ndim", "shape0", "shape1", "shape2", "shape3",
                "offset", "size", "crc32", "reserved")


# ---------------------------------------------------------------------------------------------
# Byte-patching helpers
# ---------------------------------------------------------------------------------------------

def header_of(data) -> dict:
    return dict(zip(HEADER_FIELDS, HEADER_STRUCT.unpack_from(data, 0)))


def set_header(data: bytearray, **fields) -> None:
    header = dict(header_of(data), **fields)
    data[:HEADER_STRUCT.size] = HEADER_STRUCT.pack(*(header[name] for name in HEADER_FIELDS))


def entry_position(data, index: int) -> int:
    return header_of(data)["directory_offset"] + index * ENTRY_STRUCT.size


def entry_of(data, index: int) -> dict:
    return dict(zip(ENTRY_FIELDS, ENTRY_STRUCT.unpack_from(data, entry_position(data, index))))


def set_entry(data: bytearray, index: int, **fields) -> None:
    entry = dict(entry_of(data, index), **fields)
    ENTRY_STRUCT.pack_into(data, entry_position(data, index), *(entry[name] for name in ENTRY_FIELDS))


def entry_index(data, name: str) -> int:
    h = header_of(data)
    names_start = h["directory_offset"] + h["tensor_count"] * ENTRY_STRUCT.size
    for index in range(h["tensor_count"]):
        e = entry_of(data, index)
        start = names_start + e["name_offset"]
        if bytes(data[start: start + e["name_length"]]) == name.encode():
            return index
    raise LookupError(name)


def fix_crcs(data: bytearray) -> None:
    """Recompute the metadata, directory and header CRCs so that a patch gets past them."""
    h = header_of(data)
    metadata = data[h["metadata_offset"]: h["metadata_offset"] + h["metadata_size"]]
    directory = data[h["directory_offset"]: h["directory_offset"] + h["directory_size"]]
    set_header(data, metadata_crc32=zlib.crc32(metadata), directory_crc32=zlib.crc32(directory))
    data[124:128] = zlib.crc32(bytes(data[:124])).to_bytes(4, "little")


def replace_metadata(data: bytearray, text: bytes) -> None:
    """Put `text` in place of the metadata, padded with JSON whitespace to the same size (the
    layout stays valid), and fix the CRCs."""
    h = header_of(data)
    assert len(text) <= h["metadata_size"], "the new metadata must not be longer than the old"
    start = h["metadata_offset"]
    data[start: start + h["metadata_size"]] = text + b" " * (h["metadata_size"] - len(text))
    fix_crcs(data)


def edit_metadata(data: bytearray, edit) -> None:
    """Apply edit(metadata dict) and store the result; provenance is emptied to make room."""
    h = header_of(data)
    metadata = json.loads(bytes(data[h["metadata_offset"]: h["metadata_offset"] + h["metadata_size"]]))
    metadata["provenance"] = {}
    edit(metadata)
    replace_metadata(data, json.dumps(metadata, separators=(",", ":")).encode())


@pytest.fixture
def tiny(tmp_path):
    """(path, bytearray of its contents) of a valid tiny model file."""
    path = tmp_path / "tiny.awqe"
    write_tiny_file(path)
    return path, bytearray(path.read_bytes())


def expect_rejected(path, data, message: str):
    """Write `data` to `path`; both readers must reject it, the C++ one with `message` in its error."""
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError) as error:
        ModelFile(path)
    text = str(error.value)
    assert text.startswith(f"[ModelFile] {path}: "), text
    assert message in text, text
    with pytest.raises(FormatError):
        AwqeFile(path)


# ---------------------------------------------------------------------------------------------
# The writer and both readers agree
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [
    {}, {"tied": True}, {"scheme_bits": 3, "group_size": 64}, {"lm_head": "q8_row"},
    {"tied": True, "embedding": "q8_row"}, {"lm_head": "q4_g32", "embedding": "q4_g64"},
    {"scheme_bits": 3, "group_size": 32, "embedding": "q3_g64"},
    {"attention_bias": True, "attention_out_bias": True, "mlp_bias": True},
    {"overrides": {"layers.1.mlp.down": "f16", "layers.0.attn.q": "q8_row", "embed": "q4_g32"}},
], ids=str)
def test_reads_what_the_writer_wrote(tmp_path, options):
    path = tmp_path / "model.awqe"
    metadata, tensors = write_tiny_file(path, **options)
    oracle = AwqeFile(path)
    with ModelFile(str(path)) as f:
        assert f.version == (1, 0)
        assert f.header == oracle.header
        assert f.metadata == oracle.metadata == json.loads(json.dumps(metadata))
        assert _awq_edge.json_loads(f.metadata_json.encode()) == f.metadata
        assert len(f) == len(tensors) == len(oracle.tensor_infos)
        for info in f.tensors():
            assert info == vars(oracle.tensor_infos[info["name"]])
        for name, written in tensors.items():
            assert name in f
            view = f.tensor(name)
            assert view.dtype == written.dtype and view.shape == written.shape, name
            assert np.array_equal(view, written) and np.array_equal(view, oracle.tensor(name)), name
            assert not view.flags.writeable
            assert view.ctypes.data % 64 == 0
        assert "no.such.tensor" not in f


def test_views_outlive_close_and_the_file_object(tiny):
    path, _ = tiny
    f = ModelFile(path)  # a pathlib.Path works too
    expected = np.array(f.tensor("norm.weight"))
    view = f.tensor("norm.weight")
    f.close()
    assert f.closed
    with pytest.raises(ModelFileError, match="closed"):
        f.tensor("norm.weight")
    del f
    gc.collect()
    assert np.array_equal(view, expected)


def test_unknown_tensor_is_a_key_error_with_close_matches(tiny):
    path, _ = tiny
    f = ModelFile(path)
    with pytest.raises(KeyError, match="close matches: 'layers.0.mlp.up.qweight'"):
        f.tensor("layers.0.mlp.up.qweigth")
    with pytest.raises(KeyError, match="it has 49 tensors"):
        f.tensor("something else entirely")


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="cannot open: No such file"):
        ModelFile(tmp_path / "absent.awqe")


def test_newer_minor_version_is_accepted(tiny):
    path, data = tiny
    set_header(data, version_minor=7)
    fix_crcs(data)
    path.write_bytes(bytes(data))
    assert ModelFile(path).version == (1, 7)


def test_skipping_checksums_opens_a_file_with_corrupt_data(tiny):
    path, data = tiny
    data[header_of(data)["data_offset"] + 3] ^= 0xFF
    path.write_bytes(bytes(data))
    ModelFile(path, verify_checksums=False)
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        ModelFile(path)


# ---------------------------------------------------------------------------------------------
# Broken files: each is rejected with a message that names the problem
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["empty", "header", "header_end", "metadata", "directory", "data", "last_byte"])
def test_truncated(tiny, where):
    path, data = tiny
    h = header_of(data)
    cut = {"empty": 0, "header": 50, "header_end": 127, "metadata": h["metadata_offset"] + 10,
           "directory": h["directory_offset"] + 100, "data": h["data_offset"] + 1000,
           "last_byte": len(data) - 1}[where]
    message = "shorter than the 128-byte header" if cut < 128 else f"the file has {cut} (truncated"
    expect_rejected(path, data[:cut], message)


def test_extended(tiny):
    path, data = tiny
    expect_rejected(path, data + b"\0", "(extended")


def test_bad_magic(tiny):
    path, data = tiny
    data[:4] = b"GGUF"
    expect_rejected(path, data, "bad magic 47 47 55 46 44 47 45 00")


def test_zero_magic_of_an_unfinished_export(tiny):
    path, data = tiny
    data[:8] = bytes(8)
    expect_rejected(path, data, "unfinished or interrupted export")


def test_big_endian_byte_order(tiny):
    path, data = tiny
    data[12:16] = bytes([0x0A, 0x0B, 0x0C, 0x0D])
    expect_rejected(path, data, "written big-endian")


@pytest.mark.parametrize("recompute_crc", [False, True])
def test_newer_major_version(tiny, recompute_crc):
    # The version is checked before the header CRC (a newer layout may move it): the message
    # is the version message whether or not the CRC was recomputed.
    path, data = tiny
    set_header(data, version_major=2, version_minor=0)
    if recompute_crc:
        fix_crcs(data)
    expect_rejected(path, data, "file format 2.0 is newer than this reader (1.x); upgrade awq_edge")


def test_older_major_version(tiny):
    path, data = tiny
    set_header(data, version_major=0, version_minor=9)
    fix_crcs(data)
    expect_rejected(path, data, "file format 0.9 is older than this reader (1.x)")


def test_header_checksum(tiny):
    path, data = tiny
    data[100] ^= 0x01  # a reserved byte: only the CRC notices
    expect_rejected(path, data, "header checksum mismatch")


def test_metadata_checksum(tiny):
    path, data = tiny
    data[header_of(data)["metadata_offset"] + 20] ^= 0x01
    expect_rejected(path, data, "metadata checksum mismatch")


def test_directory_checksum(tiny):
    path, data = tiny
    data[header_of(data)["directory_offset"] + 9] ^= 0x01
    expect_rejected(path, data, "directory checksum mismatch")


@pytest.mark.parametrize("text, message", [
    (b'{"format":"awqe",}', "expected a string key in the object at byte 17"),
    (b"[1, 2", "unexpected end of input inside an array"),
    (b'{"format":"awqe"} {}', "unexpected data after the JSON value at byte 18"),
    (b'{"format":"\xff"}', "invalid UTF-8 sequence starting with byte \\xFF at byte 11"),
    (b'{"a":NaN}', "unexpected character 'N'"),
    (b'{"a":012}', "leading zero"),
    (b'{"a":"\\ud800"}', "high surrogate not followed by"),
    (b'{"a":1,"a":2}', 'duplicate object key "a"'),
    (b"[" * 300 + b"]" * 300, "nesting deeper than 256 levels"),
], ids=["trailing_comma", "unterminated", "two_values", "bad_utf8", "nan", "leading_zero",
        "lone_surrogate", "duplicate_key", "too_deep"])
def test_invalid_json_metadata(tiny, text, message):
    path, data = tiny
    replace_metadata(data, text)
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="metadata is not valid UTF-8 JSON") as error:
        ModelFile(path)
    assert message in str(error.value)


def test_metadata_not_an_object(tiny):
    path, data = tiny
    replace_metadata(data, b'[{"format":"awqe"}]')
    expect_rejected(path, data, "metadata must be a JSON object, found array")


@pytest.mark.parametrize("section, field, message", [
    (None, "format", "metadata: required field 'format' is missing"),
    (None, "tokenizer", "metadata: required field 'tokenizer' is missing"),
    ("config", "head_dim", "metadata.config: required field 'head_dim' is missing"),
    ("config", "rope", "metadata.config: required field 'rope' is missing"),
    ("quantization", "lm_head", "metadata.quantization: required field 'lm_head' is missing"),
])
def test_missing_required_metadata_field(tiny, section, field, message):
    path, data = tiny
    edit_metadata(data, lambda m: (m[section] if section else m).pop(field))
    expect_rejected(path, data, message)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["config"].update(hidden_size="64"), "metadata.config.hidden_size: expected an integer, found string"),
    (lambda m: m["config"].update(mlp_bias=0), "metadata.config.mlp_bias: expected a boolean, found integer"),
    (lambda m: m.update(config=[]), "metadata.config: expected an object, found array"),
    (lambda m: m.update(format="gguf"), "metadata.format is 'gguf', expected 'awqe'"),
    (lambda m: m["quantization"].update(bits=5), "make the unknown storage scheme 'q5_g32'"),
    (lambda m: m["quantization"].update(embedding="q2_g32"),
     "metadata.quantization.embedding: unknown storage scheme 'q2_g32'"),
    (lambda m: m["quantization"].update(overrides={"layers.9.mlp.up": "f16"}),
     "overrides names module 'layers.9.mlp.up', which the model does not have"),
    (lambda m: m["config"].update(tie_word_embeddings=True),
     "'tied' is required exactly when embeddings are tied"),
    (lambda m: m.clear(), "metadata: required field 'format' is missing"),
    (lambda m: m["config"].update(num_hidden_layers=0),
     "metadata.config.num_hidden_layers: expected an integer in 1..2^31-1, found 0"),
], ids=["int_as_string", "bool_as_int", "config_not_object", "format", "bits", "embedding_scheme",
        "override_unknown_module", "tying", "empty_object", "zero_layers"])
def test_malformed_metadata(tiny, edit, message):
    path, data = tiny
    edit_metadata(data, edit)
    expect_rejected(path, data, message)


def test_absurd_layer_count_is_rejected_before_listing_tensors(tiny):
    path, data = tiny
    edit_metadata(data, lambda m: m["config"].update(num_hidden_layers=2_000_000_000))
    expect_rejected(path, data, "num_hidden_layers is 2000000000, but the file holds only 49 tensors")


# Directory entry patches: (field changes for entry `index`, expected message).
def _norm(data):
    return entry_index(data, "norm.weight")


@pytest.mark.parametrize("patch, message", [
    (lambda d: set_entry(d, -1 + header_of(d)["tensor_count"], offset=align_up(len(d), 64)),
     "run past the end of the file"),
    (lambda d: set_entry(d, 1, offset=entry_of(d, 0)["offset"]), "overlap tensor 'embed.weight'"),
    (lambda d: set_entry(d, 2, offset=entry_of(d, 0)["offset"]), "entries must be sorted by offset"),
    (lambda d: set_entry(d, 0, offset=entry_of(d, 0)["offset"] + 8), "is not a multiple of tensor_alignment (64)"),
    (lambda d: set_entry(d, 0, offset=header_of(d)["data_offset"] - 64), "lies before the data section"),
    (lambda d: set_entry(d, 0, dtype=9), "tensor 'embed.weight': unknown dtype code 9"),
    (lambda d: set_entry(d, 0, size=entry_of(d, 0)["size"] + 2),
     "tensor 'embed.weight': size is 12290 bytes, but F16 (96, 64) needs 12288"),
    (lambda d: set_entry(d, 0, ndim=0), "ndim is 0, expected 1..4"),
    (lambda d: set_entry(d, 0, ndim=5), "ndim is 5, expected 1..4"),
    (lambda d: set_entry(d, 0, shape1=0), "shape[1] is 0"),
    (lambda d: set_entry(d, 0, shape3=7), "unused shape[3] is 7"),
    (lambda d: set_entry(d, 0, shape0=2**62, shape1=2**62), "does not fit in 64 bits"),
    (lambda d: set_entry(d, 0, name_length=0), "directory entry 0: name [0, +0) lies outside"),
    (lambda d: set_entry(d, 0, name_offset=10**6), "lies outside the"),
    (lambda d: set_entry(d, 1, name_offset=0, name_length=entry_of(d, 0)["name_length"]),
     "tensor 'embed.weight' appears twice in the directory"),
    (lambda d: set_entry(d, _norm(d), ndim=2, shape0=32, shape1=2),
     "tensor 'norm.weight': expected F16 (64,), found F16 (32, 2)"),
], ids=["offset_past_end", "overlap", "unsorted", "misaligned", "before_data", "unknown_dtype",
        "size_mismatch", "ndim_0", "ndim_5", "zero_dim", "unused_dim", "size_overflow", "empty_name",
        "name_out_of_bounds", "duplicate_name", "wrong_shape"])
def test_bad_directory_entry(tiny, patch, message):
    path, data = tiny
    patch(data)
    fix_crcs(data)
    expect_rejected(path, data, message)


def test_non_utf8_name(tiny):
    path, data = tiny
    h = header_of(data)
    data[h["directory_offset"] + h["tensor_count"] * ENTRY_STRUCT.size] = 0xFF  # first byte of the names
    fix_crcs(data)
    expect_rejected(path, data, "directory entry 0: name is not UTF-8")


@pytest.mark.parametrize("fields, message", [
    ({"metadata_offset": 136}, "metadata_offset is 136, expected 128"),
    ({"metadata_size": 10**9}, "runs past the end of the file"),
    ({"directory_offset": 2048}, "expected 1112 (the first multiple of 8 after the metadata)"),
    ({"tensor_count": 0}, "tensor_count is 0"),
    ({"tensor_count": 10**6}, "too small for tensor_count 1000000"),
    ({"directory_size": 10**9}, "directory [1112, +1000000000) runs past the end of the file"),
    ({"data_offset": 32768}, "data_offset is 32768, expected 16384"),
    ({"data_size": 5}, "data_size is 5, expected file_size - data_offset"),
    ({"tensor_alignment": 96}, "tensor_alignment is 96, expected a power of two in 64..16384"),
    ({"tensor_alignment": 32}, "tensor_alignment is 32"),
], ids=["metadata_offset", "metadata_size", "directory_offset", "no_tensors", "too_many_tensors",
        "directory_size", "data_offset", "data_size", "alignment_not_pow2", "alignment_small"])
def test_bad_section_layout(tiny, fields, message):
    path, data = tiny
    assert header_of(data)["metadata_size"] == 977, "the expected messages assume the tiny file's layout"
    set_header(data, **fields)
    fix_crcs(data)
    expect_rejected(path, data, message)


def test_tensor_checksum(tiny):
    path, data = tiny
    e = entry_of(data, 0)
    data[e["offset"] + 5] ^= 0x10
    expect_rejected(path, data, "tensor 'embed.weight': checksum mismatch")


def test_missing_tensor(tiny):
    path, data = tiny
    edit_metadata(data, lambda m: m["config"].update(attention_bias=True))
    expect_rejected(path, data, "missing tensor 'layers.0.attn.q.bias' (expected F16 (64,); 6 missing in all)")


def test_unexpected_extra_tensor(tmp_path):
    path = tmp_path / "bias.awqe"
    write_tiny_file(path, mlp_bias=True)
    data = bytearray(path.read_bytes())
    edit_metadata(data, lambda m: m["config"].update(mlp_bias=False))
    expect_rejected(path, data, "unexpected tensor 'layers.0.mlp.gate.bias' (6 not in the model's tensor set)")


def test_wrong_shape_from_metadata(tiny):
    path, data = tiny
    edit_metadata(data, lambda m: m["config"].update(intermediate_size=96))
    expect_rejected(path, data, "tensor 'layers.0.mlp.gate.qweight': expected U32 (96, 8), found U32 (128, 8)")


def test_group_size_must_divide_the_input_features(tiny):
    path, data = tiny
    edit_metadata(data, lambda m: m["quantization"].update(group_size=128))
    expect_rejected(path, data, "module 'layers.0.attn.q': 64 input features are not a multiple of group size 128")


# ---------------------------------------------------------------------------------------------
# Robustness: random damage opens or raises ModelFileError, never crashes
# ---------------------------------------------------------------------------------------------

def test_random_mutations_never_crash(tiny):
    path, original = tiny
    rng = np.random.default_rng(1234)
    h = header_of(original)
    outcomes = {"opened": 0, "rejected": 0}
    for trial in range(200):
        data = bytearray(original)
        # Mostly the header, metadata and directory, where the structure is; some data bytes too.
        end = h["directory_offset"] + h["directory_size"] if trial % 4 else len(data)
        for _ in range(rng.integers(1, 5)):
            data[rng.integers(0, end)] = rng.integers(0, 256)
        if trial % 2:
            fix_crcs(data)  # get past the checksums to reach the deeper checks
        if trial % 10 == 9:
            data = data[: rng.integers(0, len(data))]
        path.write_bytes(bytes(data))
        try:
            ModelFile(path)
            outcomes["opened"] += 1
        except ModelFileError as error:
            assert str(error).startswith("[ModelFile] ")
            outcomes["rejected"] += 1
    assert outcomes["rejected"] > 100, outcomes


def test_random_garbage_files(tmp_path):
    rng = np.random.default_rng(7)
    path = tmp_path / "garbage.awqe"
    for size in (1, 127, 128, 129, 1000, 20000):
        data = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        if size >= 128:
            data[:8] = b"AWQEDGE\0"
            data[8:16] = bytes([1, 0, 0, 0, 0x0D, 0x0C, 0x0B, 0x0A])
            data[16:24] = size.to_bytes(8, "little")
            data[124:128] = zlib.crc32(bytes(data[:124])).to_bytes(4, "little")
        path.write_bytes(bytes(data))
        with pytest.raises(ModelFileError):
            ModelFile(path)


# ---------------------------------------------------------------------------------------------
# The engine's CRC-32 and JSON parser against Python's
# ---------------------------------------------------------------------------------------------

def test_crc32_check_value():
    assert _awq_edge.crc32(b"123456789") == 0xCBF43926


@pytest.mark.parametrize("size", [0, 1, 7, 15, 16, 17, 31, 64, 1000, 1 << 20])
def test_crc32_matches_zlib(size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert _awq_edge.crc32(data) == zlib.crc32(data)
    half = size // 2
    assert _awq_edge.crc32(data[half:], _awq_edge.crc32(data[:half])) == zlib.crc32(data)


@pytest.mark.parametrize("text", [
    '{"a": [1, -2, 3.5, -0.25e-3, 1E+2, true, false, null], "b": {"c": ""}}',
    '"\\u00e9\\u4e2d\\ud83d\\ude00 \\" \\\\ \\/ \\b \\f \\n \\r \\t"',
    '"é中😀"', "9223372036854775807", "-9223372036854775808", "  [ ]  ", "{}",
    "18446744073709551616",  # beyond int64: parsed as a double, equal to 2**64 exactly
    "0.1", "1e308", "123456789.123456789",
])
def test_json_parser_matches_python(text):
    assert _awq_edge.json_loads(text.encode()) == json.loads(text)


def test_json_parser_on_mutated_metadata(tiny):
    """Random byte damage: what the engine accepts, Python parses to the same value."""
    _, data = tiny
    h = header_of(data)
    original = bytes(data[h["metadata_offset"]: h["metadata_offset"] + h["metadata_size"]])
    rng = np.random.default_rng(99)
    for _ in range(300):
        text = bytearray(original)
        for _ in range(rng.integers(1, 3)):
            text[rng.integers(0, len(text))] = rng.choice(list(b'{}[]",:\\ 0123456789eE.-+tfnu\xc3\xff'))
        try:
            value = _awq_edge.json_loads(bytes(text))
        except _awq_edge.JSONError:
            continue
        assert value == json.loads(bytes(text).decode("utf-8"))
