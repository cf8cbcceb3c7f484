// crc32.cpp: table-driven CRC-32, "slicing-by-16" (16 bytes per step through 16 lookup tables
// of 256 entries, 16 KiB in all, built at compile time). A multi-GB model file is checksummed
// at open, so this runs at several GB/s instead of the ~400 MB/s of the byte-at-a-time loop.
//
// Table t holds the CRC contribution of a byte followed by t zero bytes, so 16 bytes can be
// folded with 16 independent lookups XORed together:
//   crc' = T15[b0 ^ c0] ^ T14[b1 ^ c1] ^ T13[b2 ^ c2] ^ T12[b3 ^ c3] ^ T11[b4] ^ ... ^ T0[b15]
// where c0..c3 are the bytes of the running CRC (little-endian) and b0..b15 the input bytes.
#include "crc32.h"

#include <array>

namespace awq_edge {

namespace {

constexpr uint32_t kPolynomial = 0xEDB88320u;  // 0x04C11DB7 bit-reversed
constexpr size_t kSlices = 16;

using Tables = std::array<std::array<uint32_t, 256>, kSlices>;

constexpr Tables make_tables() {
  Tables tables{};
  for (uint32_t byte = 0; byte < 256; ++byte) {
    uint32_t crc = byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (kPolynomial & (0u - (crc & 1u)));
    tables[0][byte] = crc;
  }
  for (size_t t = 1; t < kSlices; ++t) {
    for (uint32_t byte = 0; byte < 256; ++byte) {
      const uint32_t previous = tables[t - 1][byte];
      tables[t][byte] = (previous >> 8) ^ tables[0][previous & 0xFF];
    }
  }
  return tables;
}

constexpr Tables kTables = make_tables();

// Little-endian load from bytes (compiles to one load on little-endian hosts).
inline uint32_t load_le32(const unsigned char* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

}  // namespace

uint32_t crc32(const void* data, size_t size, uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  const auto& T = kTables;
  crc = ~crc;
  for (; size >= kSlices; size -= kSlices, p += kSlices) {
    const uint32_t w0 = load_le32(p) ^ crc;
    const uint32_t w1 = load_le32(p + 4);
    const uint32_t w2 = load_le32(p + 8);
    const uint32_t w3 = load_le32(p + 12);
    crc = T[15][w0 & 0xFF] ^ T[14][(w0 >> 8) & 0xFF] ^ T[13][(w0 >> 16) & 0xFF] ^ T[12][w0 >> 24] ^
          T[11][w1 & 0xFF] ^ T[10][(w1 >> 8) & 0xFF] ^ T[9][(w1 >> 16) & 0xFF] ^ T[8][w1 >> 24] ^
          T[7][w2 & 0xFF] ^ T[6][(w2 >> 8) & 0xFF] ^ T[5][(w2 >> 16) & 0xFF] ^ T[4][w2 >> 24] ^
          T[3][w3 & 0xFF] ^ T[2][(w3 >> 8) & 0xFF] ^ T[1][(w3 >> 16) & 0xFF] ^ T[0][w3 >> 24];
  }
  for (; size > 0; --size, ++p) crc = (crc >> 8) ^ T[0][(crc ^ *p) & 0xFF];
  return ~crc;
}

}  // namespace awq_edge
