// SLIMRT_CHECK: how the library raises slimrt::Error, with the place it was raised.
//
//   SLIMRT_CHECK(n >= 0, "negative element count " << n);                    // invalid argument
//   SLIMRT_CHECK_AS(ErrorCategory::kModelFile, end <= size, "truncated at byte " << end);
#pragma once

#include <sstream>
#include <string>

#include "slimrt/error.h"

namespace slimrt {

[[noreturn]] void throw_error(ErrorCategory category, const char* function, const char* file,
                              int line, const std::string& message);

}  // namespace slimrt

#define SLIMRT_CHECK_AS(category, cond, msg)                                                       \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      std::ostringstream slimrt_check_stream_;                                                     \
      slimrt_check_stream_ << msg;                                                                 \
      ::slimrt::throw_error((category), __func__, __FILE__, __LINE__, slimrt_check_stream_.str()); \
    }                                                                                              \
  } while (0)

#define SLIMRT_CHECK(cond, msg) \
  SLIMRT_CHECK_AS(::slimrt::ErrorCategory::kInvalidArgument, cond, msg)
