#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each under ASan+UBSan, from its seed corpus (copied: the
# inputs a run adds stay in BUILD/corpus, not in the source tree), and prints one line per
# target: executions, crashes. Exits non-zero on any crash, leak, timeout or out-of-memory;
# the input that caused it is kept as BUILD/artifacts/TARGET-crash-* (add it to
# fuzz/corpus/TARGET/ as crash-NAME with a regression test).
#
#   fuzz/run.sh 30                  # CI
#   fuzz/run.sh 600 build/fuzz      # a longer run (bench/RESULTS.md records one)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:?usage: fuzz/run.sh SECONDS [BUILD_DIR]}
build=${2:-build/fuzz}
failed=0
for target in safetensors df11_file df11_arrays gguf config; do
  corpus="$build/corpus/$target"
  mkdir -p "$corpus" "$build/artifacts"
  cp -n fuzz/corpus/"$target"/* "$corpus"/
  log="$build/fuzz_$target.log"
  # -timeout: an input that runs 10 s is a hang; -rss_limit_mb: one that takes 2 GiB an OOM.
  if ! "$build/fuzz/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$build/artifacts/$target-" "$corpus" >"$log" 2>&1; then
    failed=1
    echo "fuzz_$target: FAILED (log: $log)"
    grep -m1 -A12 -E "ERROR: |==ERROR|runtime error" "$log" || tail -20 "$log"
    continue
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  echo "fuzz_$target: $runs executions in ${seconds}s, 0 crashes"
done
exit "$failed"
