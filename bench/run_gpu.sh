#!/usr/bin/env bash
# One call on the lent GPU machine: build for sm_90a, run the CUDA tests, run the benchmarks.
# Usage there: SLIMRT_GIT_COMMIT=<hash> bash bench/run_gpu.sh  (the machine's copy has no .git)
# Writes summary.md (with each section's seconds), the JSON results and logs.tgz under $OUT
# (default ./gpu-out). Expects .carry/ with the wheels to install there (nlohmann-json for the
# build; dfloat11 and dahuffman for compare_dfloat11.py), googletest's sources (the machine has
# no GoogleTest: Debian's /usr/src/googletest) and, for test_df11_minilm.py,
# minilm-bf16.safetensors (skipped when absent).
#
# One call may run 10 minutes at most; these switches (set to 1) choose the sections:
#   ONLY_8B          pip install + the Llama-3.1-8B section only (no cmake build, tests, benches)
#   ONLY_BIG         pip install + the largest-model section only (its own call: it needs most
#                    of the 10 minutes)
#   SKIP_TESTS       ctest and the CUDA pytest files
#   SKIP_BENCH_DF11  slimrt-bench df11 (CUDA and CPU)
#   SKIP_GEMV        slimrt-bench gemv (Llama-3.1-8B's decode matmuls: BF16, DF11 ahead, fused;
#                    GEMV_ROWS picks the rows, default 1,2,3,4,5,6,7,8)
#   SKIP_DFLOAT11    bench/compare_dfloat11.py (about 30 s of dfloat11 encoding)
#   SKIP_ATTENTION   bench/compare_attention.py (ATTENTION_CASES: its --cases, BATCHxCONTEXT,...)
#   SKIP_SPARSE      slimrt-bench sparse-attention --device cuda (Llama-3.1-8B heads) at each of
#                    SPARSITIES (default 0.5,0.7)
#   SKIP_LAYERS      slimrt-bench bandwidth, attention and decode-step --device cuda (decode-step
#                    on a random SmolLM2-135M-shaped model), each into $OUT/SUBCOMMAND.json
#   SKIP_8B          the Llama-3.1-8B section
#   SKIP_BIG         the largest-model section (in a full run it gets what DEADLINE_S leaves, and
#                    is skipped, without failing the run, when that is under 120 s)
# The 8B section writes a random-weight Llama-3.1-8B to $M8B (default /tmp/llama8b) on the GPU,
# compresses it to $M8B-df11, and runs bench/compare_gpu_generate.py; an existing directory is
# reused (both are written atomically), so a second call on a warm machine skips those minutes.
# Its knobs: WEIGHTS_8B (bf16,df11), BATCHES_8B (1,16,64), PROMPT_8B (128), NEW_8B (128),
# SAMPLING_8B (greedy; also sampled, nucleus), TRANSFORMERS_8B (default,static), BUDGET_GIB_8B
# (24), KV_SPARSITY_8B (0: the budget rows' --kv-sparsity list, e.g. 0,0.5,0.7), KV_WINDOW_8B
# (32), LONG_CONTEXT_8B (0: no long-context rows; e.g. 32768), LONG_BATCHES_8B (1,8),
# SKIP_DECODE_8B (1: no compare_gpu_generate). The comparison is cut off DEADLINE_S (570)
# seconds after the start; its JSON keeps every row measured until then. PREFILL_8B (prompt
# lengths, e.g. 512,4096,16384) first runs bench/compare_gpu_prefill.py on WEIGHTS_8B (default
# bf16 there), with transformers too when PREFILL_TRANSFORMERS=1.
# The largest-model section runs bench/big_model.py: a one-layer Llama-3.3-70B written to $MBIG
# (default /tmp/llama70b) on the GPU and compressed to $MBIG-df11 (both reused when they exist),
# loaded as LAYERS_BIG (80) copies of the layer, for WEIGHTS_BIG (df11,bf16) and KV_SPARSITY_BIG
# (0,0.7): the longest context in the whole GPU and decode tokens/s at BATCHES_BIG (1,16) after
# CONTEXT_BIG (1024) prompt tokens, NEW_BIG (32) steps; cut off at DEADLINE_S like compare_8b.
set -uo pipefail
out=${OUT:-gpu-out}
logs=$out/logs
mkdir -p "$logs"
status=0
times=()
run() {  # run NAME CMD...: log to $logs/NAME.log, remember failures, keep going
  local name=$1
  shift
  local start=$SECONDS
  echo "== $name" | tee -a "$out/summary.md"
  if ! "$@" >"$logs/$name.log" 2>&1; then
    echo "!! $name failed" | tee -a "$out/summary.md"
    status=1
  fi
  # tqdm bars are one long line of carriage returns: keep their last state only.
  tail -n "${tail_lines:-30}" "$logs/$name.log" | sed 's/.*\r//' | tee -a "$out/summary.md"
  echo "-- $name: $((SECONDS - start)) s" | tee -a "$out/summary.md"
  times+=("| $name | $((SECONDS - start)) |")
}
skip() { [ -n "${ONLY_8B:-}${ONLY_BIG:-}" ] || [ -n "${!1:-}" ]; }  # skip SWITCH: true when off
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv |
  tee -a "$out/summary.md"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .carry/*.whl && export PYTHONPATH=/tmp/site
prefix=()
if [ ! -f /usr/include/gtest/gtest.h ] && [ -d .carry/googletest ]; then
  run gtest bash -c 'cmake -S .carry/googletest -B /tmp/gtest-build -G Ninja >/dev/null &&
    cmake --build /tmp/gtest-build && cmake --install /tmp/gtest-build --prefix /tmp/gtest'
  prefix=(-DCMAKE_PREFIX_PATH=/tmp/gtest)
fi
if [ -z "${ONLY_8B:-}${ONLY_BIG:-}" ]; then
  run cmake cmake -S . -B build/gpu -G Ninja -DSLIMRT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
    -DSLIMRT_GIT_COMMIT="${SLIMRT_GIT_COMMIT:-}" "${prefix[@]}"
  run build cmake --build build/gpu -j16
fi
skip SKIP_TESTS || run ctest ctest --test-dir build/gpu --output-on-failure
run pip python3 -m pip install --no-build-isolation --no-deps -q .
[ -f .carry/minilm-bf16.safetensors ] &&
  export SLIMRT_MINILM_SAFETENSORS=$PWD/.carry/minilm-bf16.safetensors
skip SKIP_TESTS || run pytest_cuda python3 -m pytest -q -rs tests/python/test_df11_cuda.py \
  tests/python/test_df11_minilm.py tests/python/test_llm_cuda.py
if ! skip SKIP_BENCH_DF11; then
  run bench_cuda build/gpu/bench/slimrt-bench df11 --device cuda
  build/gpu/bench/slimrt-bench df11 --device cuda -o json >"$out/bench_cuda.json" 2>>"$logs/bench_cuda.log"
  run bench_cpu build/gpu/bench/slimrt-bench df11 --device cpu
fi
if ! skip SKIP_GEMV; then
  tail_lines=130 run gemv build/gpu/bench/slimrt-bench gemv --device cuda --rows "${GEMV_ROWS:-1,2,3,4,5,6,7,8}"
fi
skip SKIP_DFLOAT11 || run compare python3 bench/compare_dfloat11.py --json "$out/compare_dfloat11.json"
skip SKIP_ATTENTION || run attention python3 bench/compare_attention.py \
  ${ATTENTION_CASES:+--cases "$ATTENTION_CASES"} --json "$out/compare_attention.json"
if ! skip SKIP_SPARSE; then
  for sparsity in ${SPARSITIES:-0.5 0.7}; do
    run "sparse_$sparsity" bash -c "build/gpu/bench/slimrt-bench sparse-attention --device cuda \
      --heads llama8b --sparsity $sparsity --reps 20 --warmup 3 -o json >$out/sparse_$sparsity.json"
  done
fi
if ! skip SKIP_LAYERS; then
  for sub in bandwidth attention decode-step; do
    run "layer_$sub" bash -c "build/gpu/bench/slimrt-bench $sub --device cuda -o json >$out/$sub.json"
  done
fi

if [ -z "${SKIP_8B:-}${ONLY_BIG:-}" ]; then
  m8b=${M8B:-/tmp/llama8b}
  if [ -f "$m8b/config.json" ]; then
    echo "== make_8b: $m8b exists, reused" | tee -a "$out/summary.md"
  else
    run make_8b python3 bench/make_random_model.py llama-3.1-8b "$m8b" --device cuda
  fi
  if [ -f "$m8b-df11/config.json" ]; then
    echo "== compress_8b: $m8b-df11 exists, reused" | tee -a "$out/summary.md"
  elif [[ "${WEIGHTS_8B:-bf16,df11}" != *df11* ]]; then
    echo "== compress_8b: skipped (WEIGHTS_8B has no df11)" | tee -a "$out/summary.md"
  else
    run compress_8b python3 -m slimrt compress "$m8b" "$m8b-df11" --threads "$(nproc)" --no-progress
  fi
  if [ -n "${PREFILL_8B:-}" ]; then
    left=$((${DEADLINE_S:-570} - SECONDS))
    tail_lines=20 run prefill_8b timeout "$left" python3 bench/compare_gpu_prefill.py "$m8b" \
      --df11-model "$m8b-df11" --weights "${WEIGHTS_8B:-bf16}" --lengths "$PREFILL_8B" \
      ${PREFILL_TRANSFORMERS:+--transformers} --json "$out/compare_gpu_prefill.json"
  fi
  left=$((${DEADLINE_S:-570} - SECONDS))
  if [ -n "${SKIP_DECODE_8B:-}" ]; then
    echo "== compare_8b: skipped" | tee -a "$out/summary.md"
  elif [ "$left" -lt 60 ]; then
    echo "!! compare_8b skipped: only $left s left before DEADLINE_S" | tee -a "$out/summary.md"
    status=1
  else
    echo "compare_8b: cut off after $left s" | tee -a "$out/summary.md"
    tail_lines=45 run compare_8b timeout "$left" python3 bench/compare_gpu_generate.py "$m8b" \
      --df11-model "$m8b-df11" --weights "${WEIGHTS_8B:-bf16,df11}" --batches "${BATCHES_8B:-1,16,64}" \
      --prompt "${PROMPT_8B:-128}" --new "${NEW_8B:-128}" --sampling "${SAMPLING_8B:-greedy}" \
      --transformers "${TRANSFORMERS_8B:-default,static}" --budget-gib "${BUDGET_GIB_8B:-24}" \
      --kv-sparsity "${KV_SPARSITY_8B:-0}" --kv-window "${KV_WINDOW_8B:-32}" \
      --long-context "${LONG_CONTEXT_8B:-0}" --long-batches "${LONG_BATCHES_8B:-1,8}" \
      --json "$out/compare_gpu_generate.json"
  fi
fi

if [ -z "${SKIP_BIG:-}${ONLY_8B:-}" ]; then
  left=$((${DEADLINE_S:-570} - SECONDS))
  if [ "$left" -lt 120 ]; then
    echo "== big_model: skipped, only $left s left before DEADLINE_S (ONLY_BIG=1 runs it alone)" |
      tee -a "$out/summary.md"
  else
    echo "big_model: cut off after $left s" | tee -a "$out/summary.md"
    tail_lines=60 run big_model timeout "$left" python3 bench/big_model.py \
      --work "${MBIG:-/tmp/llama70b}" --layers "${LAYERS_BIG:-80}" --weights "${WEIGHTS_BIG:-df11,bf16}" \
      --kv-sparsity "${KV_SPARSITY_BIG:-0,0.7}" --batches "${BATCHES_BIG:-1,16}" \
      --context "${CONTEXT_BIG:-1024}" --new "${NEW_BIG:-32}" --json "$out/big_model.json"
  fi
fi

{
  echo
  echo "| section | seconds |"
  echo "| --- | ---: |"
  printf '%s\n' "${times[@]}"
  echo "| total | $SECONDS |"
} | tee -a "$out/summary.md"
tar czf "$out/logs.tgz" -C "$out" logs && rm -rf "$logs"
echo "exit status $status" | tee -a "$out/summary.md"
exit $status
