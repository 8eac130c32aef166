#!/usr/bin/env bash
# Client benchmark: our client (test/bench/client_bench.c, on the channel
# API) against a grpc-go client (test/bench/go/client, GOMAXPROCS=1) and
# h2load (the HTTP/2 load-generator ceiling, unary only), each pinned to
# core 1, all calling the same uvgrpc server (test/bench/bench_server.c)
# pinned to core 0. See docs/benchmarks.md, "The client benchmark".
#
#   bash test/bench/client_run.sh
#
# Environment:
#   BENCH_SECONDS    measured seconds per run (default 4)
#   BENCH_WARMUP     warm-up seconds before each run, not counted (default 1)
#   BENCH_ROUNDS     rounds over all scenarios; the best round counts (2)
#   BENCH_PROFILE    0 skips the perf and callgrind profile of our client (1)
#   BENCH_CLIENTS    subset of "uvgrpc grpc-go h2load"
#   BENCH_SCENARIOS  subset of the scenario names below, e.g. "unary_1x100_18"
#
# Raw results: build/bench/client_results.csv (every round of every run),
# client outputs in build/bench/client_raw/, server stderr in
# build/bench/client_logs/, the profile in build/bench/client_profile.txt.
# The generated client part of docs/benchmarks.md and
# docs/client_benchmarks.png are refreshed (a subset run writes them to
# build/bench/ instead). Every server binds 127.0.0.1 only and is stopped on
# exit. test/run.sh does not run this: it measures, it does not test.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BENCH=$ROOT/test/bench
OUT=$ROOT/build/bench
DUR=${BENCH_SECONDS:-4}
WARM=${BENCH_WARMUP:-1}
ROUNDS=${BENCH_ROUNDS:-2}
PROFILE=${BENCH_PROFILE:-1}
PY=/usr/bin/python3 # Debian's Python modules load only here
RAW=$OUT/client_raw
LOGS=$OUT/client_logs

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'client_run.sh: %s\n' "$*" >&2; exit 1; }

# name:mode:conns:outstanding:size (size: one response message on the wire,
# the 5-byte prefix included; 18 is SayHello's "Hello world").
ALL_SCENARIOS=(
  unary_1x1_18:unary:1:1:18
  unary_1x1_1k:unary:1:1:1024
  unary_1x100_18:unary:1:100:18
  unary_1x100_1k:unary:1:100:1024
  unary_4x25_18:unary:4:25:18
  unary_4x25_1k:unary:4:25:1024
  pingpong_1x1_18:pingpong:1:1:18
  pingpong_1x1_1k:pingpong:1:1:1024
  pingpong_1x100_18:pingpong:1:100:18
  stream_1x1_1k:stream:1:1:1024
  stream_1x1_64k:stream:1:1:65536
)

# --- 1. packages --------------------------------------------------------------
bash "$ROOT/.ci/deps.sh" \
  nghttp2-client golang-go golang-google-grpc-dev golang-goprotobuf-dev \
  protoc-gen-go-grpc gnuplot-nox time linux-perf || die "installing packages failed"

# --- 2. builds ----------------------------------------------------------------
mkdir -p "$OUT/bin" "$RAW" "$LOGS"
rm -f "$RAW"/* "$LOGS"/* # this run's outputs only
[ -f build/build.ninja ] || meson setup build >/dev/null || die "meson setup failed"
log "building uvgrpc, bench_server and client_bench"
ninja -C build >/dev/null || { ninja -C build; die "ninja failed"; }
SERVER_BIN=$ROOT/build/test/bench/bench_server
UVG_CLIENT=$ROOT/build/test/bench/client_bench
[ -x "$SERVER_BIN" ] && [ -x "$UVG_CLIENT" ] || die "no $SERVER_BIN or $UVG_CLIENT"

# The grpc-go client: GOPATH mode against Debian's /usr/share/gocode, as
# run.sh builds the grpc-go server (no network, no module proxy). The
# generated packages live in build/bench/goclient only. grpc-proto's
# testing protos have no go_package: M maps them to our import path, and
# source_relative output is moved into the package directory.
GO_CLIENT=$OUT/bin/client_go
build_go_client() {
  local gp=$OUT/goclient pkg=$OUT/goclient/src/benchclient
  command -v go >/dev/null && command -v protoc-gen-go >/dev/null &&
    command -v protoc-gen-go-grpc >/dev/null || return 1
  rm -rf "$gp/src" "$gp/gen"
  mkdir -p "$pkg/helloworld" "$pkg/grpc_testing" "$pkg/client" "$gp/gen"
  cp "$BENCH/go/client/main.go" "$pkg/client/main.go"
  local m1=Mhelloworld.proto=benchclient/helloworld
  local m2=Mgrpc/testing/messages.proto=benchclient/grpc_testing,Mgrpc/testing/benchmark_service.proto=benchclient/grpc_testing
  protoc -I/usr/share/grpc-proto/grpc/examples \
    --go_out="paths=source_relative,$m1:$pkg/helloworld" \
    --go-grpc_out="paths=source_relative,$m1:$pkg/helloworld" helloworld.proto &&
    protoc -I/usr/share/grpc-proto --go_out="paths=source_relative,$m2:$gp/gen" \
      --go-grpc_out="paths=source_relative,$m2:$gp/gen" \
      grpc/testing/messages.proto grpc/testing/benchmark_service.proto &&
    mv "$gp"/gen/grpc/testing/*.go "$pkg/grpc_testing/" &&
    GO111MODULE=off GOFLAGS= GOPATH="$gp:/usr/share/gocode" GOCACHE="$gp/cache" \
      go build -o "$GO_CLIENT" benchclient/client
}
if [ ! -x "$GO_CLIENT" ] || [ "$BENCH/go/client/main.go" -nt "$GO_CLIENT" ]; then
  log "building the grpc-go client"
  build_go_client >"$LOGS/build_go_client.log" 2>&1 ||
    { cat "$LOGS/build_go_client.log" >&2; rm -f "$GO_CLIENT"; }
fi

# The unary request bytes, for h2load: what client_bench sends, which for
# 18 and 1024 are the bytes of run.sh's req_18.bin and req_1k.bin.
for s in 18 1024; do
  "$UVG_CLIENT" --mode=unary --size=$s --dump-request="$OUT/client_req_$s.bin" ||
    die "cannot write the request file"
done

# --- servers and processes ------------------------------------------------------
ulimit -n 8192 2>/dev/null || true
. "$BENCH/procs.sh"

NOTES=$OUT/client_notes.txt
: >"$NOTES"
note() { echo "$*" | tee -a "$NOTES" >&2; }

# start_server TAG [WRAPPER...]: bench_server on core 0; sets SRV_PID,
# SRV_PORT and SRV_ERR. Returns 1 if it does not come up.
start_server() {
  local tag=$1 out=$LOGS/$1.out
  shift
  SRV_ERR=$LOGS/$tag.err
  SRV_PORT=
  taskset -c 0 "$@" "$SERVER_BIN" --port 0 >"$out" 2>"$SRV_ERR" &
  SRV_PID=$!
  track "$SRV_PID"
  for _ in $(seq 300); do
    SRV_PORT=$(sed -n 's/^listening on port \([0-9]*\)$/\1/p' "$out")
    [ -n "$SRV_PORT" ] && return 0
    alive "$SRV_PID" || break
    sleep 0.1
  done
  note "$tag: bench_server did not start: $(head -c 300 "$SRV_ERR" | tr '\n' ' ')"
  stop_server "$tag"
  return 1
}

# stop_server TAG: SIGTERM, wait; an unclean exit or stderr output is noted.
stop_server() {
  local tag=$1 rc
  [ -n "$SRV_PID" ] || return 0
  kill -TERM "$SRV_PID" 2>/dev/null
  for _ in $(seq 50); do alive "$SRV_PID" || break; sleep 0.1; done
  if alive "$SRV_PID"; then
    note "$tag: bench_server ignored SIGTERM for 5 s (killed)"
    kill -KILL "$SRV_PID"
  fi
  wait "$SRV_PID" 2>/dev/null
  rc=$?
  untrack "$SRV_PID"
  [ "$rc" -eq 0 ] || note "$tag: bench_server exited with status $rc"
  [ -s "$SRV_ERR" ] && note "$tag: bench_server wrote to stderr: $(head -c 300 "$SRV_ERR" | tr '\n' ' ')"
  SRV_PID=
}

# cpu_s PID: user + system CPU seconds of a process and all its threads.
cpu_s() {
  awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null
}

# ms SECONDS: h2load's notation for a duration given in (fractional) seconds.
ms() { awk -v s="$1" 'BEGIN{printf "%dms", s * 1000}'; }

H2HDR=(-H 'content-type: application/grpc' -H 'te: trailers')
URL_PATH=/helloworld.Greeter/SayHello

# verify_h2load SIZE: one call with nghttp must come back as grpc-status 0,
# and h2load -n1 must succeed, before h2load's numbers are believed (it
# checks the HTTP status only).
verify_h2load() {
  local url=http://127.0.0.1:$SRV_PORT$URL_PATH
  timeout 10 nghttp -v -d "$OUT/client_req_$1.bin" "${H2HDR[@]}" "$url" 2>/dev/null |
    grep -aq 'recv (stream_id=[0-9]*) grpc-status: 0' &&
    timeout 10 h2load -n1 -c1 -d "$OUT/client_req_$1.bin" "${H2HDR[@]}" "$url" 2>&1 |
    grep -q '1 succeeded, 0 failed, 0 errored'
}

# h2load_line FILE MODE CONNS OUTSTANDING SIZE: h2load's output as a line in
# the clients' CSV format (h2load reports a mean, no percentiles).
h2load_line() {
  "$PY" - "$@" <<'PY'
import re, sys
path, mode, conns, outst, size = sys.argv[1:]
t = open(path).read()
units = {"us": 1.0, "ms": 1e3, "s": 1e6}
rps = re.search(r"finished in ([\d.]+)(ms|s), ([\d.]+) req/s", t)
req = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                r"(\d+) failed, (\d+) errored, (\d+) timeout", t)
lat = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\s", t)
if not (rps and req and lat):
    print(""); sys.exit()
secs = float(rps.group(1)) / (1000 if rps.group(2) == "ms" else 1)
r = float(rps.group(3))
bad = sum(int(req.group(i)) for i in (4, 5, 6))
print(",".join(["h2load", mode, conns, outst, size, "%.3f" % secs, req.group(3), "%.1f" % r,
                "%.2f" % (r * int(size) / 1e6), "%.1f" % (float(lat.group(1)) * units[lat.group(2)]),
                "", "", "", "", "", str(bad), ""]))
PY
}

# --- 3. runs --------------------------------------------------------------------
read -r -a CLIENTS <<<"${BENCH_CLIENTS:-uvgrpc grpc-go h2load}"
SCENARIOS=()
for sc in "${ALL_SCENARIOS[@]}"; do
  if [ -z "${BENCH_SCENARIOS:-}" ] || [[ " $BENCH_SCENARIOS " == *" ${sc%%:*} "* ]]; then
    SCENARIOS+=("$sc")
  fi
done
[ ${#SCENARIOS[@]} -gt 0 ] || die "no scenario matches BENCH_SCENARIOS=$BENCH_SCENARIOS"

CSV=$OUT/client_results.csv
echo "round,$("$UVG_CLIENT" --csv-header),client_cpu_total_s,client_wall_s,server_cpu_s" >"$CSV"

# run_client ROUND CLIENT SCENARIO: one run against the server on SRV_PORT.
run_client() {
  local round=$1 client=$2 sc=$3 name mode conns outst size raw line cmd=()
  IFS=: read -r name mode conns outst size <<<"$sc"
  raw=$RAW/${name}_${client}_r$round
  local target=127.0.0.1:$SRV_PORT
  local args=(--mode="$mode" --conns="$conns" --outstanding="$outst" --size="$size"
    --seconds="$DUR" --warmup="$WARM" --target="$target")
  case $client in
  uvgrpc) cmd=("$UVG_CLIENT" "${args[@]}") ;;
  grpc-go)
    [ -x "$GO_CLIENT" ] || { note "r$round $name: no grpc-go client (build failed)"; return; }
    cmd=(env GOMAXPROCS=1 "$GO_CLIENT" "${args[@]}")
    ;;
  h2load)
    [ "$mode" = unary ] || return 0 # h2load makes plain HTTP/2 requests only
    if ! verify_h2load "$size"; then
      note "r$round $name: the server's SayHello did not answer nghttp/h2load correctly; h2load not measured"
      return
    fi
    cmd=(h2load -c "$conns" -m "$outst" -D "$(ms "$DUR")" --warm-up-time "$(ms "$WARM")"
      -d "$OUT/client_req_$size.bin" "${H2HDR[@]}" "http://$target$URL_PATH")
    ;;
  esac
  /usr/bin/time -f '%U %S %e' -o "$raw.time" taskset -c 1 "${cmd[@]}" >"$raw.out" 2>"$raw.err" &
  local pid=$!
  track "$pid"
  # the server's CPU over the measured seconds: sampled after the warm-up
  sleep "$WARM"
  local cpu0 cpu1 srv_cpu=
  cpu0=$(cpu_s "$SRV_PID")
  wait "$pid"
  local rc=$?
  untrack "$pid"
  cpu1=$(cpu_s "$SRV_PID")
  [ -n "$cpu0" ] && [ -n "$cpu1" ] &&
    srv_cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{printf "%.2f", b - a}')
  if [ "$client" = h2load ]; then
    line=$(h2load_line "$raw.out" "$mode" "$conns" "$outst" "$size")
  else
    line=$(tail -n 1 "$raw.out")
  fi
  if [ "$rc" -ne 0 ] || [ -z "$line" ]; then
    note "r$round $name: $client failed (exit status $rc): $(tail -c 300 "$raw.err" | tr '\n' ' ')"
    return
  fi
  local cu cs cw
  read -r cu cs cw < <(tail -n 1 "$raw.time")
  echo "$round,$line,$(awk -v u="$cu" -v s="$cs" 'BEGIN{printf "%.2f", u + s}'),$cw,$srv_cpu" >>"$CSV"
  IFS=, read -r _ _ _ _ _ _ calls rps _ _ p50 _ p99 _ _ errs _ <<<"$line"
  printf 'r%s %-18s %-8s %10.0f /s  p50 %6s us  p99 %6s us  errors %s\n' "$round" "$name" \
    "$client" "$rps" "${p50:--}" "${p99:--}" "$errs" >&2
  [ "${errs:-0}" = 0 ] || note "r$round $name: $client counted $errs failed calls"
}

log "$ROUNDS rounds of ${#SCENARIOS[@]} scenarios, ${DUR}s per run after ${WARM}s warm-up; server on core 0, clients on core 1"
for round in $(seq "$ROUNDS"); do
  # Every other round the clients go in reverse order, so that neither
  # always runs first on a fresh server.
  order=("${CLIENTS[@]}")
  if [ $((round % 2)) -eq 0 ]; then
    order=()
    for ((i = ${#CLIENTS[@]} - 1; i >= 0; i--)); do order+=("${CLIENTS[i]}"); done
  fi
  for sc in "${SCENARIOS[@]}"; do
    tag="${sc%%:*}_r$round"
    start_server "$tag" || continue
    for client in "${order[@]}"; do
      run_client "$round" "$client" "$sc"
      if ! alive "$SRV_PID"; then
        note "$tag: bench_server died during the $client run"
        stop_server "$tag"
        start_server "${tag}_restart" || break
      fi
    done
    stop_server "$tag"
  done
done

# --- 4. where our client spends its time (unary 1x100, 18 B) ---------------------
PROF=$OUT/client_profile.txt
: >"$PROF"
if [ "$PROFILE" = 1 ] && [[ " ${CLIENTS[*]} " == *" uvgrpc "* ]]; then
  log "profiling client_bench (unary 1x100, 18 B)"
  args=(--mode=unary --conns=1 --outstanding=100 --size=18)
  if command -v perf >/dev/null && start_server profile; then
    # No hardware counters in most VMs: the cpu-clock timer samples user and
    # kernel time alike.
    ev=cycles
    perf stat -e instructions true 2>&1 | grep -q 'not supported' && ev=cpu-clock
    taskset -c 1 perf record -e "$ev" -F 4000 -o "$OUT/client_perf.data" \
      "$UVG_CLIENT" "${args[@]}" --seconds=3 --warmup=0.5 --target=127.0.0.1:$SRV_PORT \
      >"$RAW/profile_perf.out" 2>"$LOGS/client_perf.log"
    if [ -s "$OUT/client_perf.data" ]; then
      {
        echo "perf record -e $ev: client_bench --mode=unary --conns=1 --outstanding=100 --size=18, 3 s"
        echo "$(tail -n 1 "$RAW/profile_perf.out")"
        echo "## by shared object"
        perf report -i "$OUT/client_perf.data" --no-children --sort dso --stdio -g none 2>/dev/null |
          grep '%' | head -10
        echo "## top symbols"
        perf report -i "$OUT/client_perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
          grep '%' | head -30
      } >>"$PROF"
    fi
    stop_server profile
  fi
  # callgrind counts user-space instructions exactly (no kernel time); the
  # server runs normally, only the client is instrumented.
  if command -v valgrind >/dev/null && start_server callgrind; then
    taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$OUT/client_callgrind.out" \
      "$UVG_CLIENT" "${args[@]}" --seconds=5 --warmup=0 --target=127.0.0.1:$SRV_PORT \
      >"$RAW/profile_callgrind.out" 2>"$LOGS/client_callgrind.log"
    stop_server callgrind
    calls=$(tail -n 1 "$RAW/profile_callgrind.out" | cut -d, -f7)
    total=$(callgrind_annotate "$OUT/client_callgrind.out" 2>/dev/null |
      sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
    if [ -n "$calls" ] && [ "${calls:-0}" -gt 0 ] && [ -n "$total" ]; then
      {
        echo "## callgrind, $calls calls (unary 1x100, 18 B): $((total / calls)) instructions per call (start-up included)"
        echo "## self instructions"
        callgrind_annotate --inclusive=no "$OUT/client_callgrind.out" 2>/dev/null |
          grep -E '^ *[0-9,]+ \(' | grep -v 'PROGRAM TOTALS' | head -30
        echo "## inclusive, below uv_run"
        callgrind_annotate --inclusive=yes "$OUT/client_callgrind.out" 2>/dev/null |
          grep -E '^ *[0-9,]+ \(.*\[' |
          grep -vE 'PROGRAM TOTALS|ld-linux|below main|libc-start|:main |uv_run' | head -40
      } >>"$PROF"
    fi
  fi
fi

# --- 5. table, plot, docs -----------------------------------------------------------
# A subset run must not replace the full results in docs/.
DOCS=$ROOT/docs
if [ -n "${BENCH_CLIENTS:-}" ] || [ -n "${BENCH_SCENARIOS:-}" ]; then
  DOCS=$OUT
  cp "$ROOT/docs/benchmarks.md" "$OUT/benchmarks.md"
fi
"$PY" "$BENCH/client_report.py" --csv "$CSV" --notes "$NOTES" --profile "$PROF" \
  --png "$DOCS/client_benchmarks.png" --md "$DOCS/benchmarks.md" \
  --seconds "$DUR" --warmup "$WARM" --rounds "$ROUNDS"
