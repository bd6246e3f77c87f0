// Reading untrusted JSON (a safetensors header, a DF11 description): strict parsing whose
// errors name the file, and Python-style rendering of values for messages, so the C++ and the
// Python halves of slimrt word a problem identically.
//
//   nlohmann::ordered_json header = parse_json(text, size, where, "header");
//   SLIMRT_CHECK_AS(kModelFile, ok, where << ": dtype " << json_repr(value) << " ...");
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>

namespace slimrt {

// Parses text[0, size); keeps objects' keys in file order. Throws kModelFile
// "WHERE: SUBJECT is not valid JSON: <reason> at byte N", "WHERE: SUBJECT lists 'KEY' twice"
// (nlohmann would keep the last value silently; Python's reader refuses duplicates too) or
// "WHERE: SUBJECT nests values more than 64 levels deep".
nlohmann::ordered_json parse_json(const char* text, size_t size, const std::string& where,
                                  const char* subject);

// A value as Python's repr() writes the equivalent Python object: 'text', [1, 2], None, True.
std::string json_repr(const nlohmann::ordered_json& value);
// The Python type json.loads would give the value: "int", "str", "list", "dict", "NoneType", ...
const char* json_python_type(const nlohmann::ordered_json& value);
// A non-negative integer (not a bool, not a float): what shapes and offsets are made of.
bool json_is_count(const nlohmann::ordered_json& value);

}  // namespace slimrt
