#!/usr/bin/env bash
# The whole test suite: unit, server end-to-end and interop tests, once in a
# normal build and once under AddressSanitizer + UndefinedBehaviorSanitizer.
# Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash .ci/deps.sh || exit 1

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1

run_build() { # dir, meson options...
  local dir=$1
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" >/dev/null || return 1
  fi
  # One job a core (ninja's default is cores + 2); on failure, one job so
  # the first error is the last thing printed.
  ninja -C "$dir" -j "$(nproc)" >/dev/null || { ninja -C "$dir" -j 1; return 1; }
  rm -f "$dir/meson-logs/testlog.json"
  meson test -C "$dir" --print-errorlogs --num-processes 2 | grep -E '^ *[0-9]+/[0-9]+ ' || true
}

echo "== build"
run_build build
echo "== build-asan (address,undefined)"
run_build build-asan -Db_sanitize=address,undefined -Db_lundef=false

/usr/bin/python3 - build/meson-logs/testlog.json build-asan/meson-logs/testlog.json <<'PY'
import json, sys
passed = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        failed += 1  # the build itself failed
        print(f"missing {path}: build failed")
        continue
    for line in lines:
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif r == "SKIP":
            skipped += 1
        else:
            failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
PY
