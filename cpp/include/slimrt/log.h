// Log output belongs to the application: slimrt hands every line it would print to a callback
// (like llama.cpp's llama_log_set). Without one, warnings and errors go to stderr.
//
//   slimrt::set_log_callback([](slimrt::LogLevel level, const char* text, void*) {
//     if (level >= slimrt::LogLevel::kWarning) my_logger(text);
//   }, nullptr);
//   slimrt::set_log_callback(nullptr, nullptr);   // back to the default
#pragma once

namespace slimrt {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// text is one line without a trailing newline, valid during the call only. The callback may be
// called from any thread slimrt runs work on, so it must be thread-safe.
using LogCallback = void (*)(LogLevel level, const char* text, void* user_data);

void set_log_callback(LogCallback callback, void* user_data);

}  // namespace slimrt
