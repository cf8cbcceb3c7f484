// mapped_file.cpp: POSIX implementation of awq_edge/mapped_file.h.
//
// The mapping is MAP_PRIVATE and PROT_READ: the engine never writes through it. The file
// descriptor stays open (close-on-exec) only so that release() can advise the page cache; the
// mapping alone keeps the file's pages reachable. If
// another process truncates the file while it is mapped, touching the lost pages raises
// SIGBUS: that is the price of zero-copy, shared by every mmap-based loader.
#include "awq_edge/mapped_file.h"

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace awq_edge {

namespace {

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// Closes a file descriptor on every path out of open() that does not hand it to a MappedFile.
struct FileDescriptor {
  int fd;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
  int take() {
    const int taken = fd;
    fd = -1;
    return taken;
  }
};

}  // namespace

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
  FileDescriptor file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (file.fd < 0) throw_errno("cannot open");
  struct stat info {};
  if (::fstat(file.fd, &info) != 0) throw_errno("cannot stat");
  if (!S_ISREG(info.st_mode)) throw std::system_error(EINVAL, std::generic_category(), "not a regular file");
  const auto size = static_cast<uint64_t>(info.st_size);
  if (size == 0) return std::shared_ptr<const MappedFile>(new MappedFile(nullptr, 0, -1));
  if (size > SIZE_MAX) throw std::system_error(EFBIG, std::generic_category(), "too large to map");
  void* address = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_PRIVATE, file.fd, 0);
  if (address == MAP_FAILED) throw_errno("cannot mmap");
  return std::shared_ptr<const MappedFile>(new MappedFile(static_cast<const uint8_t*>(address), size, file.take()));
}

void MappedFile::check_inside(const char* operation, const void* begin, uint64_t bytes) const {
  const auto first = reinterpret_cast<uintptr_t>(begin), start = reinterpret_cast<uintptr_t>(data_);
  if (data_ == nullptr || first < start || first - start > size_ || bytes > size_ - (first - start)) {
    throw std::out_of_range(std::string("[MappedFile] ") + operation + ": " + std::to_string(bytes) + " bytes at offset " +
                            std::to_string(static_cast<long long>(first - start)) + " are not inside the mapping of " +
                            std::to_string(size_) + " bytes");
  }
}

void MappedFile::prefetch(const void* begin, uint64_t bytes) const {
  if (bytes == 0) return;
  check_inside("prefetch", begin, bytes);
#ifdef POSIX_FADV_WILLNEED
  const auto offset = static_cast<off_t>(reinterpret_cast<uintptr_t>(begin) - reinterpret_cast<uintptr_t>(data_));
  (void)::posix_fadvise(fd_, offset, static_cast<off_t>(bytes), POSIX_FADV_WILLNEED);  // advice: failing costs nothing
#endif
}

void MappedFile::release(const void* begin, uint64_t bytes, PageCache cache) const {
  const auto first = reinterpret_cast<uintptr_t>(begin), start = reinterpret_cast<uintptr_t>(data_);
  if (bytes == 0) return;
  check_inside("release", begin, bytes);
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t low = (first + page - 1) / page * page, high = (first + bytes) / page * page;  // whole pages only
  if (low >= high) return;
  if (::madvise(reinterpret_cast<void*>(low), high - low, MADV_DONTNEED) != 0) {
    throw_errno("[MappedFile] release: madvise(MADV_DONTNEED)");
  }
#ifdef POSIX_FADV_DONTNEED
  // after the madvise, so that this mapping no longer holds the pages the kernel is asked to drop
  if (cache == PageCache::Drop) {
    const int error = ::posix_fadvise(fd_, static_cast<off_t>(low - start), static_cast<off_t>(high - low),
                                      POSIX_FADV_DONTNEED);
    if (error != 0) {
      throw std::system_error(error, std::generic_category(), "[MappedFile] release: posix_fadvise(POSIX_FADV_DONTNEED)");
    }
  }
#else
  (void)cache;
#endif
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), static_cast<size_t>(size_));
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace awq_edge
