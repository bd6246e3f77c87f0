#include "safetensors.h"

#include <algorithm>
#include <limits>

#include "check.h"
#include "input_limits.h"
#include "json_reader.h"
#include "quote.h"
#include "utf8.h"

namespace slimrt {
namespace {

using Json = nlohmann::ordered_json;

struct Dtype {
  const char* name;
  int64_t itemsize;
};
constexpr Dtype kDtypes[] = {
    {"BOOL", 1}, {"U8", 1},      {"I8", 1},      {"U16", 2},     {"I16", 2}, {"F16", 2},
    {"BF16", 2}, {"U32", 4},     {"I32", 4},     {"F32", 4},     {"U64", 8}, {"I64", 8},
    {"F64", 8},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"F8_E8M0", 1},
};

SafetensorsTensor parse_entry(const std::string& path, const std::string& name, const Json& entry) {
  const std::string where = path + ": tensor " + quote(name);
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, entry.is_object(),
                  where << ": entry is not a JSON object");
  std::string missing;
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(key)) missing += (missing.empty() ? "" : ", ") + std::string(key);
  }
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, missing.empty(), where << ": entry lacks " << missing);
  const Json& dtype = entry["dtype"];
  const Json& shape = entry["shape"];
  const Json& offsets = entry["data_offsets"];

  SafetensorsTensor t;
  t.name = name;
  if (dtype.is_string()) {
    t.dtype = dtype.get<std::string>();
    t.itemsize = safetensors_itemsize(t.dtype);
  }
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, t.itemsize > 0,
                  where << ": unknown dtype " << json_repr(dtype));
  SLIMRT_CHECK_AS(
      ErrorCategory::kModelFile,
      shape.is_array() && std::all_of(shape.begin(), shape.end(), json_is_count),
      where << ": shape " << json_repr(shape) << " is not a list of non-negative integers");
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile,
                  offsets.is_array() && offsets.size() == 2 && json_is_count(offsets[0]) &&
                      json_is_count(offsets[1]) &&
                      offsets[0].get<uint64_t>() <= offsets[1].get<uint64_t>(),
                  where << ": data_offsets " << json_repr(offsets)
                        << " are not [begin, end] with begin <= end");
  t.begin = offsets[0].get<uint64_t>();
  t.end = offsets[1].get<uint64_t>();

  int64_t numel = 1;
  bool fits = true;
  for (const Json& dim : shape) {
    const uint64_t d = dim.get<uint64_t>();
    fits = fits && d <= uint64_t{std::numeric_limits<int64_t>::max()} &&
           !__builtin_mul_overflow(numel, static_cast<int64_t>(d), &numel);
    if (fits) t.shape.push_back(static_cast<int64_t>(d));
  }
  int64_t nbytes = 0;
  fits = fits && !__builtin_mul_overflow(numel, t.itemsize, &nbytes);
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, fits,
                  where << ": shape " << json_repr(shape) << " of " << t.dtype
                        << " is too large: its byte size overflows 64-bit integers");
  t.numel = numel;
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, t.end - t.begin == static_cast<uint64_t>(nbytes),
                  where << ": shape " << list_repr(t.shape) << " of " << t.dtype << " needs "
                        << nbytes << " bytes but data_offsets " << json_repr(offsets) << " span "
                        << t.end - t.begin);
  return t;
}

std::map<std::string, std::string> parse_metadata(const std::string& where, const Json& metadata) {
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, metadata.is_object(),
                  where << ": __metadata__ is not a JSON object");
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : metadata.items()) {
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, value.is_string(),
                    where << ": __metadata__ must map strings to strings; " << quote(key)
                          << " maps to " << json_python_type(value));
    out.emplace(key, value.get<std::string>());
  }
  return out;
}

// Tensors sorted by offset must tile the data section: no overlap, no gap, nothing after the
// last one (the official reader refuses all three).
void check_coverage(const std::string& where, const std::vector<SafetensorsTensor>& tensors,
                    uint64_t data_size) {
  uint64_t covered = 0;
  const SafetensorsTensor* previous = nullptr;
  for (const SafetensorsTensor& t : tensors) {
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, t.begin >= covered,
                    where << ": tensor " << quote(t.name) << " (bytes " << t.begin << ".." << t.end
                          << ") overlaps tensor " << quote(previous->name) << " (bytes "
                          << previous->begin << ".." << previous->end << ")");
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, t.begin == covered,
                    where << ": " << t.begin - covered << " unused bytes before tensor "
                          << quote(t.name) << " (bytes " << t.begin << ".." << t.end
                          << "): the tensors must cover the data section without gaps");
    covered = t.end;
    previous = &t;
  }
  SLIMRT_CHECK_AS(
      ErrorCategory::kModelFile, covered == data_size,
      where << ": " << data_size - covered << " trailing bytes after "
            << (previous ? "the last tensor's data" : "the header (it lists no tensors)")
            << ": the data section has " << data_size << " bytes, the tensors cover " << covered);
}

}  // namespace

int64_t safetensors_itemsize(const std::string& dtype) {
  for (const Dtype& d : kDtypes) {
    if (dtype == d.name) return d.itemsize;
  }
  return 0;
}

const SafetensorsTensor* SafetensorsHeader::find(const std::string& name) const {
  for (const SafetensorsTensor& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

SafetensorsHeader parse_safetensors(const uint8_t* data, size_t size, const std::string& where) {
  SLIMRT_CHECK_AS(
      ErrorCategory::kModelFile, size >= 8,
      where << ": truncated: file is " << size << " bytes, too short for the 8-byte header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | data[i];
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, header_len <= limits::kSafetensorsHeaderBytes,
                  where << ": header length " << header_len << " exceeds the "
                        << limits::kSafetensorsHeaderBytes
                        << "-byte limit (not a safetensors file?)");
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, header_len <= size - 8,
                  where << ": truncated: header length is " << header_len << " bytes but only "
                        << size - 8 << " bytes follow it");
  const char* text = reinterpret_cast<const char*>(data + 8);
  const Utf8Error bad = find_invalid_utf8(text, header_len);
  SLIMRT_CHECK_AS(
      ErrorCategory::kModelFile, bad.reason == nullptr,
      where << ": header is not UTF-8 text (" << bad.reason << " at byte " << bad.position << ")");
  const Json header = parse_json(text, header_len, where, "header");
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, header.is_object(),
                  where << ": header is not a JSON object");

  SafetensorsHeader result;
  result.data_offset = 8 + header_len;
  if (const auto it = header.find("__metadata__"); it != header.end()) {
    result.metadata = parse_metadata(where, *it);
  }
  uint64_t data_end = 0;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    result.tensors.push_back(parse_entry(where, name, entry));
    data_end = std::max(data_end, result.tensors.back().end);
  }
  const uint64_t data_size = size - result.data_offset;
  SLIMRT_CHECK_AS(
      ErrorCategory::kModelFile, data_end <= data_size,
      where << ": truncated: header says " << data_end << " bytes of data, file has " << data_size);
  std::stable_sort(result.tensors.begin(), result.tensors.end(),
                   [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
                     return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
                   });
  check_coverage(where, result.tensors, data_size);
  for (SafetensorsTensor& t : result.tensors) {
    t.begin += result.data_offset;
    t.end += result.data_offset;
  }
  return result;
}

}  // namespace slimrt
