#!/usr/bin/env bash
# Instructions and allocator calls per unary call of a greeter-shaped
# server, counted by callgrind: two runs of h2load -c1 -m100 with 18-byte
# replies, of N1 and N2 calls; the difference divided by N2 - N1 leaves
# start-up and shutdown out.
#
#   bash test/bench/percall.sh [SERVER...]
#
# SERVER is a binary that takes --port 0 and prints "listening on port N"
# (default: the sample greeter and the bench server of build/). Needs
# valgrind and h2load (nghttp2-client). N1 and N2: PERCALL_N1 (5000) and
# PERCALL_N2 (25000). About two minutes per server on this machine.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
N1=${PERCALL_N1:-5000}
N2=${PERCALL_N2:-25000}
OUT=$ROOT/build/bench/percall
mkdir -p "$OUT"
[ $# -gt 0 ] || set -- "$ROOT/build/samples/helloworld/greeter_server" \
  "$ROOT/build/test/bench/bench_server"
for tool in valgrind h2load callgrind_annotate; do
  command -v $tool >/dev/null || { echo "percall.sh: $tool is missing" >&2; exit 1; }
done
# HelloRequest{name: "world"} with its gRPC prefix: the 18-byte reply case
printf '\x00\x00\x00\x00\x07\x0a\x05world' >"$OUT/req.bin"

# Sums the calls to malloc, calloc and realloc in a callgrind output file
# (the library's allocator hook ends in them, as do nghttp2's and the
# application's own allocations), by caller: calls from the C library
# itself (realloc calling malloc) and from PLT stubs (unnamed addresses,
# which repeat their caller's) are left out.
allocs() {
  /usr/bin/python3 - "$1" <<'PY'
import re, sys
alloc = ("malloc", "calloc", "realloc")
names, total, cur, pending = {}, 0, None, None
for line in open(sys.argv[1], errors="replace"):
    line = line.rstrip("\n")
    m = re.match(r"(c?)fn=\((\d+)\)(?: (.*))?$", line)
    if m:
        if m.group(3):
            names[m.group(2)] = m.group(3).strip()
        name = names.get(m.group(2), "")
        if m.group(1):
            pending = name
        else:
            cur = name
    elif line.startswith("calls=") and pending is not None:
        if pending in alloc and cur not in alloc and not cur.startswith("0x"):
            total += int(line[6:].split()[0])
        pending = None
print(total)
PY
}

# run BINARY CALLS TAG: prints "instructions allocations" of one run
run() {
  local bin=$1 n=$2 tag=$3 port= pid
  rm -f "$OUT/$tag.log"
  taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$OUT/$tag.cg" \
    "$bin" --port 0 >"$OUT/$tag.log" 2>"$OUT/$tag.err" &
  pid=$!
  for _ in $(seq 600); do
    port=$(sed -n 's/^listening on port \([0-9]*\)$/\1/p' "$OUT/$tag.log")
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { kill "$pid"; echo "$bin did not start" >&2; return 1; }
  taskset -c 1 h2load -n "$n" -c1 -m100 -d "$OUT/req.bin" \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$port/helloworld.Greeter/SayHello" >"$OUT/$tag.h2load" 2>&1
  kill -TERM "$pid"
  wait "$pid"
  grep -q "$n succeeded" "$OUT/$tag.h2load" ||
    { echo "$bin: not every call succeeded (see $OUT/$tag.h2load)" >&2; return 1; }
  echo "$(callgrind_annotate "$OUT/$tag.cg" 2>/dev/null |
    sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,) $(allocs "$OUT/$tag.cg")"
}

for bin in "$@"; do
  name=$(basename "$bin")
  read -r i1 a1 < <(run "$bin" "$N1" "${name}_$N1") || continue
  read -r i2 a2 < <(run "$bin" "$N2" "${name}_$N2") || continue
  /usr/bin/python3 -c "import sys; d = $N2 - $N1; print('%s: %d instructions, %.2f allocator calls per call (callgrind, h2load -c1 -m100, 18 B, %d -> %d calls)' % ('$name', ($i2 - $i1) / d, ($a2 - $a1) / d, $N1, $N2))"
done
