#!/usr/bin/env bash
# The Python tests against a slimrt._core built with ASan+UBSan (CPU backend): the C++ engine
# as the Python layer drives it, under the sanitizers. Too slow for CI (the sanitized build
# alone takes as long as CI's C++ build, and the tests run several times slower); run it before
# a release or after changing the bindings.
#
#   tools/asan_pytest.sh                         # every Python test
#   tools/asan_pytest.sh tests/python/test_llm.py -k stream
#
# The extension replaces python/slimrt/_core*.so (gitignored) and the tests import slimrt from
# python/. The ASan runtime must be the first library loaded, hence LD_PRELOAD. Leak detection
# is off: CPython and torch keep allocations alive on purpose until exit, which LeakSanitizer
# would report by the thousand; the C++ tests run with it on (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
build=build/py-asan
cmake -S . -B "$build" -G Ninja -DSLIMRT_CUDA=OFF -DSLIMRT_SANITIZE=ON -DSLIMRT_BUILD_PYTHON=ON \
  -DSLIMRT_BUILD_TESTS=OFF -DSLIMRT_BUILD_BENCH=OFF \
  -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" >/dev/null
cmake --build "$build" -j"$(nproc)"
cp "$build"/_core*.so python/slimrt/
runtime="$(g++ -print-file-name=libasan.so):$(g++ -print-file-name=libubsan.so)"
[ $# -gt 0 ] || set -- tests/python
LD_PRELOAD="$runtime" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1 PYTHONPATH=python python3 -m pytest -q "$@"
