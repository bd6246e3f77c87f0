#include "df11_container.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <unordered_map>

#include "check.h"
#include "json_reader.h"
#include "quote.h"

namespace slimrt {
namespace {

using Json = nlohmann::ordered_json;

constexpr const char* kMetadataPrefix = "slimrt.df11:";
constexpr const char* kArraySeparator = ".df11.";
// The arrays of FORMAT.md in its order, with their dtypes.
enum Array { kLengths, kBitstream, kIndex, kSignmant, kArrays };
constexpr const char* kSuffixes[kArrays] = {"lengths", "bitstream", "index", "signmant"};
constexpr const char* kDtypes[kArrays] = {"U8", "U32", "U32", "U8"};

using Parts = std::array<const SafetensorsTensor*, kArrays>;

int suffix_index(const std::string& suffix) {
  for (int a = 0; a < kArrays; ++a) {
    if (suffix == kSuffixes[a]) return a;
  }
  return -1;
}

const Json* member(const Json& object, const char* key) {
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

std::string repr(const Json* value) { return value ? json_repr(*value) : "None"; }

bool is_int(const Json* value) { return value && value->is_number_integer(); }

struct Description {
  std::vector<int64_t> shape;
  int64_t numel = 1;
  uint32_t crc32 = 0;
};

Description parse_description(const std::string& where, const std::string& text) {
  const Json d = parse_json(text.data(), text.size(), where, "DF11 description");
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, d.is_object(),
                  where << ": DF11 description is not a JSON object");
  const Json* format = member(d, "format");
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, format && *format == "slimrt-df11",
                  where << ": unknown format " << repr(format) << " (expected 'slimrt-df11')");
  const Json* version = member(d, "version");
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, is_int(version),
                  where << ": DF11 version " << repr(version) << " is not an integer");
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, *version == df11::kVersion,
                  where << ": DF11 version " << repr(version)
                        << " is not supported (this slimrt reads version " << df11::kVersion
                        << "); upgrade slimrt");
  const Json* dtype = member(d, "dtype");
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, dtype && *dtype == "bfloat16",
                  where << ": DF11 dtype " << repr(dtype) << " is not supported (only 'bfloat16')");
  for (const auto& [key, expected] : {std::pair<const char*, int>{"lanes", df11::kLanes},
                                      {"lane_elements", df11::kLaneElements}}) {
    const Json* value = member(d, key);
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, is_int(value) && *value == expected,
                    where << ": DF11 layout " << key << "=" << repr(value) << ", this reader knows "
                          << key << "=" << expected);
  }
  const Json* shape = member(d, "shape");
  SLIMRT_CHECK_AS(
      ErrorCategory::kModelFile,
      shape && shape->is_array() && std::all_of(shape->begin(), shape->end(), json_is_count),
      where << ": DF11 shape " << repr(shape) << " is not a list of non-negative integers");
  const Json* crc32 = member(d, "crc32");
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile,
                  is_int(crc32) && json_is_count(*crc32) && crc32->get<uint64_t>() <= UINT32_MAX,
                  where << ": DF11 crc32 " << repr(crc32) << " is not a 32-bit unsigned integer");
  Description out;
  out.crc32 = static_cast<uint32_t>(crc32->get<uint64_t>());
  bool fits = true;
  for (const Json& dim : *shape) {
    const uint64_t n = dim.get<uint64_t>();
    fits = fits && n <= uint64_t{INT64_MAX} &&
           !__builtin_mul_overflow(out.numel, static_cast<int64_t>(n), &out.numel);
    out.shape.push_back(static_cast<int64_t>(n));
  }
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, fits,
                  where << ": DF11 shape " << repr(shape)
                        << " is too large: its element count overflows 64-bit integers");
  return out;
}

Df11Entry assemble(const std::string& file, const std::string& name, const std::string& text,
                   const Parts& parts, const uint8_t* data) {
  const std::string where = file + ": tensor " + quote(name);
  const Description d = parse_description(where, text);
  std::string missing;
  for (int a = 0; a < kArrays; ++a) {
    if (parts[a] == nullptr) {
      missing += (missing.empty() ? "" : ", ") + quote(name + kArraySeparator + kSuffixes[a]);
    }
  }
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, missing.empty(),
                  where << ": missing DF11 array " << missing);
  for (int a = 0; a < kArrays; ++a) {
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, parts[a]->dtype == kDtypes[a],
                    where << ": DF11 array " << quote(parts[a]->name) << " is " << parts[a]->dtype
                          << ", expected " << kDtypes[a]);
  }
  Df11Entry entry;
  entry.name = name;
  entry.shape = d.shape;
  entry.crc32 = d.crc32;
  Df11View& view = entry.view;
  view.numel = d.numel;
  const std::vector<int64_t> expected[kArrays] = {
      {df11::kSymbols}, {}, {view.groups(), df11::kIndexWords}, {view.numel}};
  for (int a = 0; a < kArrays; ++a) {
    const std::vector<int64_t>& shape = parts[a]->shape;
    if (a == kBitstream) {
      SLIMRT_CHECK_AS(ErrorCategory::kModelFile, shape.size() == 1,
                      where << ": DF11 array " << kSuffixes[a] << " has shape " << list_repr(shape)
                            << ", expected 1-D");
    } else {
      SLIMRT_CHECK_AS(ErrorCategory::kModelFile, shape == expected[a],
                      where << ": DF11 array " << kSuffixes[a] << " has shape " << list_repr(shape)
                            << ", expected " << list_repr(expected[a]) << " for shape "
                            << list_repr(d.shape));
    }
  }
  // The uint32 arrays are read in place: misaligned ones would be undefined behaviour to load.
  for (const int a : {kBitstream, kIndex}) {
    SLIMRT_CHECK_AS(
        ErrorCategory::kModelFile, reinterpret_cast<uintptr_t>(data + parts[a]->begin) % 4 == 0,
        where << ": DF11 array " << quote(parts[a]->name) << " starts at byte " << parts[a]->begin
              << ", which is not 4-byte aligned (slimrt's writer aligns it; "
                 "rewrite the file with slimrt)");
  }
  view.lengths = data + parts[kLengths]->begin;
  view.bitstream = reinterpret_cast<const uint32_t*>(data + parts[kBitstream]->begin);
  view.bitstream_words = parts[kBitstream]->numel;
  view.index = reinterpret_cast<const uint32_t*>(data + parts[kIndex]->begin);
  view.signmant = data + parts[kSignmant]->begin;
  try {
    df11_validate(view);
  } catch (const Error& e) {
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, false, where << ": " << e.message());
  }
  return entry;
}

}  // namespace

std::vector<Df11Entry> read_df11_tensors(const SafetensorsHeader& header, const uint8_t* data,
                                         const std::string& where) {
  const std::string prefix = kMetadataPrefix;
  std::map<std::string, const std::string*> descriptions;
  for (const auto& [key, value] : header.metadata) {
    if (key.compare(0, prefix.size(), prefix) == 0) {
      descriptions.emplace(key.substr(prefix.size()), &value);
    }
  }
  if (descriptions.empty()) return {};

  std::unordered_map<std::string, Parts> parts;
  std::unordered_map<std::string, const SafetensorsTensor*> plain;
  std::vector<std::string> order;  // each DF11 name where its first array is stored
  for (const SafetensorsTensor& t : header.tensors) {
    const size_t sep = t.name.rfind(kArraySeparator);
    const std::string base = sep == std::string::npos ? t.name : t.name.substr(0, sep);
    const std::string suffix =
        sep == std::string::npos ? "" : t.name.substr(sep + std::string(kArraySeparator).size());
    const int array = suffix_index(suffix);
    if (sep != std::string::npos && descriptions.count(base)) {
      SLIMRT_CHECK_AS(ErrorCategory::kModelFile, array >= 0,
                      where << ": tensor " << quote(base) << ": unexpected DF11 array "
                            << quote(t.name) << " (version " << df11::kVersion
                            << " has lengths, bitstream, index, signmant)");
      auto [it, first] = parts.try_emplace(base, Parts{});
      if (first) order.push_back(base);
      it->second[array] = &t;
      continue;
    }
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, sep == std::string::npos || array < 0,
                    where << ": DF11 array " << quote(t.name) << " has no description (no "
                          << "__metadata__ entry " << quote(prefix + base) << ")");
    plain.emplace(t.name, &t);
    if (descriptions.count(t.name)) order.push_back(t.name);
  }
  for (const auto& [name, text] : descriptions) {
    if (!parts.count(name) && !plain.count(name)) order.push_back(name);
  }

  std::vector<Df11Entry> entries;
  std::set<std::string> done;
  for (const std::string& name : order) {
    if (!done.insert(name).second) continue;
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, !plain.count(name),
                    where << ": tensor " << quote(name) << " is stored both plain and as DF11");
    entries.push_back(assemble(where, name, *descriptions.at(name), parts[name], data));
  }
  return entries;
}

}  // namespace slimrt
