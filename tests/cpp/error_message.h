// What a test compares of a failing call: the message of the slimrt::Error it throws.
#pragma once

#include <functional>
#include <string>

#include "slimrt/error.h"

namespace slimrt::test {

// The message (without the " [function, file:line]" place), or "<no error>".
inline std::string error_message(const std::function<void()>& call) {
  try {
    call();
  } catch (const Error& e) {
    return e.message();
  }
  return "<no error>";
}

}  // namespace slimrt::test
