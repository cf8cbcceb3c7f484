// model_file.cpp: opening and validating a .awqe file (see awq_edge/model_file.h).
//
// Every check of docs/FORMAT.md section 7 runs in the order listed there; the numpy reader
// (python/awq_edge/awqe/reader.py) runs the same checks and tests hold the two to each other.
// All arithmetic on untrusted offsets and sizes is overflow-checked before anything is read.
#include "awq_edge/model_file.h"

#include <cstdio>
#include <cstring>
#include <iterator>
#include <system_error>

#include "awq_edge/schemes.h"
#include "crc32.h"

namespace awq_edge {

namespace {

constexpr uint64_t kHeaderSize = 128;
constexpr uint64_t kHeaderCrcOffset = 124;  // the CRC covers bytes [0, 124)
constexpr uint64_t kMetadataOffset = 128;
constexpr uint64_t kDirectoryAlignment = 8;
constexpr uint64_t kDataAlignment = 16384;  // a page for 4 KiB and 16 KiB page sizes
constexpr uint64_t kMinTensorAlignment = 64;
constexpr uint64_t kEntrySize = 80;
constexpr uint32_t kMaxNameLength = 1024;
constexpr uint32_t kByteOrderMark = 0x0A0B0C0D;
constexpr uint32_t kByteOrderSwapped = 0x0D0C0B0A;
constexpr uint8_t kMagic[8] = {'A', 'W', 'Q', 'E', 'D', 'G', 'E', '\0'};
constexpr size_t kMinTensorsPerLayer = 9;  // 7 modules + 2 norms, each at least one tensor

constexpr const char* kReexport = "re-export the model with awq-edge quantize";
constexpr const char* kCorrupt = "the file is corrupt: copy it again or re-export the model with awq-edge quantize";

// Little-endian loads; `p` must have the bytes (callers check bounds first).
uint16_t load_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint32_t load_u32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
uint64_t load_u64(const uint8_t* p) { return uint64_t{load_u32(p)} | uint64_t{load_u32(p + 4)} << 32; }

uint64_t align_up(uint64_t value, uint64_t alignment) { return (value + alignment - 1) / alignment * alignment; }

std::string hex32(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08X", value);
  return text;
}

std::string hex_bytes(const uint8_t* bytes, size_t count) {
  std::string text;
  for (size_t i = 0; i < count; ++i) {
    char byte[4];
    std::snprintf(byte, sizeof byte, "%02X", bytes[i]);
    text += (i > 0 ? " " : "") + std::string(byte);
  }
  return text;
}

std::string range(uint64_t offset, uint64_t size) {
  return "[" + std::to_string(offset) + ", +" + std::to_string(size) + ")";
}

// Step 3: the fields a reader relies on and their JSON types (as reader.py's REQUIRED_*).
enum class FieldType { String, Integer, Number, Boolean, Object };

struct RequiredField {
  const char* key;
  FieldType type;
};

constexpr RequiredField kRequiredMetadata[] = {
    {"format", FieldType::String},     {"architecture", FieldType::String}, {"config", FieldType::Object},
    {"tokenizer", FieldType::Object},  {"quantization", FieldType::Object}, {"provenance", FieldType::Object},
};
constexpr RequiredField kRequiredConfig[] = {
    {"vocab_size", FieldType::Integer},         {"hidden_size", FieldType::Integer},
    {"intermediate_size", FieldType::Integer},  {"num_hidden_layers", FieldType::Integer},
    {"num_attention_heads", FieldType::Integer}, {"num_key_value_heads", FieldType::Integer},
    {"head_dim", FieldType::Integer},           {"max_position_embeddings", FieldType::Integer},
    {"rms_norm_eps", FieldType::Number},        {"rope", FieldType::Object},
    {"tie_word_embeddings", FieldType::Boolean}, {"attention_bias", FieldType::Boolean},
    {"attention_out_bias", FieldType::Boolean}, {"mlp_bias", FieldType::Boolean},
};
constexpr RequiredField kRequiredQuantization[] = {
    {"method", FieldType::String},    {"bits", FieldType::Integer},     {"group_size", FieldType::Integer},
    {"zero_point", FieldType::Boolean}, {"embedding", FieldType::String}, {"lm_head", FieldType::String},
};

bool has_type(const json::Value& value, FieldType type) {
  switch (type) {
    case FieldType::String: return value.is_string();
    case FieldType::Integer: return value.is_int();
    case FieldType::Number: return value.is_number();
    case FieldType::Boolean: return value.is_bool();
    case FieldType::Object: return value.is_object();
  }
  return false;
}

const char* type_name(FieldType type) {
  switch (type) {
    case FieldType::String: return "a string";
    case FieldType::Integer: return "an integer";
    case FieldType::Number: return "a number";
    case FieldType::Boolean: return "a boolean";
    case FieldType::Object: return "an object";
  }
  return "?";
}

}  // namespace

ModelFile::ModelFile(const std::string& path, bool verify_checksums) : path_(path) {
  try {
    mapping_ = MappedFile::open(path);
  } catch (const std::system_error& error) {
    fail(error.what());
  }
  read_header();
  check_sections();
  read_metadata();
  read_directory();
  check_tensor_set();
  if (verify_checksums) this->verify_checksums();
}

void ModelFile::fail(const std::string& problem) const {
  throw ModelFileError("[ModelFile] " + path_ + ": " + problem);
}

// Step 1: size, magic, byte order, version, header CRC, file_size.
void ModelFile::read_header() {
  const uint64_t real_size = mapping_->size();
  if (real_size < kHeaderSize) {
    fail("file is " + std::to_string(real_size) + " bytes, shorter than the 128-byte header (truncated?); " +
         kCorrupt);
  }
  const uint8_t* p = mapping_->data();
  FileHeader& h = header_;
  std::memcpy(h.magic, p, 8);
  h.version_major = load_u16(p + 8);
  h.version_minor = load_u16(p + 10);
  h.byte_order = load_u32(p + 12);
  h.file_size = load_u64(p + 16);
  h.metadata_offset = load_u64(p + 24);
  h.metadata_size = load_u64(p + 32);
  h.directory_offset = load_u64(p + 40);
  h.directory_size = load_u64(p + 48);
  h.data_offset = load_u64(p + 56);
  h.data_size = load_u64(p + 64);
  h.tensor_count = load_u32(p + 72);
  h.tensor_alignment = load_u32(p + 76);
  h.metadata_crc32 = load_u32(p + 80);
  h.directory_crc32 = load_u32(p + 84);
  std::memcpy(h.reserved, p + 88, 36);
  h.header_crc32 = load_u32(p + 124);

  if (std::memcmp(h.magic, kMagic, 8) != 0) {
    static constexpr uint8_t kZero[8] = {};
    if (std::memcmp(h.magic, kZero, 8) == 0) {
      fail(std::string("magic is zero: an unfinished or interrupted export (the writer sets the magic last); ") +
           kReexport);
    }
    fail("bad magic " + hex_bytes(h.magic, 8) + ", expected " + hex_bytes(kMagic, 8) +
         " (\"AWQEDGE\\0\"): not an .awqe file");
  }
  if (h.byte_order == kByteOrderSwapped) {
    fail("byte_order reads " + hex32(h.byte_order) + ", expected " + hex32(kByteOrderMark) +
         ": the file was written big-endian, but .awqe files are little-endian; " + kReexport);
  }
  if (h.byte_order != kByteOrderMark) {
    fail("byte_order is " + hex32(h.byte_order) + ", expected " + hex32(kByteOrderMark) + "; " + kCorrupt);
  }
  const std::string file_version = std::to_string(h.version_major) + "." + std::to_string(h.version_minor);
  const std::string reader_version = std::to_string(kFormatVersionMajor) + ".x";
  if (h.version_major > kFormatVersionMajor) {
    fail("file format " + file_version + " is newer than this reader (" + reader_version + "); upgrade awq_edge");
  }
  if (h.version_major < kFormatVersionMajor) {
    fail("file format " + file_version + " is older than this reader (" + reader_version + ") and not supported; " +
         kReexport);
  }
  const uint32_t header_crc = crc32(p, kHeaderCrcOffset);
  if (header_crc != h.header_crc32) {
    fail("header checksum mismatch: header_crc32 is " + hex32(h.header_crc32) + ", bytes 0..123 give " +
         hex32(header_crc) + "; " + kCorrupt);
  }
  if (h.file_size != real_size) {
    fail("header says file_size is " + std::to_string(h.file_size) + " bytes, the file has " +
         std::to_string(real_size) + " (" + (real_size < h.file_size ? "truncated" : "extended") +
         "; an interrupted copy?); " + kCorrupt);
  }
}

// Step 2: sections in bounds, in order, aligned; metadata and directory CRCs.
void ModelFile::check_sections() {
  const FileHeader& h = header_;
  const uint64_t size = h.file_size;  // == the real size (step 1)
  if (h.metadata_offset != kMetadataOffset) {
    fail("metadata_offset is " + std::to_string(h.metadata_offset) + ", expected 128");
  }
  if (h.metadata_size > size - kMetadataOffset) {
    fail("metadata " + range(kMetadataOffset, h.metadata_size) + " runs past the end of the file (" +
         std::to_string(size) + " bytes)");
  }
  const uint64_t directory_offset = align_up(kMetadataOffset + h.metadata_size, kDirectoryAlignment);
  if (h.directory_offset != directory_offset) {
    fail("directory_offset is " + std::to_string(h.directory_offset) + ", expected " +
         std::to_string(directory_offset) + " (the first multiple of 8 after the metadata)");
  }
  if (h.tensor_count == 0) fail("tensor_count is 0; a model file holds at least one tensor");
  if (h.directory_size < kEntrySize * h.tensor_count) {
    fail("directory_size is " + std::to_string(h.directory_size) + " bytes, too small for tensor_count " +
         std::to_string(h.tensor_count) + " x 80-byte entries");
  }
  if (h.directory_offset > size || h.directory_size > size - h.directory_offset) {
    fail("directory " + range(h.directory_offset, h.directory_size) + " runs past the end of the file (" +
         std::to_string(size) + " bytes)");
  }
  const uint64_t data_offset = align_up(h.directory_offset + h.directory_size, kDataAlignment);
  if (h.data_offset != data_offset) {
    fail("data_offset is " + std::to_string(h.data_offset) + ", expected " + std::to_string(data_offset) +
         " (the first multiple of 16384 after the directory)");
  }
  if (h.data_offset > size) {
    fail("data section starts at " + std::to_string(h.data_offset) + ", past the end of the file (" +
         std::to_string(size) + " bytes)");
  }
  if (h.data_size != size - h.data_offset) {
    fail("data_size is " + std::to_string(h.data_size) + ", expected file_size - data_offset = " +
         std::to_string(size - h.data_offset));
  }
  const uint32_t alignment = h.tensor_alignment;
  if (alignment < kMinTensorAlignment || alignment > kDataAlignment || (alignment & (alignment - 1)) != 0) {
    fail("tensor_alignment is " + std::to_string(alignment) + ", expected a power of two in 64..16384");
  }
  const uint8_t* base = mapping_->data();
  const uint32_t metadata_crc = crc32(base + h.metadata_offset, h.metadata_size);
  if (metadata_crc != h.metadata_crc32) {
    fail("metadata checksum mismatch: metadata_crc32 is " + hex32(h.metadata_crc32) + ", the " +
         std::to_string(h.metadata_size) + " metadata bytes give " + hex32(metadata_crc) + "; " + kCorrupt);
  }
  const uint32_t directory_crc = crc32(base + h.directory_offset, h.directory_size);
  if (directory_crc != h.directory_crc32) {
    fail("directory checksum mismatch: directory_crc32 is " + hex32(h.directory_crc32) + ", the " +
         std::to_string(h.directory_size) + " directory bytes give " + hex32(directory_crc) + "; " + kCorrupt);
  }
}

// Step 3: UTF-8 JSON with the required fields and types.
void ModelFile::read_metadata() {
  const auto* text = reinterpret_cast<const char*>(mapping_->data() + header_.metadata_offset);
  metadata_json_.assign(text, header_.metadata_size);
  try {
    metadata_ = json::Value::parse(metadata_json_);
  } catch (const json::ParseError& error) {
    fail(std::string("metadata is not valid UTF-8 JSON: ") + error.what() + "; " + kReexport);
  }
  struct Section {
    const char* where;
    const json::Value* object;
    const RequiredField* fields;
    size_t count;
  };
  const Section sections[] = {
      {"metadata", &metadata_, kRequiredMetadata, std::size(kRequiredMetadata)},
      {"metadata.config", metadata_.find("config"), kRequiredConfig, std::size(kRequiredConfig)},
      {"metadata.quantization", metadata_.find("quantization"), kRequiredQuantization,
       std::size(kRequiredQuantization)},
  };
  for (const Section& section : sections) {
    if (!section.object->is_object()) {  // the first section checked that config etc. exist
      fail(std::string(section.where) + " must be a JSON object, found " + section.object->type_name());
    }
    for (size_t i = 0; i < section.count; ++i) {
      const RequiredField& field = section.fields[i];
      const json::Value* value = section.object->find(field.key);
      if (value == nullptr) {
        fail(std::string(section.where) + ": required field '" + field.key + "' is missing; " + kReexport);
      }
      if (!has_type(*value, field.type)) {
        fail(std::string(section.where) + "." + field.key + ": expected " + type_name(field.type) + ", found " +
             value->type_name());
      }
    }
  }
  const std::string& format = metadata_.find("format")->as_string();
  if (format != "awqe") fail("metadata.format is '" + format + "', expected 'awqe'");
}

// Step 4: every directory entry.
void ModelFile::read_directory() {
  const FileHeader& h = header_;
  const uint8_t* directory = mapping_->data() + h.directory_offset;
  const uint8_t* names = directory + kEntrySize * h.tensor_count;
  const uint64_t names_size = h.directory_size - kEntrySize * h.tensor_count;
  tensors_.reserve(h.tensor_count);
  index_by_name_.reserve(h.tensor_count);
  for (uint32_t index = 0; index < h.tensor_count; ++index) {
    const uint8_t* entry = directory + kEntrySize * index;
    const uint32_t name_offset = load_u32(entry);
    const uint32_t name_length = load_u32(entry + 4);
    const uint32_t dtype_code = load_u32(entry + 8);
    const uint32_t ndim = load_u32(entry + 12);
    const uint64_t offset = load_u64(entry + 48);
    const uint64_t size = load_u64(entry + 56);
    const std::string where_entry = "directory entry " + std::to_string(index);

    if (name_length < 1 || name_length > kMaxNameLength || name_offset > names_size ||
        name_length > names_size - name_offset) {
      fail(where_entry + ": name " + range(name_offset, name_length) + " lies outside the " +
           std::to_string(names_size) + "-byte names area (names are 1..1024 bytes)");
    }
    std::string name(reinterpret_cast<const char*>(names + name_offset), name_length);
    if (!json::is_valid_utf8(name) || name.find('\0') != std::string::npos) {
      fail(where_entry + ": name is not UTF-8 without NUL bytes");
    }
    const std::string where = "tensor '" + name + "'";
    if (index_by_name_.count(name) != 0) fail(where + " appears twice in the directory");

    const auto dtype = dtype_from_code(dtype_code);
    if (!dtype) {
      fail(where + ": unknown dtype code " + std::to_string(dtype_code) +
           " (this reader knows 0..6: F32 F16 BF16 I8 U8 I32 U32); " + kReexport);
    }
    if (ndim < 1 || ndim > kMaxDims) fail(where + ": ndim is " + std::to_string(ndim) + ", expected 1..4");
    Shape shape;
    shape.ndim = ndim;
    uint64_t expected_size = dtype_size(*dtype);
    bool overflow = false;
    for (uint32_t axis = 0; axis < kMaxDims; ++axis) {
      const uint64_t dim = load_u64(entry + 16 + 8 * axis);
      if (axis < ndim && dim == 0) fail(where + ": shape[" + std::to_string(axis) + "] is 0, expected >= 1");
      if (axis >= ndim && dim != 0) {
        fail(where + ": unused shape[" + std::to_string(axis) + "] is " + std::to_string(dim) + ", expected 0");
      }
      shape.dims[axis] = dim;
      if (axis < ndim) overflow = overflow || __builtin_mul_overflow(expected_size, dim, &expected_size);
    }
    if (overflow) fail(where + ": " + dtype_name(*dtype) + " " + shape.to_string() + " does not fit in 64 bits");
    if (size != expected_size) {
      fail(where + ": size is " + std::to_string(size) + " bytes, but " + dtype_name(*dtype) + " " +
           shape.to_string() + " needs " + std::to_string(expected_size));
    }
    if (offset % h.tensor_alignment != 0) {
      fail(where + ": offset " + std::to_string(offset) + " is not a multiple of tensor_alignment (" +
           std::to_string(h.tensor_alignment) + ")");
    }
    if (offset < h.data_offset) {
      fail(where + ": offset " + std::to_string(offset) + " lies before the data section (which starts at " +
           std::to_string(h.data_offset) + ")");
    }
    if (!tensors_.empty()) {
      const TensorInfo& previous = tensors_.back();
      if (offset < previous.offset) {
        fail(where + ": offset " + std::to_string(offset) + " is below the previous entry's (" +
             std::to_string(previous.offset) + "); entries must be sorted by offset");
      }
      if (offset < previous.offset + previous.size) {
        fail(where + ": bytes " + range(offset, size) + " overlap tensor '" + previous.name + "' " +
             range(previous.offset, previous.size));
      }
    }
    if (offset > h.file_size || size > h.file_size - offset) {
      fail(where + ": bytes " + range(offset, size) + " run past the end of the file (" +
           std::to_string(h.file_size) + " bytes)");
    }
    tensors_.push_back({std::move(name), *dtype, shape, offset, size, load_u32(entry + 64)});
    index_by_name_.emplace(tensors_.back().name, index);  // reserve() above: no reallocation
  }
}

// Step 5: exactly the tensors section 6 lists for this metadata, with their dtypes and shapes.
void ModelFile::check_tensor_set() {
  // Refuse an absurd layer count before listing billions of expected tensor names.
  const int64_t layers = metadata_.find("config")->find("num_hidden_layers")->as_int();
  if (layers > 0 && static_cast<uint64_t>(layers) > tensors_.size() / kMinTensorsPerLayer) {
    fail("metadata.config.num_hidden_layers is " + std::to_string(layers) + ", but the file holds only " +
         std::to_string(tensors_.size()) + " tensors (each layer has at least 9); " + kReexport);
  }
  std::vector<TensorSpec> expected;
  try {
    expected = expected_tensors(metadata_);
  } catch (const std::exception& error) {  // std::invalid_argument, json::TypeError
    fail(error.what());
  }
  size_t missing = 0;
  const TensorSpec* first_missing = nullptr;
  std::unordered_map<std::string_view, const TensorSpec*> expected_by_name;
  for (const TensorSpec& spec : expected) {
    expected_by_name.emplace(spec.name, &spec);
    if (!contains(spec.name) && missing++ == 0) first_missing = &spec;
  }
  if (first_missing != nullptr) {
    fail("missing tensor '" + first_missing->name + "' (expected " + dtype_name(first_missing->dtype) + " " +
         first_missing->shape.to_string() + "; " + std::to_string(missing) + " missing in all); " + kReexport);
  }
  size_t extra = 0;
  const TensorInfo* first_extra = nullptr;
  for (const TensorInfo& info : tensors_) {
    if (expected_by_name.count(info.name) == 0 && extra++ == 0) first_extra = &info;
  }
  if (first_extra != nullptr) {
    fail("unexpected tensor '" + first_extra->name + "' (" + std::to_string(extra) +
         " not in the model's tensor set); " + kReexport);
  }
  for (const TensorSpec& spec : expected) {
    const TensorInfo& found = *find(spec.name);
    if (found.dtype != spec.dtype || found.shape != spec.shape) {
      fail("tensor '" + spec.name + "': expected " + dtype_name(spec.dtype) + " " + spec.shape.to_string() +
           ", found " + dtype_name(found.dtype) + " " + found.shape.to_string() + "; " + kReexport);
    }
  }
}

// Step 6: each tensor's bytes against its directory CRC.
void ModelFile::verify_checksums() {
  for (const TensorInfo& info : tensors_) {
    const uint32_t crc = crc32(mapping_->data() + info.offset, info.size);
    if (crc != info.crc32) {
      fail("tensor '" + info.name + "': checksum mismatch (directory says " + hex32(info.crc32) + ", data gives " +
           hex32(crc) + "); " + kCorrupt);
    }
  }
}

const TensorInfo* ModelFile::find(std::string_view name) const {
  const auto it = index_by_name_.find(name);
  return it == index_by_name_.end() ? nullptr : &tensors_[it->second];
}

TensorView ModelFile::tensor(std::string_view name) const {
  const TensorInfo* info = find(name);
  if (info == nullptr) {
    fail("no tensor '" + std::string(name) + "' (the file has " + std::to_string(tensors_.size()) + " tensors)");
  }
  return tensor(*info);
}

TensorView ModelFile::tensor(const TensorInfo& info) const {
  if (!is_open()) fail("the file is closed");
  return {mapping_->data() + info.offset, info.dtype, info.shape, info.size, mapping_.get()};
}

}  // namespace awq_edge
