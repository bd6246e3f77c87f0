// Errors: every failure in slimrt is a slimrt::Error (or a class derived from it) carrying a
// category, so an application can tell a bad model file from a budget that does not fit without
// parsing messages. The library never aborts or exits; the application decides what to log and
// how to recover.
//
//   try {
//     auto model = slimrt::Model::load("model.gguf", {});
//   } catch (const slimrt::Error& e) {
//     if (e.category() == slimrt::ErrorCategory::kModelFile) ...   // e.message(): the text alone
//   }
#pragma once

#include <stdexcept>
#include <string>

namespace slimrt {

enum class ErrorCategory {
  kInvalidArgument,  // a value the caller passed (options, sampling, step arrays, ids)
  kModelFile,        // a file that does not follow its format: truncated, corrupt, inconsistent
  kUnsupported,      // well-formed input this build does not run (architecture, dtype, device)
  kOutOfMemory,      // a budget or pool that does not fit (arenas at load, KV pages in a step)
  kIo,               // the operating system refused (open, mmap, read)
  kInternal,         // a broken invariant of slimrt itself: a bug to report
};

// "invalid argument", "model file", "unsupported", "out of memory", "I/O", "internal".
const char* error_category_name(ErrorCategory category);

// what() is the message followed by " [function, file:line]"; message() is the message alone.
class Error : public std::runtime_error {
 public:
  Error(ErrorCategory category, const std::string& message, const std::string& place = "")
      : std::runtime_error(place.empty() ? message : message + " [" + place + "]"),
        category_(category),
        message_(message) {}
  ErrorCategory category() const { return category_; }
  const std::string& message() const { return message_; }

 private:
  ErrorCategory category_;
  std::string message_;
};

}  // namespace slimrt
