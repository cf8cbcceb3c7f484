// test_mapped_file.cpp: MappedFile::prefetch (cpp/src/mapped_file.cpp), driven by
// tests/cpp/test_mapped_file.py, which checks the page cache around it.
//
//   test_mapped_file FILE OFFSET BYTES   maps FILE, prefetches BYTES at OFFSET (0 bytes: nothing),
//                                        checks that ranges outside the mapping are refused, and
//                                        exits without touching a page of the mapping.
// Prints "ok" and exits 0 when every check passes; prints what failed and exits 1 otherwise.
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "awq_edge/mapped_file.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: test_mapped_file FILE OFFSET BYTES\n");
    return 2;
  }
  const auto mapping = awq_edge::MappedFile::open(argv[1]);
  const uint64_t offset = std::strtoull(argv[2], nullptr, 10), bytes = std::strtoull(argv[3], nullptr, 10);
  mapping->prefetch(mapping->data() + offset, bytes);
  int failures = 0;
  const auto refused = [&](const char* what, const void* begin, uint64_t n) {
    try {
      mapping->prefetch(begin, n);
      std::printf("FAIL prefetch accepted %s\n", what);
      ++failures;
    } catch (const std::out_of_range& e) {
      if (std::string(e.what()).find("prefetch") == std::string::npos) {
        std::printf("FAIL the error for %s does not name prefetch: %s\n", what, e.what());
        ++failures;
      }
    }
  };
  refused("a range running past the end", mapping->data() + mapping->size() - 1, 2);
  refused("a range before the mapping", mapping->data() - 4096, 16);
  if (failures == 0) std::printf("ok\n");
  return failures == 0 ? 0 : 1;
}
