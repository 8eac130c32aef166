#!/usr/bin/env bash
# Runs the fuzz targets with libFuzzer (docs/fuzzing.md):
#   bash test/fuzz/run.sh [TARGET|all] [SECONDS]
# TARGET is a name under test/fuzz/corpus (deframer, server, ...); all
# runs each in turn, SECONDS each (default 60). Installs clang, builds
# build-fuzz (clang, -Dfuzzers=true, ASan+UBSan), and runs each target on a
# working copy of its checked-in corpus in build-fuzz/fuzz/TARGET/corpus,
# so that what it finds can be looked at and merged by hand. Crashes,
# leaks and timeouts are written to build-fuzz/fuzz/TARGET/ as
# crash-*, leak-*, timeout-*, oom-*. Prints per target the executions,
# cov, ft and corp (inputs/bytes) of libFuzzer's last line, and the number
# of findings. Extra arguments
# after SECONDS go to libFuzzer (e.g. -jobs=2).
set -uo pipefail
cd "$(dirname "$0")/../.."
target=${1:-all}
seconds=${2:-60}
shift $(($# < 2 ? $# : 2))
bash .ci/deps.sh clang libclang-rt-14-dev || exit 1

if [ ! -f build-fuzz/build.ninja ]; then
  CC=clang meson setup build-fuzz -Dfuzzers=true -Db_sanitize=address,undefined \
    -Db_lundef=false >/dev/null || exit 1
fi
if [ "$target" = all ]; then
  targets=$(ls test/fuzz/corpus)
else
  targets=$target
fi
for t in $targets; do
  ninja -C build-fuzz -j2 "test/fuzz/fuzz_$t" >/dev/null ||
    { ninja -C build-fuzz -j2 "test/fuzz/fuzz_$t"; exit 1; }
done

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
status=0
printf '%-16s %8s %12s %8s %8s %11s  %s\n' target seconds executions cov ft corpus findings
for t in $targets; do
  dir=build-fuzz/fuzz/$t
  mkdir -p "$dir/corpus"
  cp -n test/fuzz/corpus/$t/* "$dir/corpus/" 2>/dev/null
  dict=()
  [ -f test/fuzz/$t.dict ] && dict=(-dict=test/fuzz/$t.dict)
  nice -n 19 build-fuzz/test/fuzz/fuzz_$t -max_total_time="$seconds" \
    -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$dir/" "${dict[@]}" "$@" "$dir/corpus" \
    >"$dir/log" 2>&1
  rc=$?
  last=$(grep -E '^#[0-9]+' "$dir/log" | tail -1)
  execs=$(grep -E '^stat::number_of_executed_units' "$dir/log" | awk '{print $2}')
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$last")
  found=$(cd "$dir" && ls crash-* leak-* timeout-* oom-* slow-unit-* 2>/dev/null | wc -l)
  [ $rc -ne 0 ] && status=1
  printf '%-16s %8s %12s %8s %8s %11s  %s\n' "$t" "$seconds" "${execs:-?}" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}" \
    "$found$([ $rc -ne 0 ] && echo " (exit $rc, see $dir/log)")"
done
exit $status
