"""Bit packing of quantized integers (docs/FORMAT.md, section 5, "Packing rule").

The m values of a row form a little-endian bit stream: value i occupies stream
bits [i*b, (i+1)*b), and stream bit t is bit t % 32 of the row's u32 word t / 32.
For b = 4 this is "8 nibbles per u32, low nibble first"; for b = 3, 32 values
fill exactly 3 words and values 10 and 21 straddle a word boundary.
"""
import numpy as np


def packed_words(count: int, bits: int) -> int:
    """Number of u32 words that hold `count` values of `bits` bits."""
    return (count * bits + 31) // 32


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """(rows, m) integers in 0..2^bits-1 -> (rows, ceil(m*bits/32)) uint32."""
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"pack_bits: expected a 2-D array, got shape {values.shape}")
    if not 1 <= bits <= 8:
        raise ValueError(f"pack_bits: bits must be in 1..8, got {bits}")
    if values.size and (values.min() < 0 or values.max() >= (1 << bits)):
        raise ValueError(f"pack_bits: values must lie in 0..{(1 << bits) - 1}, "
                         f"found {values.min()}..{values.max()}")
    rows, count = values.shape
    words = packed_words(count, bits)
    # (rows, m, bits) bit planes, least significant bit first: the bit stream of each row.
    stream = ((values.astype(np.uint32)[:, :, None] >> np.arange(bits, dtype=np.uint32)) & 1)
    stream = stream.reshape(rows, count * bits).astype(np.uint8)
    padded = np.zeros((rows, words * 32), dtype=np.uint8)
    padded[:, : count * bits] = stream
    # Stream bit t is bit t % 32 of word t / 32: packbits with little bit order gives bytes, 4 per word.
    packed_bytes = np.packbits(padded.reshape(rows, words * 4, 8), axis=-1, bitorder="little")
    return packed_bytes.reshape(rows, words * 4).view("<u4").astype(np.uint32)


def unpack_bits(words: np.ndarray, bits: int, count: int) -> np.ndarray:
    """(rows, ceil(count*bits/32)) uint32 -> (rows, count) uint8 values."""
    words = np.ascontiguousarray(words, dtype="<u4")
    if words.ndim != 2:
        raise ValueError(f"unpack_bits: expected a 2-D array, got shape {words.shape}")
    rows = words.shape[0]
    if words.shape[1] != packed_words(count, bits):
        raise ValueError(f"unpack_bits: {count} values of {bits} bits need "
                         f"{packed_words(count, bits)} words per row, found {words.shape[1]}")
    stream = np.unpackbits(words.view(np.uint8).reshape(rows, -1), axis=-1, bitorder="little")
    planes = stream[:, : count * bits].reshape(rows, count, bits).astype(np.uint8)
    return (planes << np.arange(bits, dtype=np.uint8)).sum(axis=-1, dtype=np.uint8)
