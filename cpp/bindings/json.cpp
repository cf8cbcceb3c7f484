// json.cpp (bindings): json_loads(text), the engine's strict JSON parser, so tests can hold it
// to Python's json module. Errors raise JSONError (a ValueError) with the byte position.
#include "awq_edge/json.h"

#include <nanobind/nanobind.h>
#include <nanobind/stl/string_view.h>

#include "bindings.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace awq_edge::bindings {

namespace {

nb::object to_python(const json::Value& value) {
  switch (value.type()) {
    case json::Value::Type::Null: return nb::none();
    case json::Value::Type::Bool: return nb::bool_(value.as_bool());
    case json::Value::Type::Int: return nb::int_(value.as_int());
    case json::Value::Type::Double: return nb::float_(value.as_double());
    case json::Value::Type::String: return nb::str(value.as_string().data(), value.as_string().size());
    case json::Value::Type::Array: {
      nb::list items;
      for (const json::Value& item : value.as_array()) items.append(to_python(item));
      return std::move(items);
    }
    case json::Value::Type::Object: break;
  }
  nb::dict members;
  for (const auto& [key, member] : value.as_object()) members[nb::str(key.data(), key.size())] = to_python(member);
  return std::move(members);
}

}  // namespace

void bind_json(nb::module_& m) {
  nb::exception<json::ParseError>(m, "JSONError", PyExc_ValueError);
  m.def(
      "json_loads", [](nb::bytes text) { return to_python(json::Value::parse({text.c_str(), text.size()})); },
      "text"_a, "Parse UTF-8 JSON bytes with the engine's strict RFC 8259 parser (integers stay exact).");
}

}  // namespace awq_edge::bindings
