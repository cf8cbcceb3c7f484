// model_file.cpp (bindings): ModelFile and ModelFileError for Python.
//
// tensor(name) returns a read-only numpy array that points into the memory map; the array
// holds a reference to the mapping, so it stays valid after close() or after the ModelFile
// is garbage-collected (the mapping goes away with the last array).
#include "awq_edge/model_file.h"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>

#include "bindings.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace awq_edge::bindings {

namespace {

// BF16 has no numpy dtype: it is served as its raw uint16 bits.
nb::dlpack::dtype numpy_dtype(DType dtype) {
  using Code = nb::dlpack::dtype_code;
  auto make = [](Code code, int bits) {
    return nb::dlpack::dtype{static_cast<uint8_t>(code), static_cast<uint8_t>(bits), 1};
  };
  switch (dtype) {
    case DType::F32: return make(Code::Float, 32);
    case DType::F16: return make(Code::Float, 16);
    case DType::BF16: return make(Code::UInt, 16);
    case DType::I8: return make(Code::Int, 8);
    case DType::U8: return make(Code::UInt, 8);
    case DType::I32: return make(Code::Int, 32);
    case DType::U32: return make(Code::UInt, 32);
  }
  return make(Code::UInt, 8);
}

nb::tuple shape_tuple(const Shape& shape) {
  nb::list dims;
  for (uint32_t axis = 0; axis < shape.ndim; ++axis) dims.append(shape[axis]);
  return nb::tuple(dims);
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t substitution = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      diagonal = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, substitution});
    }
  }
  return row[b.size()];
}

// "no tensor 'x' in f.awqe; close matches: 'a', 'b'" or "...; it has 49 tensors (see tensors())".
std::string unknown_tensor_message(const ModelFile& file, std::string_view name) {
  std::vector<std::pair<size_t, const std::string*>> candidates;
  const size_t limit = std::max<size_t>(2, name.size() / 4);
  for (const TensorInfo& info : file.tensors()) {
    const size_t distance = edit_distance(name, info.name);
    if (distance <= limit) candidates.emplace_back(distance, &info.name);
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const auto& a, const auto& b) { return a.first != b.first ? a.first < b.first : *a.second < *b.second; });
  std::string message = "no tensor '" + std::string(name) + "' in " + file.path();
  if (candidates.empty()) {
    return message + "; it has " + std::to_string(file.tensors().size()) + " tensors (see tensors())";
  }
  message += "; close matches:";
  for (size_t i = 0; i < std::min<size_t>(3, candidates.size()); ++i) {
    message += (i > 0 ? ", '" : " '") + *candidates[i].second + "'";
  }
  return message;
}

nb::object tensor_array(const ModelFile& file, std::string_view name) {
  const TensorInfo* info = file.find(name);
  if (info == nullptr) throw nb::key_error(unknown_tensor_message(file, name).c_str());
  const TensorView view = file.tensor(*info);  // throws ModelFileError once closed
  // The array owns a reference to the mapping, not to the ModelFile.
  auto* mapping = new std::shared_ptr<const MappedFile>(file.mapping());
  nb::capsule owner(mapping, [](void* p) noexcept { delete static_cast<std::shared_ptr<const MappedFile>*>(p); });
  size_t shape[kMaxDims];
  for (uint32_t axis = 0; axis < view.shape.ndim; ++axis) shape[axis] = static_cast<size_t>(view.shape[axis]);
  nb::ndarray<nb::numpy, nb::ro> array(view.data, view.shape.ndim, shape, owner, nullptr, numpy_dtype(view.dtype));
  return array.cast();
}

nb::dict header_dict(const FileHeader& h) {
  nb::dict header;
  header["magic"] = nb::bytes(reinterpret_cast<const char*>(h.magic), sizeof h.magic);
  header["version_major"] = h.version_major;
  header["version_minor"] = h.version_minor;
  header["byte_order"] = h.byte_order;
  header["file_size"] = h.file_size;
  header["metadata_offset"] = h.metadata_offset;
  header["metadata_size"] = h.metadata_size;
  header["directory_offset"] = h.directory_offset;
  header["directory_size"] = h.directory_size;
  header["data_offset"] = h.data_offset;
  header["data_size"] = h.data_size;
  header["tensor_count"] = h.tensor_count;
  header["tensor_alignment"] = h.tensor_alignment;
  header["metadata_crc32"] = h.metadata_crc32;
  header["directory_crc32"] = h.directory_crc32;
  header["reserved"] = nb::bytes(reinterpret_cast<const char*>(h.reserved), sizeof h.reserved);
  header["header_crc32"] = h.header_crc32;
  return header;
}

nb::list tensor_list(const ModelFile& file) {
  nb::list tensors;
  for (const TensorInfo& info : file.tensors()) {
    nb::dict entry;
    entry["name"] = info.name;
    entry["dtype"] = dtype_name(info.dtype);
    entry["shape"] = shape_tuple(info.shape);
    entry["offset"] = info.offset;
    entry["size"] = info.size;
    entry["crc32"] = info.crc32;
    tensors.append(entry);
  }
  return tensors;
}

}  // namespace

void bind_model_file(nb::module_& m) {
  nb::exception<ModelFileError>(m, "ModelFileError", PyExc_ValueError)
      .attr("__doc__") = "A .awqe file is missing, unreadable or breaks docs/FORMAT.md; the message says how.";

  nb::class_<ModelFile>(m, "ModelFile",
                        "ModelFile(path, verify_checksums=True): a validated, memory-mapped .awqe file.\n\n"
                        "Opening checks everything docs/FORMAT.md section 7 lists (tensor CRCs too unless\n"
                        "verify_checksums is False) and raises ModelFileError on the first problem.")
      .def(
          "__init__",
          [](ModelFile* self, const std::filesystem::path& path, bool verify_checksums) {
            new (self) ModelFile(path.string(), verify_checksums);
          },
          "path"_a, "verify_checksums"_a = true, nb::call_guard<nb::gil_scoped_release>())
      .def_prop_ro("path", &ModelFile::path)
      .def_prop_ro("version",
                   [](const ModelFile& f) { return nb::make_tuple(f.header().version_major, f.header().version_minor); },
                   "(major, minor) of the file's format version.")
      .def_prop_ro("header", [](const ModelFile& f) { return header_dict(f.header()); },
                   "The 128-byte header's fields (docs/FORMAT.md section 2).")
      .def_prop_ro("metadata_json", &ModelFile::metadata_json, "The metadata, as the JSON text stored in the file.")
      .def_prop_ro("closed", [](const ModelFile& f) { return !f.is_open(); })
      .def("tensors", &tensor_list,
           "Directory entries in file order: dicts with name, dtype ('F16', ...), shape, offset, size, crc32.")
      .def("tensor", &tensor_array, "name"_a,
           "Read-only, zero-copy numpy view of a tensor (BF16 as uint16); KeyError for an unknown name.")
      .def("__contains__", [](const ModelFile& f, std::string_view name) { return f.contains(name); })
      .def("__len__", [](const ModelFile& f) { return f.tensors().size(); })
      .def("close", &ModelFile::close,
           "Release the file's mapping; arrays from tensor() keep what they view valid.")
      .def("__enter__", [](nb::handle_t<ModelFile> self) { return nb::borrow<nb::object>(self); })
      .def("__exit__", [](ModelFile& f, nb::args) { f.close(); })
      .def("__repr__", [](const ModelFile& f) {
        return "<ModelFile '" + f.path() + "' v" + std::to_string(f.header().version_major) + "." +
               std::to_string(f.header().version_minor) + ", " + std::to_string(f.tensors().size()) + " tensors" +
               (f.is_open() ? "" : ", closed") + ">";
      });
}

}  // namespace awq_edge::bindings
