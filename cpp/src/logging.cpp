#include "logging.h"

#include <cstdio>
#include <mutex>

namespace slimrt {
namespace {

struct Sink {
  LogCallback callback = nullptr;
  void* user_data = nullptr;
};

// The pair changes together: a reader never sees one application's callback with another's data.
std::mutex& sink_mutex() {
  static std::mutex mutex;
  return mutex;
}
Sink& sink() {
  static Sink s;
  return s;
}

}  // namespace

void set_log_callback(LogCallback callback, void* user_data) {
  std::lock_guard<std::mutex> lock(sink_mutex());
  sink() = {callback, user_data};
}

void log_line(LogLevel level, const std::string& text) {
  Sink current;
  {
    std::lock_guard<std::mutex> lock(sink_mutex());
    current = sink();
  }
  if (current.callback != nullptr) {
    current.callback(level, text.c_str(), current.user_data);
  } else if (level >= LogLevel::kWarning) {
    std::fprintf(stderr, "slimrt: %s%s\n",
                 level == LogLevel::kError ? "error: " : "warning: ", text.c_str());
  }
}

}  // namespace slimrt
