#!/usr/bin/env bash
# Runs the atheris targets of the Python layer for SECONDS each from their seed corpora (copied
# into BUILD/corpus), with whichever slimrt `python3 -c "import slimrt"` finds (CI: the
# installed package; a checkout: PYTHONPATH=python with _core built). Exits non-zero on any
# finding; the input is kept as BUILD/artifacts/TARGET-crash-*.
#
#   fuzz/python/run.sh 30
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:?usage: fuzz/python/run.sh SECONDS [BUILD_DIR]}
build=${2:-build/fuzz-python}
failed=0
for target in chat_template tokenizer_config; do
  corpus="$build/corpus/$target"
  mkdir -p "$corpus" "$build/artifacts"
  cp -n fuzz/python/corpus/"$target"/* "$corpus"/
  log="$build/fuzz_$target.log"
  if ! python3 "fuzz/python/fuzz_$target.py" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=4096 -artifact_prefix="$build/artifacts/$target-" "$corpus" >"$log" 2>&1; then
    failed=1
    echo "fuzz_$target.py: FAILED (log: $log)"
    grep -v '^INFO: Instrumenting' "$log" | tail -30
    continue
  fi
  runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log")
  echo "fuzz_$target.py: $runs executions in ${seconds}s, 0 findings"
done
exit "$failed"
