#include "gguf.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <limits>
#include <numeric>
#include <unordered_set>

#include "check.h"
#include "input_limits.h"
#include "quote.h"
#include "utf8.h"

namespace slimrt {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS
// The fewest bytes one tensor info (name length, n_dims, one dimension, type, offset) or one
// key-value pair (name length, type, a 1-byte value) can take: what counts are checked against.
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;
constexpr uint64_t kMinKeyValueBytes = 8 + 4 + 1;

// Indexed by ggml type id; ids llama.cpp retired (4, 5, 31-33, 36-38) have no name.
constexpr GgmlTypeInfo kGgmlTypes[] = {
    {"F32", 1, 4},        {"F16", 1, 2},       {"Q4_0", 32, 18},     {"Q4_1", 32, 20},
    {nullptr, 0, 0},      {nullptr, 0, 0},     {"Q5_0", 32, 22},     {"Q5_1", 32, 24},
    {"Q8_0", 32, 34},     {"Q8_1", 32, 40},    {"Q2_K", 256, 84},    {"Q3_K", 256, 110},
    {"Q4_K", 256, 144},   {"Q5_K", 256, 176},  {"Q6_K", 256, 210},   {"Q8_K", 256, 292},
    {"IQ2_XXS", 256, 66}, {"IQ2_XS", 256, 74}, {"IQ3_XXS", 256, 98}, {"IQ1_S", 256, 50},
    {"IQ4_NL", 32, 18},   {"IQ3_S", 256, 110}, {"IQ2_S", 256, 82},   {"IQ4_XS", 256, 136},
    {"I8", 1, 1},         {"I16", 1, 2},       {"I32", 1, 4},        {"I64", 1, 8},
    {"F64", 1, 8},        {"IQ1_M", 256, 56},  {"BF16", 1, 2},       {nullptr, 0, 0},
    {nullptr, 0, 0},      {nullptr, 0, 0},     {"TQ1_0", 256, 54},   {"TQ2_0", 256, 66},
    {nullptr, 0, 0},      {nullptr, 0, 0},     {nullptr, 0, 0},      {"MXFP4", 32, 17},
    {"NVFP4", 64, 36},    {"Q1_0", 128, 18},
};

constexpr const char* kValueTypeNames[] = {
    "UINT8", "INT8",   "UINT16", "INT16",  "UINT32", "INT32",   "FLOAT32",
    "BOOL",  "STRING", "ARRAY",  "UINT64", "INT64",  "FLOAT64",
};

// Names for ids no table knows, from a small ring so that a few can live in one message.
const char* unknown_name(uint32_t type) {
  thread_local char names[8][24];
  thread_local int next = 0;
  char* name = names[next++ % 8];
  std::snprintf(name, sizeof names[0], "type %u", type);
  return name;
}

// Bytes of a scalar value of this type; 0 for STRING, ARRAY and unknown types.
uint64_t scalar_bytes(uint32_t type) {
  static constexpr uint8_t kBytes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
  return type < sizeof kBytes ? kBytes[type] : 0;
}

// The fewest bytes an array element of this type takes (a string: its length; an array: its
// element type and length); 0 for unknown types.
uint64_t min_element_bytes(uint32_t type) {
  if (type == gguf_type::kString) return 8;
  if (type == gguf_type::kArray) return 4 + 8;
  return scalar_bytes(type);
}

// Reads little-endian fields from the file; every read is checked against the bytes left.
// `what` callables name the field for the message and run only when a check fails.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& where)
      : data_(data), size_(size), where_(where) {}

  size_t position() const { return pos_; }
  const std::string& where() const { return where_; }

  template <class What>
  const uint8_t* take(uint64_t n, const What& what) {
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, n <= size_ - pos_,
                    where_ << ": truncated at byte " << pos_ << ": " << what() << " needs " << n
                           << " bytes, the file has " << size_);
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }

  template <class T, class What>
  T read(const What& what) {
    T value;
    std::memcpy(&value, take(sizeof(T), what), sizeof(T));
    return value;
  }

  // A string: uint64 length, then the bytes; a view into the file.
  template <class What>
  std::string_view read_string(const What& what) {
    const uint64_t length = read<uint64_t>([&] { return "the length of " + what(); });
    return {reinterpret_cast<const char*>(take(length, what)), static_cast<size_t>(length)};
  }

  // Checks that `count` items of at least `min_bytes` each can be in the rest of the file,
  // before anything is reserved for them; `what` says "<count> <items>".
  template <class What>
  void check_count(uint64_t count, uint64_t min_bytes, const What& what) {
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, count <= (size_ - pos_) / min_bytes,
                    where_ << ": truncated at byte " << pos_ << ": " << what() << " need at least "
                           << min_bytes << " bytes each, the file has " << size_);
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& where_;
};

void check_utf8(const Cursor& cursor, std::string_view text, const std::string& what) {
  const Utf8Error bad = find_invalid_utf8(text.data(), text.size());
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, bad.reason == nullptr,
                  cursor.where() << ": " << what << " is not UTF-8 text (" << bad.reason
                                 << " at byte " << bad.position << " of it)");
}

template <class T>
T load(const uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

// Decodes `count` scalars of `type` at p into the array's ints or floats.
void append_scalars(const Cursor& cursor, const std::string& key, uint32_t type, const uint8_t* p,
                    uint64_t count, GgufValue& v) {
  using namespace gguf_type;
  if (type == kFloat32 || type == kFloat64) {
    v.floats.reserve(v.floats.size() + count);
    for (uint64_t i = 0; i < count; ++i) {
      v.floats.push_back(type == kFloat32 ? load<float>(p + 4 * i) : load<double>(p + 8 * i));
    }
    return;
  }
  v.ints.reserve(v.ints.size() + count);
  const uint64_t size = scalar_bytes(type);
  for (uint64_t i = 0; i < count; ++i, p += size) {
    switch (type) {
      case kUint8:
        v.ints.push_back(*p);
        break;
      case kInt8:
        v.ints.push_back(static_cast<int8_t>(*p));
        break;
      case kUint16:
        v.ints.push_back(load<uint16_t>(p));
        break;
      case kInt16:
        v.ints.push_back(load<int16_t>(p));
        break;
      case kUint32:
        v.ints.push_back(load<uint32_t>(p));
        break;
      case kInt32:
        v.ints.push_back(load<int32_t>(p));
        break;
      case kUint64:
        v.ints.push_back(static_cast<int64_t>(load<uint64_t>(p)));
        break;
      case kInt64:
        v.ints.push_back(load<int64_t>(p));
        break;
      case kBool:
        // The GGUF specification: 0 is false, 1 is true, anything else is invalid.
        SLIMRT_CHECK_AS(ErrorCategory::kModelFile, *p <= 1,
                        cursor.where() << ": key " << quote(key) << ": "
                                       << (v.kind == GgufValue::Kind::kArray
                                               ? "element " + std::to_string(v.ints.size()) + ": "
                                               : std::string())
                                       << "BOOL value " << int{*p} << " is neither 0 nor 1");
        v.ints.push_back(*p);
        break;
    }
  }
}

// Reads `count` elements of `type` (known, not ARRAY), after check_count, appending them.
void read_elements(Cursor& cursor, const std::string& key, uint32_t type, uint64_t count,
                   GgufValue& v) {
  // Counted over all inner arrays of an array of arrays: they are decoded into one list.
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, count <= limits::kGgufArrayElements - v.count,
                  cursor.where() << ": key " << quote(key) << ": " << v.count + count
                                 << " array elements exceed the limit of "
                                 << limits::kGgufArrayElements);
  if (type == gguf_type::kString) {
    if (v.offsets.empty()) v.offsets.push_back(0);
    v.offsets.reserve(v.offsets.size() + count);
    for (uint64_t i = 0; i < count; ++i) {
      const std::string_view s = cursor.read_string(
          [&] { return "string " + std::to_string(i) + " of key " + quote(key); });
      v.blob.append(s);
      v.offsets.push_back(v.blob.size());
    }
  } else {
    const uint64_t bytes = count * scalar_bytes(type);  // no overflow: check_count bounded it
    const uint8_t* p = cursor.take(bytes, [&] {
      return "the " + std::to_string(count) + " " + gguf_value_type_name(type) +
             " elements of key " + quote(key);
    });
    append_scalars(cursor, key, type, p, count, v);
  }
  v.count += count;
}

// An array's element type and length, checked against the bytes left.
std::pair<uint32_t, uint64_t> read_array_header(Cursor& cursor, const std::string& key) {
  const uint32_t type =
      cursor.read<uint32_t>([&] { return "the element type of key " + quote(key); });
  const uint64_t count = cursor.read<uint64_t>([&] { return "the length of key " + quote(key); });
  SLIMRT_CHECK_AS(
      ErrorCategory::kModelFile, min_element_bytes(type) > 0,
      cursor.where() << ": key " << quote(key) << ": unknown array element type " << type);
  cursor.check_count(count, min_element_bytes(type), [&] {
    return "key " + quote(key) + ": " + std::to_string(count) + " " + gguf_value_type_name(type) +
           " elements";
  });
  return {type, count};
}

void read_array(Cursor& cursor, const std::string& key, GgufValue& v) {
  v.kind = GgufValue::Kind::kArray;
  const auto [type, count] = read_array_header(cursor, key);
  v.type = type;
  if (type != gguf_type::kArray) {
    read_elements(cursor, key, type, count, v);
    return;
  }
  // gguf-py's reader accepts arrays of arrays (llama.cpp's does not); one level is kept, flat.
  v.rows.reserve(count + 1);
  v.rows.push_back(0);
  for (uint64_t i = 0; i < count; ++i) {
    const auto [inner, inner_count] = read_array_header(cursor, key);
    SLIMRT_CHECK_AS(ErrorCategory::kUnsupported, inner != gguf_type::kArray,
                    cursor.where() << ": key " << quote(key)
                                   << ": arrays nested more than one level deep are not "
                                      "supported");
    if (i == 0) v.type = inner;
    SLIMRT_CHECK_AS(ErrorCategory::kUnsupported, inner == v.type,
                    cursor.where()
                        << ": key " << quote(key) << ": inner arrays of "
                        << gguf_value_type_name(v.type) << " and " << gguf_value_type_name(inner)
                        << " elements in one array are not supported");
    read_elements(cursor, key, inner, inner_count, v);
    v.rows.push_back(v.count);
  }
}

GgufValue read_value(Cursor& cursor, const std::string& key, uint32_t type) {
  using namespace gguf_type;
  GgufValue v;
  v.type = type;
  if (type == kString) {
    v.kind = GgufValue::Kind::kString;
    v.string_value = cursor.read_string([&] { return "the value of key " + quote(key); });
    return v;
  }
  if (type == kArray) {
    read_array(cursor, key, v);
    return v;
  }
  const uint64_t size = scalar_bytes(type);
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, size > 0,
                  cursor.where() << ": key " << quote(key) << " has unknown value type " << type);
  GgufValue elements;  // the scalar decoded as a one-element list: one decoder for both
  append_scalars(cursor, key, type,
                 cursor.take(size, [&] { return "the value of key " + quote(key); }), 1, elements);
  if (type == kFloat32 || type == kFloat64) {
    v.kind = GgufValue::Kind::kFloat;
    v.float_value = elements.floats[0];
  } else if (type == kBool) {
    v.kind = GgufValue::Kind::kBool;
    v.bool_value = elements.ints[0] != 0;
  } else if (type == kInt8 || type == kInt16 || type == kInt32 || type == kInt64) {
    v.kind = GgufValue::Kind::kInt;
    v.int_value = elements.ints[0];
  } else {
    v.kind = GgufValue::Kind::kUint;
    v.uint_value = static_cast<uint64_t>(elements.ints[0]);
  }
  return v;
}

void read_header(Cursor& cursor, GgufFile& file) {
  const uint8_t* magic = cursor.take(4, [] { return std::string("the magic"); });
  if (load<uint32_t>(magic) != kMagic) {
    const std::string bytes(reinterpret_cast<const char*>(magic), 4);
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, false,
                    cursor.where()
                        << ": not a GGUF file (magic " << quote(bytes) << ", expected 'GGUF')");
  }
  file.version = cursor.read<uint32_t>([] { return std::string("the version"); });
  const uint32_t v = file.version;
  SLIMRT_CHECK_AS(ErrorCategory::kUnsupported, v != 1,
                  cursor.where() << ": GGUF version 1 is not supported (slimrt reads versions 2 "
                                    "and 3)");
  // A big-endian file's version reads as 2 or 3 in the high half.
  SLIMRT_CHECK_AS(
      ErrorCategory::kUnsupported, (v & 0xFFFF) != 0 || v == 0,
      cursor.where() << ": big-endian GGUF files are not supported (version field " << v << ")");
  SLIMRT_CHECK_AS(
      ErrorCategory::kModelFile, v == 2 || v == 3,
      cursor.where() << ": unknown GGUF version " << v << " (slimrt reads versions 2 and 3)");
}

void read_metadata(Cursor& cursor, GgufFile& file) {
  const uint64_t count = cursor.read<uint64_t>([] { return std::string("the key-value count"); });
  cursor.check_count(count, kMinKeyValueBytes,
                     [&] { return "key-value count " + std::to_string(count) + ": the pairs"; });
  for (uint64_t i = 0; i < count; ++i) {
    const std::string name_of_key = "the name of key " + std::to_string(i);
    const std::string_view name = cursor.read_string([&] { return name_of_key; });
    check_utf8(cursor, name, name_of_key);
    std::string key(name);
    const uint32_t type =
        cursor.read<uint32_t>([&] { return "the value type of key " + quote(key); });
    GgufValue value = read_value(cursor, key, type);
    const bool inserted = file.metadata.emplace(key, std::move(value)).second;
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, inserted,
                    cursor.where() << ": key " << quote(key) << " is listed twice");
  }
}

// Tensor infos as stored, with their byte sizes; offsets are made absolute later.
struct PendingTensor {
  GgufTensorInfo info;
  std::string_view name_in_file;  // for the duplicate check: stable, unlike info.name's bytes
  uint64_t offset = 0;            // relative to the data section
  uint64_t bytes = 0;
};

PendingTensor read_tensor_info(Cursor& cursor, uint64_t index) {
  const std::string& where = cursor.where();
  PendingTensor t;
  const std::string name_of_tensor = "the name of tensor " + std::to_string(index);
  const std::string_view name = cursor.read_string([&] { return name_of_tensor; });
  check_utf8(cursor, name, name_of_tensor);
  t.info.name = name;
  t.name_in_file = name;
  const std::string tensor = "tensor " + quote(name);
  const uint32_t n_dims = cursor.read<uint32_t>([&] { return "the dimension count of " + tensor; });
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, n_dims >= 1 && n_dims <= kMaxDims,
                  where << ": " << tensor << " has " << n_dims << " dimensions (GGUF allows 1 to "
                        << kMaxDims << ")");
  const uint8_t* dims = cursor.take(8 * n_dims, [&] { return "the dimensions of " + tensor; });
  int64_t numel = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    const uint64_t dim = load<uint64_t>(dims + 8 * d);
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, dim > 0,
                    where << ": " << tensor << ": dimension " << d << " is 0");
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile,
                    dim <= uint64_t{std::numeric_limits<int64_t>::max()} &&
                        !__builtin_mul_overflow(numel, static_cast<int64_t>(dim), &numel),
                    where << ": " << tensor << ": dimension " << d << " (" << dim
                          << ") makes the element count overflow 64-bit integers");
    t.info.dims.push_back(static_cast<int64_t>(dim));
  }
  t.info.numel = numel;
  t.info.type = cursor.read<uint32_t>([&] { return "the type of " + tensor; });
  const GgmlTypeInfo* type = ggml_type_info(t.info.type);
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, type != nullptr,
                  where << ": " << tensor << " has unknown ggml type " << t.info.type);
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, t.info.dims[0] % type->block_size == 0,
                  where << ": " << tensor << " of type " << type->name << " has " << t.info.dims[0]
                        << " elements per row, not a multiple of its block size "
                        << type->block_size);
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile,
                  !__builtin_mul_overflow(static_cast<uint64_t>(numel / type->block_size),
                                          static_cast<uint64_t>(type->type_size), &t.bytes),
                  where << ": " << tensor << ": " << numel << " elements of " << type->name
                        << " make the byte size overflow 64-bit integers");
  t.offset = cursor.read<uint64_t>([&] { return "the data offset of " + tensor; });
  return t;
}

uint64_t read_alignment(const GgufFile& file, const std::string& where) {
  const GgufValue* value = file.find("general.alignment");
  if (value == nullptr) return 32;  // GGUF_DEFAULT_ALIGNMENT
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, value->type == gguf_type::kUint32,
                  where << ": general.alignment has type " << gguf_value_type_name(value->type)
                        << ", expected UINT32");
  const uint64_t alignment = value->uint_value;
  SLIMRT_CHECK_AS(
      ErrorCategory::kModelFile, alignment != 0 && (alignment & (alignment - 1)) == 0,
      where << ": general.alignment " << alignment << " is not a power of two greater than 0");
  return alignment;
}

// Places each tensor in the file: aligned, inside it, and overlapping no other.
void place_tensors(const std::string& where, size_t size, GgufFile& file,
                   std::vector<PendingTensor>& pending) {
  const uint64_t data_size = size > file.data_offset ? size - file.data_offset : 0;
  for (PendingTensor& t : pending) {
    const std::string tensor = "tensor " + quote(t.info.name);
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, t.offset % file.alignment == 0,
                    where << ": " << tensor << " has data offset " << t.offset
                          << ", not a multiple of the alignment " << file.alignment);
    SLIMRT_CHECK_AS(
        ErrorCategory::kModelFile, t.offset <= data_size && t.bytes <= data_size - t.offset,
        where << ": truncated: " << tensor << " (" << ggml_type_name(t.info.type) << ") needs "
              << t.bytes << " bytes at data offset " << t.offset << ", the data section from byte "
              << file.data_offset << " has " << data_size);
    t.info.begin = file.data_offset + t.offset;
    t.info.end = t.info.begin + t.bytes;
  }
  std::vector<size_t> order(pending.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return pending[a].offset < pending[b].offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    const PendingTensor& a = pending[order[i - 1]];
    const PendingTensor& b = pending[order[i]];
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, b.offset >= a.offset + a.bytes,
                    where << ": tensor " << quote(b.info.name) << " (data bytes " << b.offset
                          << ".." << b.offset + b.bytes << ") overlaps tensor "
                          << quote(a.info.name) << " (data bytes " << a.offset << ".."
                          << a.offset + a.bytes << ")");
  }
  file.tensors.reserve(pending.size());
  for (PendingTensor& t : pending) file.tensors.push_back(std::move(t.info));
}

}  // namespace

const GgmlTypeInfo* ggml_type_info(uint32_t type) {
  if (type >= std::size(kGgmlTypes) || kGgmlTypes[type].name == nullptr) return nullptr;
  return &kGgmlTypes[type];
}

const char* ggml_type_name(uint32_t type) {
  const GgmlTypeInfo* info = ggml_type_info(type);
  return info ? info->name : unknown_name(type);
}

const char* gguf_value_type_name(uint32_t type) {
  return type < std::size(kValueTypeNames) ? kValueTypeNames[type] : unknown_name(type);
}

const GgufValue* GgufFile::find(const std::string& key) const {
  const auto it = metadata.find(key);
  return it == metadata.end() ? nullptr : &it->second;
}

const GgufTensorInfo* GgufFile::tensor(const std::string& name) const {
  for (const GgufTensorInfo& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

GgufFile parse_gguf(const uint8_t* data, size_t size, const std::string& where) {
  Cursor cursor(data, size, where);
  GgufFile file;
  read_header(cursor, file);
  const uint64_t tensor_count =
      cursor.read<uint64_t>([] { return std::string("the tensor count"); });
  const auto check_tensor_count = [&] {
    cursor.check_count(tensor_count, kMinTensorInfoBytes, [&] {
      return "tensor count " + std::to_string(tensor_count) + ": the tensor infos";
    });
  };
  // Checked before the metadata too, so that a corrupt count is named as such.
  check_tensor_count();
  read_metadata(cursor, file);
  check_tensor_count();
  std::vector<PendingTensor> pending;
  pending.reserve(tensor_count);
  std::unordered_set<std::string_view> names;  // views of the file's bytes: stable
  for (uint64_t i = 0; i < tensor_count; ++i) {
    pending.push_back(read_tensor_info(cursor, i));
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, names.insert(pending.back().name_in_file).second,
                    where << ": tensor " << quote(pending.back().info.name) << " is listed twice");
  }
  file.alignment = read_alignment(file, where);
  file.data_offset = (cursor.position() + file.alignment - 1) / file.alignment * file.alignment;
  place_tensors(where, size, file, pending);
  return file;
}

}  // namespace slimrt
