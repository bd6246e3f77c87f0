// Errors: every failure in slimrt is a slimrt::Error thrown with the place it was raised.
// The library never aborts; the application decides what to log and how to recover.
//
//   SLIMRT_CHECK(n >= 0, "negative element count " << n);
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace slimrt {

// what() is the message followed by " [function, file:line]"; message() is the message alone.
class Error : public std::runtime_error {
 public:
  Error(const std::string& message, const std::string& place)
      : std::runtime_error(place.empty() ? message : message + " [" + place + "]"),
        message_(message) {}
  explicit Error(const std::string& message) : Error(message, "") {}
  const std::string& message() const { return message_; }

 private:
  std::string message_;
};

[[noreturn]] void throw_error(const char* function, const char* file, int line,
                              const std::string& message);

}  // namespace slimrt

#define SLIMRT_CHECK(cond, msg)                                                        \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::ostringstream slimrt_check_stream_;                                         \
      slimrt_check_stream_ << msg;                                                     \
      ::slimrt::throw_error(__func__, __FILE__, __LINE__, slimrt_check_stream_.str()); \
    }                                                                                  \
  } while (0)
