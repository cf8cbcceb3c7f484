// crc32.cpp (bindings): crc32(data, value=0), the engine's CRC-32, for tests against zlib.crc32.
#include "crc32.h"

#include <nanobind/nanobind.h>

#include "bindings.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace awq_edge::bindings {

void bind_crc32(nb::module_& m) {
  m.def(
      "crc32",
      [](nb::bytes data, uint32_t value) { return crc32(data.c_str(), data.size(), value); },
      "data"_a, "value"_a = 0,
      "CRC-32 of `data` continuing from `value`, as zlib.crc32 (the checksum of .awqe files).");
}

}  // namespace awq_edge::bindings
