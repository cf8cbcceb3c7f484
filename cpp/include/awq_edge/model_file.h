// model_file.h: the engine's reader of .awqe files (docs/FORMAT.md is the contract).
//
// ModelFile maps the file read-only and, before any tensor can be used, checks everything
// FORMAT.md section 7 lists, in that order:
//   1. header: size, magic, byte order, major version, header CRC, file_size == real size
//   2. sections in bounds, in order, aligned; metadata and directory CRCs
//   3. metadata: UTF-8 JSON with the required fields and types
//   4. directory entries: names, dtypes, shapes, sizes, offsets, order, overlaps
//   5. the tensor set and shapes against the model the metadata describes (section 6)
//   6. every tensor's CRC-32 (unless the caller opts out)
// Any failure throws ModelFileError naming the file, the field or tensor, expected vs found,
// and what to do. No input, however broken, is read out of bounds.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "awq_edge/json.h"
#include "awq_edge/mapped_file.h"
#include "awq_edge/tensor.h"

namespace awq_edge {

// "[ModelFile] <path>: <problem>"
class ModelFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The version this reader implements: it reads major 1, any minor.
constexpr uint16_t kFormatVersionMajor = 1;
constexpr uint16_t kFormatVersionMinor = 0;

// The 128-byte header (FORMAT.md section 2), decoded from little-endian.
struct FileHeader {
  uint8_t magic[8];            // "AWQEDGE\0"
  uint16_t version_major;      // == kFormatVersionMajor
  uint16_t version_minor;      // any
  uint32_t byte_order;         // 0x0A0B0C0D
  uint64_t file_size;          // == the real size
  uint64_t metadata_offset;    // 128
  uint64_t metadata_size;      // JSON bytes
  uint64_t directory_offset;   // align_up(128 + metadata_size, 8)
  uint64_t directory_size;     // 80 * tensor_count + names_size
  uint64_t data_offset;        // align_up(directory end, 16384)
  uint64_t data_size;          // file_size - data_offset
  uint32_t tensor_count;       // >= 1
  uint32_t tensor_alignment;   // power of two in 64..16384
  uint32_t metadata_crc32;
  uint32_t directory_crc32;
  uint8_t reserved[36];        // zero
  uint32_t header_crc32;       // CRC-32 of bytes 0..123
};

// One directory entry (FORMAT.md section 4), validated.
struct TensorInfo {
  std::string name;  // e.g. "layers.3.mlp.up.qweight"
  DType dtype;
  Shape shape;       // row-major
  uint64_t offset;   // absolute; a multiple of tensor_alignment, inside the data section
  uint64_t size;     // bytes = shape.numel() * dtype_size(dtype)
  uint32_t crc32;    // of the tensor's bytes
};

class ModelFile {
 public:
  // Opens and validates `path` (steps 1-6 above). With verify_checksums = false step 6 is
  // skipped, which saves reading every page of a large file at open.
  explicit ModelFile(const std::string& path, bool verify_checksums = true);
  ModelFile(const ModelFile&) = delete;  // index_by_name_ points into tensors_
  ModelFile& operator=(const ModelFile&) = delete;
  ModelFile(ModelFile&&) = default;
  ModelFile& operator=(ModelFile&&) = default;

  const std::string& path() const { return path_; }
  const FileHeader& header() const { return header_; }
  const std::string& metadata_json() const { return metadata_json_; }  // the raw metadata bytes
  const json::Value& metadata() const { return metadata_; }

  // Directory order (ascending offset).
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // nullptr when the file has no such tensor.
  const TensorInfo* find(std::string_view name) const;
  bool contains(std::string_view name) const { return find(name) != nullptr; }

  // Zero-copy views into the mapping, valid while this ModelFile is open.
  // tensor() throws ModelFileError for an unknown name or a closed file.
  TensorView tensor(std::string_view name) const;
  TensorView tensor(const TensorInfo& info) const;

  // The mapping itself, for owners that must outlive this object (Python arrays).
  std::shared_ptr<const MappedFile> mapping() const { return mapping_; }

  // Drops this object's hold on the mapping; it is unmapped once no one else holds it.
  void close() { mapping_.reset(); }
  bool is_open() const { return mapping_ != nullptr; }

 private:
  [[noreturn]] void fail(const std::string& problem) const;
  void read_header();          // step 1
  void check_sections();       // step 2
  void read_metadata();        // step 3
  void read_directory();       // step 4
  void check_tensor_set();     // step 5
  void verify_checksums();     // step 6

  std::string path_;
  std::shared_ptr<const MappedFile> mapping_;
  FileHeader header_{};
  std::string metadata_json_;
  json::Value metadata_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string_view, size_t> index_by_name_;  // views into tensors_[i].name
};

}  // namespace awq_edge
