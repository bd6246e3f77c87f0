// What this build of slimrt is and what it can do here, asked at run time: an application built
// against one package may run on machines with or without a GPU.
//
//   std::printf("slimrt %s, CUDA %s\n", slimrt::version(),
//               slimrt::cuda_available() ? "usable" : "not usable");
#pragma once

// slimrt's one version: CMakeLists.txt (project() and the CMake package's version file) and
// pyproject.toml (the wheel's metadata, slimrt.__version__) read these three lines.
#define SLIMRT_VERSION_MAJOR 0
#define SLIMRT_VERSION_MINOR 1
#define SLIMRT_VERSION_PATCH 0

namespace slimrt {

const char* version();  // "0.1.0"

// Whether the CUDA backend was compiled into this library.
bool cuda_built();
// Whether device "cuda" can run here: built, a driver, and at least one usable GPU. Never
// throws; the reason it cannot is in cuda_unavailable_reason().
bool cuda_available();
// Why cuda_available() is false ("" when it is true).
const char* cuda_unavailable_reason();

}  // namespace slimrt
