// crc32.h: CRC-32 as in zlib, PNG and gzip (CRC-32/ISO-HDLC): reflected polynomial 0xEDB88320,
// initial value and final XOR 0xFFFFFFFF; crc32("123456789") == 0xCBF43926. Every checksum of
// the .awqe format (header, metadata, directory, each tensor) is this one.
#pragma once

#include <cstddef>
#include <cstdint>

namespace awq_edge {

// The CRC of `size` bytes at `data`, continuing from `crc` (the result of the previous chunk;
// 0 to start), so crc32(b, n2, crc32(a, n1)) == crc32(a ++ b). Same contract as zlib's crc32().
uint32_t crc32(const void* data, size_t size, uint32_t crc = 0);

}  // namespace awq_edge
