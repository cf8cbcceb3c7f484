"""Bit packing (FORMAT.md section 5) against a bit-by-bit pure-Python packer."""
import numpy as np
import pytest

from awq_edge.awqe.packing import pack_bits, packed_words, unpack_bits


def pack_row_bit_by_bit(values, bits):
    words = [0] * packed_words(len(values), bits)
    for i, value in enumerate(values):
        for b in range(bits):
            t = i * bits + b
            words[t // 32] |= ((int(value) >> b) & 1) << (t % 32)
    return words


@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize("count", [1, 7, 9, 32, 33, 64, 96, 130])
def test_round_trip_and_reference(bits, count):
    rng = np.random.default_rng(count * bits)
    values = rng.integers(0, 1 << bits, size=(5, count))
    words = pack_bits(values, bits)
    assert words.dtype == np.uint32 and words.shape == (5, packed_words(count, bits))
    for row, packed in zip(values, words):
        assert packed.tolist() == pack_row_bit_by_bit(row, bits)
    np.testing.assert_array_equal(unpack_bits(words, bits, count), values)


def test_three_bits_are_really_packed():
    assert pack_bits(np.zeros((1, 32), dtype=np.uint8), 3).shape == (1, 3)


def test_docs_worked_examples():
    row = np.array([[3, 10, 0, 15, 7, 1, 2, 8] + [0] * 56])
    words = pack_bits(row, 4)
    assert words.shape == (1, 8) and words[0, 0] == 0x8217F0A3
    assert words[0, 0].tobytes() == bytes([0xA3, 0xF0, 0x17, 0x82])
    assert pack_bits(np.array([[8, 5]]), 4).tolist() == [[0x58]]
    assert float(np.float16(0.01)) * 2 == pytest.approx(0.0200043, abs=1e-7)
    assert np.float16(0.01).view(np.uint16) == 0x211F

    values = np.array([[5, 3, 7, 0, 1, 6, 2, 4] * 4])
    w0, w1, w2 = (int(w) for w in pack_bits(values, 3)[0])
    v = values[0]
    assert all((w0 >> (3 * i)) & 7 == v[i] for i in range(10))
    assert (w0 >> 30) | ((w1 & 1) << 2) == v[10]          # value 10 straddles words 0 and 1
    assert all((w1 >> (1 + 3 * (i - 11))) & 7 == v[i] for i in range(11, 21))
    assert (w1 >> 31) | ((w2 & 3) << 1) == v[21]          # value 21 straddles words 1 and 2
    assert all((w2 >> (2 + 3 * (i - 22))) & 7 == v[i] for i in range(22, 32))


@pytest.mark.parametrize("bad", [np.array([[16]]), np.array([[-1]])])
def test_out_of_range_values_are_rejected(bad):
    with pytest.raises(ValueError, match="values must lie in 0..15"):
        pack_bits(bad, 4)
