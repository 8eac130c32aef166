#!/usr/bin/env bash
# Unary greeter benchmark: uvgrpc against grpc-go, gRPC C++ and nghttpd (the
# HTTP/2 ceiling: it serves the same reply bytes as a static file and does no
# gRPC work). See docs/benchmarks.md for what is measured and how to read it.
#
#   bash test/bench/run.sh
#
# Environment:
#   BENCH_SECONDS  measured seconds per h2load run (default 5)
#   BENCH_ROUNDS   rounds over all servers; the best round counts (default 2)
#   BENCH_WARMUP   h2load warm-up before each run, in h2load's units: 1 is a
#                  second, 500ms half of one (default 1)
#   BENCH_CONNS    idle connections for the RSS measurement (default 1000)
#   BENCH_PROFILE  0 skips the uvgrpc profile (default 1)
#   BENCH_SIZES, BENCH_SERVERS  subsets for a quick look (default: all of
#                  "18 1k 64k" and "uvgrpc grpc-go grpc-c++ nghttpd")
#
# Raw results: build/bench/results.csv, build/bench/rss.csv, h2load outputs in
# build/bench/raw/, server stderr in build/bench/logs/. Plot:
# docs/benchmarks.png. The generated part of docs/benchmarks.md is refreshed.
# Every server binds 127.0.0.1 only and is stopped on exit.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BENCH=$ROOT/test/bench
OUT=$ROOT/build/bench
DUR=${BENCH_SECONDS:-5}
WARM=${BENCH_WARMUP:-1}
NCONN=${BENCH_CONNS:-1000}
ROUNDS=${BENCH_ROUNDS:-2}
# The warm-up in seconds, from h2load's notation (1, 1s, 500ms).
WARM_S=$(awk -v w="$WARM" 'BEGIN{ if (w ~ /ms$/) print w / 1000; else { sub(/s$/, "", w); print w + 0 } }')
PROFILE=${BENCH_PROFILE:-1}
PY=/usr/bin/python3 # Debian's Python modules load only here
PROTO_DIR=/usr/share/grpc-proto/grpc/examples

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

# --- 1. packages -------------------------------------------------------------
# The project's own list plus the peers and the measuring tools; only what is
# missing is installed, and a package Debian lacks skips the peer needing it.
bash "$ROOT/.ci/deps.sh" \
  nghttp2-client nghttp2-server golang-go golang-google-grpc-dev \
  golang-goprotobuf-dev protoc-gen-go-grpc libgrpc++-dev protobuf-compiler-grpc \
  gnuplot-nox time linux-perf || die "installing packages failed"

# --- 2. builds ---------------------------------------------------------------
mkdir -p "$OUT"/{raw,logs,data,go,cpp,bin}
rm -f "$OUT"/raw/* "$OUT"/logs/* # this run's outputs only
[ -f build/build.ninja ] || meson setup build >/dev/null || die "meson setup failed"
log "building uvgrpc"
ninja -C build >/dev/null || { ninja -C build; die "ninja failed"; }
UVG_SAMPLE=$ROOT/build/samples/helloworld/greeter_server
[ -x "$UVG_SAMPLE" ] || die "no $UVG_SAMPLE"

. "$BENCH/peers.sh"

# The idle-connection client.
IDLE_BIN=$OUT/bin/idleconn
if stale "$IDLE_BIN" "$BENCH/idleconn.c"; then
  cc -O2 -Wall -o "$IDLE_BIN" "$BENCH/idleconn.c" \
    $(pkg-config --cflags --libs libnghttp2 libuv) || die "idleconn build failed"
fi

# --- 3. request and reply bytes ----------------------------------------------
# Reply sizes count the whole gRPC message on the wire (5-byte prefix +
# HelloReply): "Hello world" is 18 B; names of 1010 and 65521 bytes make
# replies of exactly 1 KiB and 64 KiB. The request carries the name.
read -r -a SIZES <<<"${BENCH_SIZES:-18 1k 64k}"
"$PY" - "$OUT/data" <<'PY' || die "cannot write request files"
import struct, sys
def varint(n):
    out = b""
    while n >= 0x80:
        out += bytes([n & 0x7F | 0x80]); n >>= 7
    return out + bytes([n])
def grpc_msg(s):  # field 1 (string), length-delimited, then the gRPC prefix
    b = s.encode(); pb = b"\x0a" + varint(len(b)) + b
    return b"\x00" + struct.pack(">I", len(pb)) + pb
for label, name in (("18", "world"), ("1k", "x" * 1010), ("64k", "x" * 65521)):
    open(f"{sys.argv[1]}/req_{label}.bin", "wb").write(grpc_msg(name))
    open(f"{sys.argv[1]}/rep_{label}.bin", "wb").write(grpc_msg("Hello " + name))
PY
for s in 18 1k 64k; do # nghttpd's document root: the reply is the file
  mkdir -p "$OUT/htdocs/$s/helloworld.Greeter"
  cp "$OUT/data/rep_$s.bin" "$OUT/htdocs/$s/helloworld.Greeter/SayHello"
done

# --- servers -----------------------------------------------------------------
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"
. "$BENCH/procs.sh"

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_server NAME SIZE TAG: starts it on core 0; sets SRV_PID, SRV_PORT,
# SRV_ERR, SRV_BIN. Returns 1 if it cannot be started.
start_server() {
  local name=$1 size=$2 tag=$3 out
  out=$OUT/logs/$tag.out
  SRV_ERR=$OUT/logs/$tag.err
  SRV_PORT=
  case $name in
  uvgrpc) SRV_BIN=$UVG_SAMPLE ;;
  grpc-go) SRV_BIN=$GO_BIN ;;
  grpc-c++) SRV_BIN=$CPP_BIN ;;
  nghttpd) SRV_BIN=$(command -v nghttpd) ;;
  esac
  [ -n "$SRV_BIN" ] && [ -x "$SRV_BIN" ] || return 1
  case $name in
  nghttpd)
    # nghttpd cannot print a bound port: take a free one. Windows as uvgrpc's
    # defaults (1 MiB stream, 16 MiB connection) so that 64 KiB uploads are
    # not held back by the 64 KiB default.
    SRV_PORT=$(free_port)
    taskset -c 0 "$SRV_BIN" --no-tls -a 127.0.0.1 -d "$OUT/htdocs/$size" \
      --trailer 'grpc-status: 0' --no-content-length -w 20 -W 24 "$SRV_PORT" \
      >"$out" 2>"$SRV_ERR" &
    ;;
  grpc-go) GOMAXPROCS=1 taskset -c 0 "$SRV_BIN" --port 0 >"$out" 2>"$SRV_ERR" & ;;
  *) taskset -c 0 "$SRV_BIN" --port 0 >"$out" 2>"$SRV_ERR" & ;;
  esac
  SRV_PID=$!
  track "$SRV_PID"
  local i
  for i in $(seq 100); do
    if [ "$name" = nghttpd ]; then
      (exec 3<>"/dev/tcp/127.0.0.1/$SRV_PORT") 2>/dev/null && return 0
    else
      SRV_PORT=$(sed -n 's/^listening on port \([0-9]*\)$/\1/p' "$out")
      [ -n "$SRV_PORT" ] && return 0
    fi
    alive "$SRV_PID" || break
    sleep 0.1
  done
  echo "run.sh: $name did not start; stderr:" >&2
  cat "$SRV_ERR" >&2
  stop_server "$name" "$tag"
  return 1
}

# stop_server NAME TAG: SIGTERM, wait, and note an unclean exit or stderr.
stop_server() {
  local name=$1 tag=$2 rc
  [ -n "$SRV_PID" ] || return 0
  kill -TERM "$SRV_PID" 2>/dev/null
  for _ in $(seq 50); do alive "$SRV_PID" || break; sleep 0.1; done
  if alive "$SRV_PID"; then
    note "$tag: $name ignored SIGTERM for 5 s (killed)"
    kill -KILL "$SRV_PID"
  fi
  wait "$SRV_PID" 2>/dev/null
  rc=$?
  untrack "$SRV_PID"
  # nghttpd has no SIGTERM handler: 143 is its normal way out.
  if [ "$rc" -ne 0 ] && ! { [ "$name" = nghttpd ] && [ "$rc" -eq 143 ]; }; then
    note "$tag: $name exited with status $rc after SIGTERM"
  fi
  if [ -s "$SRV_ERR" ]; then
    note "$tag: $name wrote to stderr: $(head -c 300 "$SRV_ERR" | tr '\n' ' ')"
  fi
}

NOTES=$OUT/notes.txt
: >"$NOTES"
note() { echo "$*" | tee -a "$NOTES" >&2; }

URL_PATH=/helloworld.Greeter/SayHello
H2HDR=(-H 'content-type: application/grpc' -H 'te: trailers')

# verify NAME SIZE: one call with nghttp (reply bytes and grpc-status: 0 in
# the trailers) and one with h2load -n1 (what the benchmark itself sends).
verify() {
  local name=$1 s=$2 url=http://127.0.0.1:$SRV_PORT$URL_PATH body=$OUT/logs/verify.body
  if ! timeout 10 nghttp -d "$OUT/data/req_$s.bin" "${H2HDR[@]}" "$url" >"$body" 2>/dev/null ||
    ! cmp -s "$body" "$OUT/data/rep_$s.bin"; then
    VERIFY_WHY="reply is $(stat -c %s "$body") bytes, not the expected $(stat -c %s "$OUT/data/rep_$s.bin")-byte message"
    return 1
  fi
  if ! timeout 10 nghttp -v -d "$OUT/data/req_$s.bin" "${H2HDR[@]}" "$url" 2>/dev/null |
    grep -aq 'recv (stream_id=[0-9]*) grpc-status: 0'; then
    VERIFY_WHY="no grpc-status: 0 trailer"
    return 1
  fi
  if ! timeout 10 h2load -n1 -c1 -d "$OUT/data/req_$s.bin" "${H2HDR[@]}" "$url" 2>&1 |
    grep -q '1 succeeded, 0 failed, 0 errored'; then
    VERIFY_WHY="h2load -n1 did not succeed"
    return 1
  fi
  return 0
}

# --- 4. throughput and latency -----------------------------------------------
read -r -a SERVERS <<<"${BENCH_SERVERS:-uvgrpc grpc-go grpc-c++ nghttpd}"
SCENARIOS=("1x100:-c1 -m100" "16x10:-c16 -m10" "1x1:-c1 -m1")
CSV=$OUT/results.csv
echo "round,server,binary,size,scenario,seconds,requests,req_per_s,mean_latency_us,succeeded,failed,errored,timeout,responses_2xx,verified,server_died,server_cpu_s,client_cpu_s,client_wall_s" >"$CSV"

# cpu_s PID: user + system CPU seconds of a process and all its threads.
cpu_s() {
  awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null
}

# h2load_row: parses an h2load output into the CSV's numeric columns.
h2load_row() {
  "$PY" - "$1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
units = {"us": 1.0, "ms": 1e3, "s": 1e6}
rps = re.search(r"finished in [^,]*, ([\d.]+) req/s", t)
req = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                r"(\d+) failed, (\d+) errored, (\d+) timeout", t)
lat = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\s", t)
ok = re.search(r"status codes: (\d+) 2xx", t)  # warm-up included, as in cpu_s
if not (rps and req and lat and ok):
    print(",,,,,,,"); sys.exit()
print(",".join([req.group(2), rps.group(1), "%.1f" % (float(lat.group(1)) * units[lat.group(2)]),
                req.group(3), req.group(4), req.group(5), req.group(6), ok.group(1)]))
PY
}

log "throughput: $ROUNDS rounds, ${DUR}s per run after $WARM warm-up, server on core 0, h2load on core 1"
# Rounds go over every server in turn, so that a burst of load from something
# else on this 2-core machine hits one round rather than one server.
for round in $(seq "$ROUNDS"); do
for s in "${SIZES[@]}"; do
  for name in "${SERVERS[@]}"; do
    tag="${name}_${s}_r$round"
    if ! start_server "$name" "$s" "$tag"; then
      note "$tag: $name could not be built or started; not measured"
      continue
    fi
    # A peer that answers wrongly is reported, not measured.
    if ! verify "$name" "$s"; then
      note "$tag: $name answers wrongly ($VERIFY_WHY); not measured"
      stop_server "$name" "$tag"
      continue
    fi
    for sc in "${SCENARIOS[@]}"; do
      scn=${sc%%:*}
      raw=$OUT/raw/${name}_${s}_${scn}_r$round.txt
      # The server's CPU time over the measured part (sampled after the
      # warm-up) gives its cost per call; h2load's own CPU time tells whether
      # the client, not the server, was the limit.
      # shellcheck disable=SC2086 # the h2load flags are meant to split
      /usr/bin/time -f '%U %S %e' -o "$raw.time" \
        taskset -c 1 h2load -D "$DUR" --warm-up-time "$WARM" ${sc#*:} \
        -d "$OUT/data/req_$s.bin" "${H2HDR[@]}" "http://127.0.0.1:$SRV_PORT$URL_PATH" \
        >"$raw" 2>&1 &
      h2_pid=$!
      track "$h2_pid"
      sleep "$WARM_S"
      cpu0=$(cpu_s "$SRV_PID")
      wait "$h2_pid"
      untrack "$h2_pid"
      cpu1=$(cpu_s "$SRV_PID")
      srv_cpu=
      [ -n "$cpu0" ] && [ -n "$cpu1" ] &&
        srv_cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{printf "%.2f", b - a}')
      read -r cu cs cw <"$raw.time"
      cli_cpu=$(awk -v u="$cu" -v s="$cs" 'BEGIN{printf "%.2f", u + s}')
      row=$(h2load_row "$raw")
      died=no
      if ! alive "$SRV_PID"; then
        # A server that dies under load is a finding: report how, then start
        # it again so that the remaining scenarios are still measured.
        died=yes
        wait "$SRV_PID" 2>/dev/null
        rc=$?
        untrack "$SRV_PID"
        why="exit status $rc"
        [ "$rc" -eq 141 ] && why="killed by SIGPIPE (exit status 141)"
        [ "$rc" -gt 128 ] && [ "$rc" -ne 141 ] && why="killed by signal $((rc - 128))"
        note "$tag $scn: $name died during or right after the h2load run: $why"
        [ -s "$SRV_ERR" ] && note "$tag: $name stderr: $(head -c 300 "$SRV_ERR" | tr '\n' ' ')"
      fi
      echo "$round,$name,$(basename "$SRV_BIN"),$s,$scn,$DUR,$row,yes,$died,$srv_cpu,$cli_cpu,$cw" >>"$CSV"
      printf 'r%s %-9s %-4s %-6s %s\n' "$round" "$name" "$s" "$scn" \
        "$(grep -E '^finished|^requests:' "$raw" | tr '\n' ' ')" >&2
      IFS=, read -r _ _ _ nfailed nerrored ntimeout _ <<<"${row#*,}"
      if [ -z "$row" ] || [ "${row:0:1}" = , ]; then
        note "$tag $scn: h2load output not understood (see $raw)"
      elif [ "$nfailed$nerrored$ntimeout" != 000 ]; then
        note "$tag $scn: h2load counted failed=$nfailed errored=$nerrored timeout=$ntimeout"
      fi
      if [ "$died" = yes ]; then
        start_server "$name" "$s" "${tag}_restart" || { SRV_PID=; break; }
        verify "$name" "$s" || { note "$tag: after the restart: $VERIFY_WHY"; }
      fi
    done
    stop_server "$name" "$tag"
  done
done
done

# --- 5. RSS per idle connection ----------------------------------------------
# A fresh server, one call to settle lazy allocations, then NCONN connections
# that each make one call and stay open; (after - before) / NCONN. Then the
# same on another fresh server with connections that only exchange SETTINGS,
# which tells what the call leaves behind from what a connection costs.
RSS=$OUT/rss.csv
echo "server,mode,connections,ok,rss_before_kib,rss_after_kib,kib_per_conn" >"$RSS"
vmrss() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
log "RSS with $NCONN idle connections"
for name in "${SERVERS[@]}"; do
  for mode in call nocall; do
    tag="${name}_rss_$mode"
    start_server "$name" 18 "$tag" || { note "$tag: not measured"; continue; }
    verify "$name" 18 || note "$tag: $name answers wrongly ($VERIFY_WHY)"
    sleep 0.5
    before=$(vmrss "$SRV_PID")
    idle_out=$OUT/logs/idleconn_${name}_$mode.out
    taskset -c 1 "$IDLE_BIN" "$SRV_PORT" "$NCONN" "$OUT/data/req_18.bin" $mode \
      >"$idle_out" 2>"$OUT/logs/idleconn_${name}_$mode.err" &
    idle_pid=$!
    track "$idle_pid"
    for _ in $(seq 700); do grep -q '^ready' "$idle_out" && break; sleep 0.1; done
    # per-call state is freed at once; idle pages go back after a second
    sleep 2
    after=$(vmrss "$SRV_PID")
    okc=$(sed -n 's/^ready ok=\([0-9]*\).*/\1/p' "$idle_out")
    [ "${okc:-0}" -eq "$NCONN" ] || note "$tag: only ${okc:-0} of $NCONN idle connections got through"
    kill -TERM "$idle_pid" 2>/dev/null
    wait "$idle_pid" 2>/dev/null
    untrack "$idle_pid"
    per=$(awk -v a="$after" -v b="$before" -v n="$NCONN" 'BEGIN{printf "%.1f", (a-b)/n}')
    echo "$name,$mode,$NCONN,${okc:-0},$before,$after,$per" >>"$RSS"
    printf '%-9s %-6s RSS %s KiB -> %s KiB: %s KiB per idle connection\n' \
      "$name" "$mode" "$before" "$after" "$per" >&2
    stop_server "$name" "$tag"
  done
done

# --- 6. where uvgrpc spends its time (1x100, 18 B) ----------------------------
PROF=$OUT/profile.txt
: >"$PROF"
if [ "$PROFILE" = 1 ]; then
  log "profiling uvgrpc (1x100, 18 B)"
  if command -v perf >/dev/null && start_server uvgrpc 18 uvgrpc_profile; then
    url=http://127.0.0.1:$SRV_PORT$URL_PATH
    # Hardware counters are missing in most VMs; the cpu-clock timer samples
    # user and kernel time alike.
    if perf stat -e instructions true 2>&1 | grep -q 'not supported'; then
      ev=cpu-clock
    else
      ev=cycles
    fi
    perf record -e "$ev" -F 4000 -p "$SRV_PID" -o "$OUT/perf.data" \
      >"$OUT/logs/perf.log" 2>&1 &
    perf_pid=$!
    track "$perf_pid"
    sleep 0.5
    taskset -c 1 h2load -D 3 -c1 -m100 -d "$OUT/data/req_18.bin" "${H2HDR[@]}" "$url" \
      >"$OUT/raw/profile_h2load.txt" 2>&1
    kill -INT "$perf_pid"
    wait "$perf_pid"
    untrack "$perf_pid"
    if [ -s "$OUT/perf.data" ]; then
      {
        echo "perf record -e $ev, uvgrpc greeter under h2load -c1 -m100, 18 B, 3 s"
        echo "## by shared object"
        perf report -i "$OUT/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null |
          grep '%' | head -12
        echo "## top symbols"
        perf report -i "$OUT/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
          grep '%' | head -30
      } >>"$PROF"
    fi
    stop_server uvgrpc uvgrpc_profile
  fi
  # callgrind counts user-space instructions exactly (no kernel time).
  if command -v valgrind >/dev/null; then
    SRV_BIN=$UVG_SAMPLE
    SRV_ERR=$OUT/logs/uvgrpc_callgrind.err
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
      "$UVG_SAMPLE" --port 0 >"$OUT/logs/uvgrpc_callgrind.out" 2>"$SRV_ERR" &
    SRV_PID=$!
    track "$SRV_PID"
    for _ in $(seq 200); do
      SRV_PORT=$(sed -n 's/^listening on port \([0-9]*\)$/\1/p' "$OUT/logs/uvgrpc_callgrind.out")
      [ -n "$SRV_PORT" ] && break
      sleep 0.1
    done
    if [ -n "$SRV_PORT" ]; then
      taskset -c 1 h2load -n 20000 -c1 -m100 -d "$OUT/data/req_18.bin" "${H2HDR[@]}" \
        "http://127.0.0.1:$SRV_PORT$URL_PATH" >"$OUT/raw/callgrind_h2load.txt" 2>&1
      kill -TERM "$SRV_PID"
      wait "$SRV_PID"
      untrack "$SRV_PID"
      {
        calls=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$OUT/raw/callgrind_h2load.txt")
        total=$(callgrind_annotate "$OUT/callgrind.out" 2>/dev/null |
          sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
        echo "## callgrind, ${calls:-?} calls (-c1 -m100, 18 B): $((total / ${calls:-1})) instructions per call (start-up included)"
        echo "## self instructions"
        callgrind_annotate --inclusive=no "$OUT/callgrind.out" 2>/dev/null |
          grep -E '^ *[0-9,]+ \(' | grep -v 'PROGRAM TOTALS' | head -25
        echo "## inclusive, below uv_run"
        callgrind_annotate --inclusive=yes "$OUT/callgrind.out" 2>/dev/null |
          grep -E '^ *[0-9,]+ \(.*\[' |
          grep -vE 'PROGRAM TOTALS|ld-linux|below main|libc-start|:main |uv_run' | head -30
      } >>"$PROF"
    else
      kill -KILL "$SRV_PID" 2>/dev/null
      wait "$SRV_PID" 2>/dev/null
      untrack "$SRV_PID"
    fi
  fi
fi

# --- 7. table, plot, docs ----------------------------------------------------
# A subset run (BENCH_SERVERS/BENCH_SIZES) must not replace the full results
# in docs/: its table and plot stay in build/bench.
DOCS=$ROOT/docs
if [ -n "${BENCH_SERVERS:-}" ] || [ -n "${BENCH_SIZES:-}" ]; then
  DOCS=$OUT
  [ -f "$OUT/benchmarks.md" ] || cp "$ROOT/docs/benchmarks.md" "$OUT/benchmarks.md"
fi
"$PY" "$BENCH/report.py" --csv "$CSV" --rss "$RSS" --notes "$NOTES" --profile "$PROF" \
  --png "$DOCS/benchmarks.png" --md "$DOCS/benchmarks.md" \
  --seconds "$DUR" --warmup "$WARM" --conns "$NCONN" --rounds "$ROUNDS"
