#!/usr/bin/env bash
# Streaming benchmark: messages per second on one bidi stream, and MB/s of
# 1 MiB messages, served by uvgrpc (test/bench/bench_server.c), grpc-go
# (GOMAXPROCS=1) and gRPC C++ (test/bench/go, test/bench/cpp: the greeters
# run.sh uses, which also serve /bench.Echo/Echo) in the same run. Each
# server is pinned to core 0; the one load generator, our client_bench
# --mode=echo, to core 1, so the three servers meet the same client. The
# stream sends each message back as it came; the client keeps
# --outstanding messages in flight on it. See docs/benchmarks.md,
# "Streaming".
#
#   bash test/bench/stream_run.sh
#
# Environment:
#   BENCH_SECONDS    measured seconds per run (default 4)
#   BENCH_WARMUP     warm-up seconds before each, not counted (default 1)
#   BENCH_ROUNDS     rounds over every server (default 3); the report gives
#                    the median and the spread over rounds
#   BENCH_SERVERS    subset of "uvgrpc grpc-go grpc-c++"
#   BENCH_SCENARIOS  subset of the scenario names below
#
# Raw results: build/bench/stream_results.csv, one line per round, server
# and scenario (the client's CSV columns, client_bench --csv-header); the
# summary goes to stdout. Every server binds 127.0.0.1 only and is stopped
# on exit. test/run.sh does not run this: it measures, it does not test.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BENCH=$ROOT/test/bench
OUT=$ROOT/build/bench
DUR=${BENCH_SECONDS:-4}
WARM=${BENCH_WARMUP:-1}
ROUNDS=${BENCH_ROUNDS:-3}
PY=/usr/bin/python3
PROTO_DIR=/usr/share/grpc-proto/grpc/examples
LOGS=$OUT/stream_logs

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'stream_run.sh: %s\n' "$*" >&2; exit 1; }

# name:size:outstanding (size: the message, without gRPC's 5-byte prefix)
ALL_SCENARIOS=(
  msgs_64B_x64:64:64
  msgs_64B_x1:64:1
  msgs_1k_x64:1024:64
  mib_1M_x4:1048576:4
)

bash "$ROOT/.ci/deps.sh" golang-go golang-google-grpc-dev golang-goprotobuf-dev \
  protoc-gen-go-grpc libgrpc++-dev protobuf-compiler-grpc || die "installing packages failed"
mkdir -p "$OUT/bin" "$LOGS"
rm -f "$LOGS"/*
[ -f build/build.ninja ] || meson setup build >/dev/null || die "meson setup failed"
log "building uvgrpc, bench_server and client_bench"
ninja -C build >/dev/null || { ninja -C build; die "ninja failed"; }
SERVER_BIN=$ROOT/build/test/bench/bench_server
CLIENT=$ROOT/build/test/bench/client_bench
. "$BENCH/peers.sh"
. "$BENCH/procs.sh"

read -r -a SERVERS <<<"${BENCH_SERVERS:-uvgrpc grpc-go grpc-c++}"
SCENARIOS=()
for sc in "${ALL_SCENARIOS[@]}"; do
  if [ -z "${BENCH_SCENARIOS:-}" ] || [[ " $BENCH_SCENARIOS " == *" ${sc%%:*} "* ]]; then
    SCENARIOS+=("$sc")
  fi
done

# start_server NAME TAG: starts it on core 0; sets SRV_PID and SRV_PORT.
start_server() {
  local name=$1 out=$LOGS/$2.out bin
  case $name in
  uvgrpc) bin=$SERVER_BIN ;;
  grpc-go) bin=$GO_BIN ;;
  grpc-c++) bin=$CPP_BIN ;;
  esac
  [ -x "$bin" ] || return 1
  GOMAXPROCS=1 taskset -c 0 "$bin" --port 0 >"$out" 2>"$LOGS/$2.err" &
  SRV_PID=$!
  track "$SRV_PID"
  for _ in $(seq 100); do
    SRV_PORT=$(awk '/listening on port/ {print $4}' "$out")
    [ -n "$SRV_PORT" ] && return 0
    alive "$SRV_PID" || return 1
    sleep 0.05
  done
  return 1
}

# cpu_s PID: user + system CPU seconds of a process and all its threads.
cpu_s() {
  awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null
}

stop_server() {
  kill -TERM "$SRV_PID" 2>/dev/null
  wait "$SRV_PID" 2>/dev/null
  untrack "$SRV_PID"
}

CSV=$OUT/stream_results.csv
echo "round,server,$("$CLIENT" --csv-header),server_cpu_s" >"$CSV"
log "$ROUNDS rounds, ${DUR}s per run after ${WARM}s warm-up; servers on core 0, client on core 1"
log "load: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
  for name in "${SERVERS[@]}"; do
    tag=${name}_r$round
    if ! start_server "$name" "$tag"; then
      log "$tag: $name could not be built or started; not measured"
      continue
    fi
    for sc in "${SCENARIOS[@]}"; do
      IFS=: read -r scn size outst <<<"$sc"
      # The server's CPU time over the measured seconds (sampled after the
      # warm-up) gives its cost per message, which the other work on this
      # machine disturbs less than the rate.
      taskset -c 1 "$CLIENT" --mode=echo --target="127.0.0.1:$SRV_PORT" \
        --size="$size" --outstanding="$outst" --seconds="$DUR" --warmup="$WARM" \
        >"$LOGS/${tag}_$scn.csv" 2>"$LOGS/${tag}_$scn.client.err" &
      cpid=$!
      track "$cpid"
      sleep "$WARM"
      cpu0=$(cpu_s "$SRV_PID")
      wait "$cpid"
      untrack "$cpid"
      cpu1=$(cpu_s "$SRV_PID")
      row=$(cat "$LOGS/${tag}_$scn.csv")
      [ -n "$row" ] && echo "$round,$name,$row,$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{print b - a}')" >>"$CSV"
      log "$tag $scn: $(echo "$row" | cut -d, -f8,9) msgs/s,MB/s"
    done
    stop_server "$name" "$tag"
  done
done
log "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

"$PY" - "$CSV" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = {}
for r in rows:
    key = (f"{r['size']}B x{r['outstanding']}", r["server"])
    cpu = float(r["server_cpu_s"] or 0)
    us = cpu * 1e6 / int(r["calls"]) if int(r["calls"]) else 0
    by.setdefault(key, []).append((float(r["calls_per_s"]), float(r["mb_per_s"]), int(r["round"]), us))
scen = sorted({k[0] for k in by}, key=lambda s: (int(s.split("B")[0]), s))
servers = [s for s in ("uvgrpc", "grpc-go", "grpc-c++") if any(k[1] == s for k in by)]
print("| scenario | server | msgs/s median (min-max) | MB/s median | uvgrpc / it, per round | server CPU us/msg (median) |")
print("|---|---|---|---|---|---|")
for sc in scen:
    ours = {rd: m for m, _, rd, _ in by.get((sc, "uvgrpc"), [])}
    for sv in servers:
        v = by.get((sc, sv))
        if not v:
            continue
        m = [x[0] for x in v]
        mb = [x[1] for x in v]
        ratios = [ours[rd] / x for x, _, rd, _ in v if rd in ours and x > 0]
        us = statistics.median([x[3] for x in v])
        rt = "" if sv == "uvgrpc" else " ".join("%.2f" % r for r in ratios)
        print(f"| {sc} | {sv} | {statistics.median(m):.0f} ({min(m):.0f}-{max(m):.0f}) "
              f"| {statistics.median(mb):.1f} | {rt} | {us:.1f} |")
PY
