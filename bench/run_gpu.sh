#!/usr/bin/env bash
# One call on the lent GPU machine: build for sm_90a, run the CUDA tests, run the benchmarks.
# Usage there: SLIMRT_GIT_COMMIT=<hash> bash bench/run_gpu.sh  (the machine's copy has no .git)
# Writes summary.md, the JSON results and logs.tgz under $OUT (default ./gpu-out).
# Expects .carry/ with dfloat11 and dahuffman wheels and minilm-bf16.safetensors.
set -uo pipefail
out=${OUT:-gpu-out}
logs=$out/logs
mkdir -p "$logs"
status=0
run() {  # run NAME CMD...: log to $logs/NAME.log, remember failures, keep going
  local name=$1
  shift
  echo "== $name" | tee -a "$out/summary.md"
  if ! "$@" >"$logs/$name.log" 2>&1; then
    echo "!! $name failed" | tee -a "$out/summary.md"
    status=1
  fi
  # tqdm bars are one long line of carriage returns: keep their last state only.
  tail -n 30 "$logs/$name.log" | sed 's/.*\r//' | tee -a "$out/summary.md"
}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv |
  tee -a "$out/summary.md"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .carry/*.whl && export PYTHONPATH=/tmp/site
run cmake cmake -S . -B build/gpu -G Ninja -DSLIMRT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DSLIMRT_GIT_COMMIT="${SLIMRT_GIT_COMMIT:-}"
run build cmake --build build/gpu -j16
run ctest ctest --test-dir build/gpu --output-on-failure
run pip python3 -m pip install --no-build-isolation --no-deps -q .
export SLIMRT_MINILM_SAFETENSORS=$PWD/.carry/minilm-bf16.safetensors
run pytest_cuda python3 -m pytest -q -rs tests/python/test_df11_cuda.py tests/python/test_df11_minilm.py
run bench_cuda build/gpu/bench/slimrt-bench df11 --device cuda
build/gpu/bench/slimrt-bench df11 --device cuda --json >"$out/bench_cuda.json" 2>>"$logs/bench_cuda.log"
run bench_cpu build/gpu/bench/slimrt-bench df11 --device cpu
[ -n "${SKIP_DFLOAT11:-}" ] || run compare python3 bench/compare_dfloat11.py --json "$out/compare_dfloat11.json"
run attention python3 bench/compare_attention.py --json "$out/compare_attention.json"
tar czf "$out/logs.tgz" -C "$out" logs && rm -rf "$logs"
echo "exit status $status" | tee -a "$out/summary.md"
exit $status
