"""The Python writer against the numpy reader, and the reference dequantizer against numpy math."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from awq_edge.awqe import AwqeFile, AwqeWriter, FormatError, expected_tensors
from awq_edge.awqe.schemes import dequantize_module, encode_grouped, encode_q8_row, grouped_scheme, parse_scheme
from awqe_samples import random_tensors, tiny_metadata, write_tiny_file


@pytest.mark.parametrize("options", [
    {}, {"tied": True}, {"scheme_bits": 3, "group_size": 64}, {"lm_head": "q8_row"},
    {"tied": True, "embedding": "q8_row"}, {"lm_head": "q4_g32", "embedding": "q4_g64"},
    {"attention_bias": True, "attention_out_bias": True, "mlp_bias": True},
    {"overrides": {"layers.1.mlp.down": "f16", "layers.0.attn.q": "q8_row"}},
])
def test_round_trip(tmp_path, options):
    path = tmp_path / "model.awqe"
    metadata, tensors = write_tiny_file(path, **options)
    f = AwqeFile(path)
    assert f.metadata == json.loads(json.dumps(metadata))
    assert set(f.tensor_infos) == set(tensors)
    for name, array in tensors.items():
        view = f.tensor(name)
        assert view.dtype == array.dtype and np.array_equal(view, array), name
    assert f.header["data_offset"] % 16384 == 0
    assert all(info.offset % 64 == 0 for info in f.tensor_infos.values())
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")], "temporary files left behind"


def test_dequantize_grouped_against_plain_numpy():
    rng = np.random.default_rng(1)
    rows, cols, g = 6, 128, 32
    q = rng.integers(0, 16, size=(rows, cols))
    zeros = rng.integers(0, 16, size=(rows, cols // g))
    scales = rng.uniform(0.01, 0.1, size=(rows, cols // g)).astype(np.float16)
    tensors = encode_grouped("m", q, scales, zeros, 4)
    expected = np.empty((rows, cols), dtype=np.float32)
    for n in range(rows):
        for k in range(cols):
            expected[n, k] = (q[n, k] - zeros[n, k // g]) * np.float32(scales[n, k // g])
    got = dequantize_module(tensors, "m", grouped_scheme(4, g), rows, cols)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)


def test_q8_row_is_symmetric_per_row():
    weight = np.array([[0.5, -1.27, 0.0], [0.02, 0.01, -0.03]], dtype=np.float32)
    tensors = encode_q8_row("m", weight)
    assert tensors["m.qweight"].dtype == np.int8 and tensors["m.qweight"][0, 1] == -127
    back = dequantize_module(tensors, "m", parse_scheme("q8_row"), 2, 3)
    half_step = np.abs(weight).max(axis=1, keepdims=True) / 254
    assert np.all(np.abs(back - weight) <= half_step * 1.01 + 1e-6)


def test_writer_rejects_missing_and_misshapen_tensors(tmp_path):
    metadata = tiny_metadata()
    tensors = random_tensors(metadata)
    path = tmp_path / "model.awqe"
    with pytest.raises(FormatError, match="missing tensor 'layers.1.mlp.down.zeros'"):
        with AwqeWriter(path) as writer:
            for name, array in tensors.items():
                if name != "layers.1.mlp.down.zeros":
                    writer.add_tensor(name, array)
            writer.finish(metadata)
    tensors["norm.weight"] = tensors["norm.weight"][:10]
    with pytest.raises(FormatError, match=r"tensor 'norm.weight': expected F16 \(64,\), found F16 \(10,\)"):
        with AwqeWriter(path) as writer:
            for name, array in tensors.items():
                writer.add_tensor(name, array)
            writer.finish(metadata)
    assert not path.exists() and os.listdir(tmp_path) == []


def test_group_size_must_divide_the_input_dimension():
    with pytest.raises(FormatError, match="not a multiple of group size 128"):
        expected_tensors(tiny_metadata(group_size=128))


def test_interrupted_export_leaves_no_file(tmp_path):
    """A process killed in the middle of an export leaves nothing under the requested name."""
    path = tmp_path / "model.awqe"
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        from awq_edge.awqe import AwqeWriter
        w = AwqeWriter({str(path)!r})
        w.add_tensor("embed.weight", np.ones((96, 64), np.float16))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([sys.executable, "-c", script], env=env)
    assert result.returncode == -signal.SIGKILL
    assert not path.exists()
    leftovers = list(tmp_path.iterdir())
    assert all(p.name.startswith(".model.awqe.") for p in leftovers)


@pytest.mark.parametrize("patch, message", [
    (lambda b: b[:100], "shorter than the 128-byte header"),
    (lambda b: b[:-1], "truncated"),
    (lambda b: b"XXXXXXXX" + b[8:], "bad magic"),
])
def test_numpy_reader_rejects_corruption(tmp_path, patch, message):
    path = tmp_path / "model.awqe"
    write_tiny_file(path)
    path.write_bytes(patch(path.read_bytes()))
    with pytest.raises(FormatError, match=message):
        AwqeFile(path)


def test_numpy_reader_detects_tensor_checksum(tmp_path):
    path = tmp_path / "model.awqe"
    write_tiny_file(path)
    data = bytearray(path.read_bytes())
    offset = AwqeFile(path).tensor_infos["norm.weight"].offset
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="tensor 'norm.weight': checksum mismatch"):
        AwqeFile(path)
    AwqeFile(path, verify=False)  # structure is intact; only the checksum is wrong
