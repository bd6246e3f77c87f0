#!/usr/bin/env bash
# One call on the lent GPU machine: build for sm_90a, run the CUDA tests, run the benchmarks.
# Usage there: bash bench/run_gpu.sh   (writes logs and JSON under $OUT, default ./gpu-out)
# Expects .carry/ with dfloat11 and dahuffman wheels and minilm-bf16.safetensors.
set -uo pipefail
out=${OUT:-gpu-out}
mkdir -p "$out"
status=0
run() {  # run NAME CMD...: log to $out/NAME.log, remember failures, keep going
  local name=$1
  shift
  echo "== $name"
  if ! "$@" >"$out/$name.log" 2>&1; then
    echo "!! $name failed (exit $?)"
    status=1
  fi
  tail -n 25 "$out/$name.log"
}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .carry/*.whl && export PYTHONPATH=/tmp/site
run cmake cmake -S . -B build/gpu -G Ninja -DSLIMRT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a
run build cmake --build build/gpu -j16
run ctest ctest --test-dir build/gpu --output-on-failure
run pip python3 -m pip install --no-build-isolation --no-deps -q .
export SLIMRT_MINILM_SAFETENSORS=$PWD/.carry/minilm-bf16.safetensors
run pytest_cuda python3 -m pytest -q -rs tests/python -k "cuda or gpu"
run bench_cuda build/gpu/bench/slimrt-bench df11 --device cuda --json
run bench_cuda_md build/gpu/bench/slimrt-bench df11 --device cuda
run bench_cpu16 build/gpu/bench/slimrt-bench df11 --device cpu --threads 16
run compare python3 bench/compare_dfloat11.py --json "$out/compare_dfloat11.json"
echo "exit status $status"
exit $status
