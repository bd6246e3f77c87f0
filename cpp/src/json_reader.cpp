#include "json_reader.h"

#include <set>
#include <vector>

#include "check.h"
#include "input_limits.h"
#include "quote.h"

namespace slimrt {

using Json = nlohmann::ordered_json;

namespace {

// A first, SAX pass over the text: refuses duplicate keys (nlohmann would keep the last value
// silently; Python's reader refuses them), nesting past limits::kJsonDepth and syntax errors.
class Checker {
 public:
  Checker(const std::string& where, const char* subject) : where_(where), subject_(subject) {}

  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(Json::number_integer_t) { return true; }
  bool number_unsigned(Json::number_unsigned_t) { return true; }
  bool number_float(Json::number_float_t, const std::string&) { return true; }
  bool string(std::string&) { return true; }
  bool binary(Json::binary_t&) { return true; }
  bool start_object(size_t) {
    open(true);
    return true;
  }
  bool key(std::string& key) {
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, keys_.back().insert(key).second,
                    where_ << ": " << subject_ << " lists " << quote(key) << " twice");
    return true;
  }
  bool end_object() {
    keys_.pop_back();
    --depth_;
    return true;
  }
  bool start_array(size_t) {
    open(false);
    return true;
  }
  bool end_array() {
    --depth_;
    return true;
  }
  bool parse_error(size_t position, const std::string&, const nlohmann::detail::exception& e) {
    // what() is "[json.exception.parse_error.101] parse error at line 1, column 7: <reason>"
    // or "[json.exception.out_of_range.406] <reason>".
    std::string reason = e.what();
    reason.erase(0, reason.find("] ") == std::string::npos ? 0 : reason.find("] ") + 2);
    if (reason.compare(0, 11, "parse error") == 0 && reason.find(": ") != std::string::npos) {
      reason.erase(0, reason.find(": ") + 2);
    }
    // `position` counts from 1 and points past the end at the end of input; Python counts
    // from 0.
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, false,
                    where_ << ": " << subject_ << " is not valid JSON: " << reason << " at byte "
                           << (position > 0 ? position - 1 : 0));
    return false;
  }

 private:
  void open(bool object) {
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, ++depth_ <= limits::kJsonDepth,
                    where_ << ": " << subject_ << " nests values more than " << limits::kJsonDepth
                           << " levels deep");
    if (object) keys_.emplace_back();
  }

  const std::string& where_;
  const char* subject_;
  std::vector<std::set<std::string>> keys_;  // one per open object, innermost last
  size_t depth_ = 0;
};

}  // namespace

Json parse_json(const char* text, size_t size, const std::string& where, const char* subject) {
  Checker checker(where, subject);
  Json::sax_parse(text, text + size, &checker);
  return Json::parse(text, text + size);
}

namespace {

// Messages quote values from untrusted files: bounded in length and depth, so that a message
// stays short whatever a file holds (a shape of a million numbers, arrays nested 60 deep).
constexpr size_t kMaxReprChars = 200;
constexpr int kMaxReprDepth = 16;

void append_repr(std::string& out, const Json& value, int depth) {
  if (out.size() > kMaxReprChars || depth > kMaxReprDepth) {
    out += "...";
    return;
  }
  switch (value.type()) {
    case Json::value_t::null:
      out += "None";
      return;
    case Json::value_t::boolean:
      out += value.get<bool>() ? "True" : "False";
      return;
    case Json::value_t::string:
      out += quote(value.get_ref<const std::string&>());
      return;
    case Json::value_t::array: {
      out += '[';
      for (size_t i = 0; i < value.size(); ++i) {
        if (i) out += ", ";
        if (out.size() > kMaxReprChars) {
          out += "...";
          break;
        }
        append_repr(out, value[i], depth + 1);
      }
      out += ']';
      return;
    }
    case Json::value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, item] : value.items()) {
        if (!first) out += ", ";
        first = false;
        if (out.size() > kMaxReprChars) {
          out += "...";
          break;
        }
        out += quote(key) + ": ";
        append_repr(out, item, depth + 1);
      }
      out += '}';
      return;
    }
    default:
      out += value.dump();
  }
}

}  // namespace

std::string json_repr(const Json& value) {
  std::string out;
  append_repr(out, value, 0);
  return out;
}

const char* json_python_type(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null:
      return "NoneType";
    case Json::value_t::boolean:
      return "bool";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "int";
    case Json::value_t::number_float:
      return "float";
    case Json::value_t::string:
      return "str";
    case Json::value_t::array:
      return "list";
    case Json::value_t::object:
      return "dict";
    default:
      return "object";
  }
}

bool json_is_count(const Json& value) {
  return value.is_number_unsigned() || (value.is_number_integer() && value.get<int64_t>() >= 0);
}

}  // namespace slimrt
