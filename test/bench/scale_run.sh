#!/usr/bin/env bash
# Beyond one core: the unary greeter (SayHello, 18-byte reply) on both
# cores of this machine. uvgrpc serves it with one loop, with two loops on
# two threads (bench_server --threads 2) and with two processes sharing the
# port (bench_server --reuseport, twice), beside grpc-go with GOMAXPROCS=2
# and gRPC C++ (its own thread pool), all measured by the same h2load
# (two threads, 16 connections, 16 streams each) in the same run. Nothing
# is pinned: servers and h2load share the two cores, so the load generator
# takes a share of the CPU the servers could use, the same for each.
# See docs/scaling.md.
#
#   bash test/bench/scale_run.sh
#
# Environment:
#   BENCH_SECONDS  measured seconds per run (default 5)
#   BENCH_WARMUP   h2load warm-up seconds (default 1)
#   BENCH_ROUNDS   rounds over every server (default 3)
#   BENCH_SERVERS  subset of "uvgrpc-1loop uvgrpc-2threads uvgrpc-2procs
#                  grpc-go-2 grpc-c++"
#   BENCH_H2LOAD   h2load's load flags (default "-t2 -c16 -m16")
#
# Raw results: build/bench/scale_results.csv and h2load outputs in
# build/bench/scale_raw/; the summary goes to stdout. Every server binds
# 127.0.0.1 only and is stopped on exit. test/run.sh does not run this.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BENCH=$ROOT/test/bench
OUT=$ROOT/build/bench
DUR=${BENCH_SECONDS:-5}
WARM=${BENCH_WARMUP:-1}
ROUNDS=${BENCH_ROUNDS:-3}
LOAD=${BENCH_H2LOAD:--t2 -c16 -m16}
PY=/usr/bin/python3
PROTO_DIR=/usr/share/grpc-proto/grpc/examples
RAW=$OUT/scale_raw

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'scale_run.sh: %s\n' "$*" >&2; exit 1; }

bash "$ROOT/.ci/deps.sh" nghttp2-client golang-go golang-google-grpc-dev \
  golang-goprotobuf-dev protoc-gen-go-grpc libgrpc++-dev protobuf-compiler-grpc ||
  die "installing packages failed"
mkdir -p "$OUT/bin" "$RAW"
rm -f "$RAW"/*
[ -f build/build.ninja ] || meson setup build >/dev/null || die "meson setup failed"
log "building uvgrpc and bench_server"
ninja -C build >/dev/null || { ninja -C build; die "ninja failed"; }
SERVER_BIN=$ROOT/build/test/bench/bench_server
"$ROOT/build/test/bench/client_bench" --mode=unary --size=18 \
  --dump-request="$OUT/scale_req.bin" || die "no request"
. "$BENCH/peers.sh"
. "$BENCH/procs.sh"

read -r -a SERVERS <<<"${BENCH_SERVERS:-uvgrpc-1loop uvgrpc-2threads uvgrpc-2procs grpc-go-2 grpc-c++}"

# port_of FILE PID: waits for "listening on port N" in FILE.
port_of() {
  local p
  for _ in $(seq 100); do
    p=$(awk '/listening on port/ {print $4}' "$1")
    [ -n "$p" ] && { echo "$p"; return 0; }
    alive "$2" || return 1
    sleep 0.05
  done
  return 1
}

# start NAME TAG: starts the server(s); sets SRV_PIDS and SRV_PORT.
start() {
  local name=$1 out=$RAW/$2.out pid
  SRV_PIDS=()
  case $name in
  uvgrpc-1loop) "$SERVER_BIN" --port 0 >"$out" 2>&1 & ;;
  uvgrpc-2threads) "$SERVER_BIN" --port 0 --threads 2 >"$out" 2>&1 & ;;
  uvgrpc-2procs) "$SERVER_BIN" --port 0 --reuseport >"$out" 2>&1 & ;;
  grpc-go-2) [ -x "$GO_BIN" ] || return 1; GOMAXPROCS=2 "$GO_BIN" --port 0 >"$out" 2>&1 & ;;
  grpc-c++) [ -x "$CPP_BIN" ] || return 1; "$CPP_BIN" --port 0 >"$out" 2>&1 & ;;
  esac
  pid=$!
  track "$pid"
  SRV_PIDS+=("$pid")
  SRV_PORT=$(port_of "$out" "$pid") || return 1
  if [ "$name" = uvgrpc-2procs ]; then
    "$SERVER_BIN" --port "$SRV_PORT" --reuseport >"$out.2" 2>&1 &
    pid=$!
    track "$pid"
    SRV_PIDS+=("$pid")
    port_of "$out.2" "$pid" >/dev/null || return 1
  fi
}

stop() {
  local p
  for p in "${SRV_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${SRV_PIDS[@]}"; do wait "$p" 2>/dev/null; untrack "$p"; done
}

# cpu_s PID...: user + system CPU seconds of the processes.
cpu_s() {
  local p t=0
  for p in "$@"; do
    t=$(awk -v t="$t" -v hz="$(getconf CLK_TCK)" '{printf "%.2f", t + ($14 + $15) / hz}' \
      "/proc/$p/stat" 2>/dev/null || echo "$t")
  done
  echo "$t"
}

CSV=$OUT/scale_results.csv
echo "round,server,req_per_s,succeeded,failed,server_cpu_s,h2load_cpu_s,loadavg" >"$CSV"
log "$ROUNDS rounds, ${DUR}s per run after ${WARM}s warm-up, h2load $LOAD, nothing pinned"
for round in $(seq "$ROUNDS"); do
  for name in "${SERVERS[@]}"; do
    tag=${name}_r$round
    if ! start "$name" "$tag"; then
      log "$tag: $name could not be started; not measured"
      stop
      continue
    fi
    raw=$RAW/$tag.txt
    la=$(cut -d' ' -f1 /proc/loadavg)
    c0=$(cpu_s "${SRV_PIDS[@]}")
    # shellcheck disable=SC2086 # the h2load flags are meant to split
    /usr/bin/time -f '%U %S' -o "$raw.time" h2load -D "$DUR" --warm-up-time "$WARM" $LOAD \
      -d "$OUT/scale_req.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
      "http://127.0.0.1:$SRV_PORT/helloworld.Greeter/SayHello" >"$raw" 2>&1
    c1=$(cpu_s "${SRV_PIDS[@]}")
    stop
    rps=$(sed -n 's/.*finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$raw")
    ok=$(sed -n 's/^requests: .* \([0-9]*\) succeeded, \([0-9]*\) failed.*/\1,\2/p' "$raw")
    h2cpu=$(awk '{print $1 + $2}' "$raw.time" 2>/dev/null)
    echo "$round,$name,${rps:-},${ok:-,},$(awk -v a="$c0" -v b="$c1" 'BEGIN{print b - a}'),${h2cpu:-},$la" >>"$CSV"
    log "$tag: ${rps:-?} req/s (load $la)"
  done
done

"$PY" - "$CSV" "$((DUR + ${WARM%.*}))" <<'PY'
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["req_per_s"]]
secs = float(sys.argv[2])  # warm-up included, as the CPU times are
by, cores = {}, {}
for r in rows:
    by.setdefault(r["server"], {})[r["round"]] = float(r["req_per_s"])
    cores.setdefault(r["server"], []).append(float(r["server_cpu_s"]) / secs)
ref = by.get("grpc-go-2", {})
print("| server | req/s median (min-max) | / grpc-go GOMAXPROCS=2, per round | server cores used (median) |")
print("|---|---|---|---|")
for sv, v in by.items():
    xs = list(v.values())
    rt = " ".join("%.2f" % (v[rd] / ref[rd]) for rd in v if rd in ref and ref[rd] > 0)
    print(f"| {sv} | {statistics.median(xs):.0f} ({min(xs):.0f}-{max(xs):.0f}) | {rt} "
          f"| {statistics.median(cores[sv]):.2f} |")
PY
