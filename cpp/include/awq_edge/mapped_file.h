// mapped_file.h: a whole file mapped read-only into memory (POSIX mmap; Linux and macOS).
// ModelFile keeps one alive while it is open, and so does every Python array viewing it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace awq_edge {

class MappedFile {
 public:
  // Maps `path`; throws std::system_error (with errno) when it cannot be opened or mapped.
  // An empty file is valid and maps to no memory (data() == nullptr, size() == 0).
  static std::shared_ptr<const MappedFile> open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

  // What release() does with the file's pages in the kernel's page cache.
  enum class PageCache {
    Keep,  // they stay cached (reclaimable): a second load of the same file reads no disk
    Drop,  // they are dropped too, where no other mapping holds them (posix_fadvise
           // POSIX_FADV_DONTNEED; Linux): for a GPU that shares DRAM with the CPU (Jetson), whose
           // copy of the weights would otherwise sit beside the cached file until the kernel
           // reclaims it. A no-op where the system lacks it (macOS).
  };

  // For owners that copied bytes out of the mapping (a backend that repacks weights): the pages
  // wholly inside [begin, begin + bytes) leave this process's resident memory (madvise
  // MADV_DONTNEED), so that the file's copy and the owner's do not both stay resident. The bytes
  // are unchanged: a page touched again is read from the file again. Throws std::out_of_range
  // when the range is not inside the mapping, std::system_error when madvise or posix_fadvise
  // fails.
  void release(const void* begin, uint64_t bytes, PageCache cache = PageCache::Keep) const;

  // Asks the kernel to start reading [begin, begin + bytes) into the page cache now, without
  // waiting (posix_fadvise POSIX_FADV_WILLNEED), so that a loader can read one part from the disk
  // while it repacks the part before. Advice only: nothing happens where the system lacks it.
  // Throws std::out_of_range when the range is not inside the mapping.
  void prefetch(const void* begin, uint64_t bytes) const;

 private:
  MappedFile(const uint8_t* data, uint64_t size, int fd) : data_(data), size_(size), fd_(fd) {}
  void check_inside(const char* operation, const void* begin, uint64_t bytes) const;

  const uint8_t* data_;
  uint64_t size_;
  int fd_;  // kept open for posix_fadvise; -1 for an empty file
};

}  // namespace awq_edge
