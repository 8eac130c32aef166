#!/usr/bin/env bash
# TLS benchmark: the unary greeter over TLS beside plaintext in the same run,
# TLS handshakes per second with the server on one core, and the server's
# RSS per idle TLS connection, for uvgrpc, grpc-go and gRPC C++, all serving
# gRPC's test certificate (server1.pem: RSA 2048). See docs/benchmarks.md.
#
#   bash test/bench/tls_run.sh
#
# Environment:
#   BENCH_SECONDS     measured seconds per h2load run (default 5)
#   BENCH_WARMUP      h2load warm-up, in h2load's units (default 1)
#   BENCH_ROUNDS      rounds of the throughput runs over all servers; the
#                     best round counts (default 2)
#   BENCH_HANDSHAKES  connections, one call each, for the handshake rate
#                     (default 1000)
#   BENCH_CONNS       idle connections for the RSS measurement (default 1000)
#   BENCH_SERVERS     a subset of "uvgrpc grpc-go grpc-c++"
#
# Servers run on core 0 (grpc-go with GOMAXPROCS=1), the clients (h2load,
# the idle-connection clients) on core 1. Raw results go to
# build/bench/tls/; the table replaces the generated part of the TLS
# section of docs/benchmarks.md (for a full run). Every server binds
# 127.0.0.1 only and is stopped on exit. About 4 minutes.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BENCH=$ROOT/test/bench
OUT=$ROOT/build/bench
TOUT=$OUT/tls
DUR=${BENCH_SECONDS:-5}
WARM=${BENCH_WARMUP:-1}
NHS=${BENCH_HANDSHAKES:-1000}
NCONN=${BENCH_CONNS:-1000}
ROUNDS=${BENCH_ROUNDS:-2}
PY=/usr/bin/python3
PROTO_DIR=/usr/share/grpc-proto/grpc/examples
TD=/usr/share/gocode/src/google.golang.org/grpc/testdata
CERT=$TD/server1.pem
KEY=$TD/server1.key
NAME=foo.test.google.fr

# what else kept the machine busy, before this script adds its own load
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
log() { printf '== %s\n' "$*" >&2; }
die() { printf 'tls_run.sh: %s\n' "$*" >&2; exit 1; }

bash "$ROOT/.ci/deps.sh" \
  nghttp2-client golang-go golang-google-grpc-dev golang-goprotobuf-dev \
  protoc-gen-go-grpc libgrpc++-dev protobuf-compiler-grpc || die "installing packages failed"

mkdir -p "$OUT"/{logs,bin} "$TOUT"/raw
rm -f "$TOUT"/raw/*
[ -f build/build.ninja ] || meson setup build >/dev/null || die "meson setup failed"
log "building uvgrpc"
ninja -C build >/dev/null || { ninja -C build; die "ninja failed"; }
UVG_BIN=$ROOT/build/samples/helloworld/greeter_server
TLS_IDLE=$ROOT/build/test/bench/tls_idle
. "$BENCH/peers.sh"
IDLE_BIN=$OUT/bin/idleconn
if stale "$IDLE_BIN" "$BENCH/idleconn.c"; then
  cc -O2 -Wall -o "$IDLE_BIN" "$BENCH/idleconn.c" \
    $(pkg-config --cflags --libs libnghttp2 libuv) || die "idleconn build failed"
fi

# The 18-byte greeting, gRPC-framed, as run.sh makes it.
REQ=$TOUT/req_18.bin
printf '\0\0\0\0\7\n\5world' >"$REQ"

ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"
. "$BENCH/procs.sh"

# start NAME MODE TAG: starts a server on core 0; sets SRV_PID, SRV_PORT.
start() {
  local name=$1 mode=$2 tag=$3 out=$TOUT/raw/$3.out bin args=()
  [ "$mode" = tls ] && args=(--tls --cert "$CERT" --key "$KEY")
  case $name in
  uvgrpc) bin=$UVG_BIN ;;
  grpc-go) bin=${GO_BIN:-} ;;
  grpc-c++) bin=${CPP_BIN:-} ;;
  esac
  [ -n "$bin" ] && [ -x "$bin" ] || return 1
  if [ "$name" = grpc-go ]; then
    GOMAXPROCS=1 taskset -c 0 "$bin" --port 0 "${args[@]}" >"$out" 2>"$TOUT/raw/$tag.err" &
  else
    taskset -c 0 "$bin" --port 0 "${args[@]}" >"$out" 2>"$TOUT/raw/$tag.err" &
  fi
  SRV_PID=$!
  track "$SRV_PID"
  for _ in $(seq 100); do
    SRV_PORT=$(sed -n 's/^listening on port \([0-9]*\)$/\1/p' "$out")
    [ -n "$SRV_PORT" ] && return 0
    alive "$SRV_PID" || break
    sleep 0.1
  done
  stop
  return 1
}

stop() {
  [ -n "${SRV_PID:-}" ] || return 0
  kill -TERM "$SRV_PID" 2>/dev/null
  for _ in $(seq 50); do alive "$SRV_PID" || break; sleep 0.1; done
  alive "$SRV_PID" && kill -KILL "$SRV_PID"
  wait "$SRV_PID" 2>/dev/null
  untrack "$SRV_PID"
  SRV_PID=
}

cpu_s() {
  awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null
}
vmrss() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }

url() { # MODE
  local scheme=http
  [ "$1" = tls ] && scheme=https
  echo "$scheme://127.0.0.1:$SRV_PORT/helloworld.Greeter/SayHello"
}
H2HDR=(-H 'content-type: application/grpc' -H 'te: trailers')

# h2load_stat FILE: "req_per_s succeeded failed"
h2load_stat() {
  "$PY" - "$1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
rps = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", t)
req = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", t)
if not (rps and req):
    print("- - - -"); sys.exit()
secs = float(rps.group(1)) / (1000 if rps.group(2) == "ms" else 1)
print(rps.group(3), req.group(1), req.group(2), "%.3f" % secs)
PY
}

read -r -a SERVERS <<<"${BENCH_SERVERS:-uvgrpc grpc-go grpc-c++}"
CSV=$TOUT/results.csv
echo "server,mode,measure,value,unit,detail" >"$CSV"
row() { echo "$1,$2,$3,$4,$5,$6" >>"$CSV"; printf '%-9s %-5s %-22s %s %s %s\n' "$@" >&2; }

WARM_S=$(awk -v w="$WARM" 'BEGIN{ if (w ~ /ms$/) print w / 1000; else { sub(/s$/, "", w); print w + 0 } }')

log "unary, 18 B: plaintext and TLS, ${DUR}s per run after $WARM warm-up, $ROUNDS rounds"
# Rounds go over every server in turn, so that a burst of load from
# something else on this machine hits one round rather than one server.
for round in $(seq "$ROUNDS"); do
for name in "${SERVERS[@]}"; do
  for mode in plain tls; do
    tag=${name}_$mode
    start "$name" "$mode" "$tag" || { row "$name" "$mode" unavailable 0 - "not built or not started"; continue; }
    # one call first: a server that answers wrongly is not measured
    if ! timeout 10 h2load -n1 -c1 -d "$REQ" "${H2HDR[@]}" "$(url $mode)" 2>&1 |
      grep -q '1 succeeded'; then
      row "$name" "$mode" unavailable 0 - "the first call failed"
      stop
      continue
    fi
    for sc in "1x100:-c1 -m100" "16x10:-c16 -m10"; do
      raw=$TOUT/raw/${tag}_${sc%%:*}.txt
      # shellcheck disable=SC2086
      taskset -c 1 h2load -D "$DUR" --warm-up-time "$WARM" ${sc#*:} -d "$REQ" "${H2HDR[@]}" \
        "$(url $mode)" >"$raw" 2>&1 &
      h=$!
      track "$h"
      sleep "$WARM_S"
      c0=$(cpu_s "$SRV_PID")
      wait "$h"
      untrack "$h"
      c1=$(cpu_s "$SRV_PID")
      read -r rps okc failc _ < <(h2load_stat "$raw")
      us=$(awk -v a="$c0" -v b="$c1" -v n="$rps" -v d="$DUR" 'BEGIN{ if (n > 0) printf "%.1f", (b - a) * 1e6 / (n * d); else print "-" }')
      row "$name" "$mode" "unary_${sc%%:*}" "$rps" "req/s" "round=$round ok=$okc failed=$failc cpu_us_per_call=$us"
    done
    stop
  done
done
done

log "TLS handshakes: $NHS connections at once, one call each"
for name in "${SERVERS[@]}"; do
  tag=${name}_handshakes
  start "$name" tls "$tag" || continue
  raw=$TOUT/raw/$tag.txt
  c0=$(cpu_s "$SRV_PID")
  taskset -c 1 h2load -n "$NHS" -c "$NHS" -m 1 -d "$REQ" "${H2HDR[@]}" "$(url tls)" >"$raw" 2>&1
  c1=$(cpu_s "$SRV_PID")
  read -r _ okc failc secs < <(h2load_stat "$raw")
  wall=$(awk -v n="$okc" -v s="$secs" 'BEGIN{ if (s > 0) printf "%.0f", n / s; else print "-" }')
  percpu=$(awk -v n="$okc" -v a="$c0" -v b="$c1" 'BEGIN{ if (b > a) printf "%.0f", n / (b - a); else print "-" }')
  row "$name" tls handshakes_per_s "$wall" "conn/s" "ok=$okc failed=$failc wall_s=$secs"
  row "$name" tls handshakes_per_cpu_s "$percpu" "conn/s" "server_cpu_s=$(awk -v a="$c0" -v b="$c1" 'BEGIN{printf "%.2f", b - a}')"
  stop
done

log "RSS per idle connection: $NCONN connections, one call each"
for name in "${SERVERS[@]}"; do
  for mode in plain tls; do
    tag=${name}_rss_$mode
    start "$name" "$mode" "$tag" || continue
    sleep 0.5
    before=$(vmrss "$SRV_PID")
    out=$TOUT/raw/${tag}_client.out
    if [ "$mode" = tls ]; then
      taskset -c 1 "$TLS_IDLE" "$SRV_PORT" "$NCONN" "$REQ" call "$TD/ca.pem" "$NAME" \
        >"$out" 2>"$TOUT/raw/${tag}_client.err" &
    else
      taskset -c 1 "$IDLE_BIN" "$SRV_PORT" "$NCONN" "$REQ" call \
        >"$out" 2>"$TOUT/raw/${tag}_client.err" &
    fi
    c=$!
    track "$c"
    for _ in $(seq 900); do grep -q '^ready' "$out" && break; sleep 0.1; done
    sleep 1
    after=$(vmrss "$SRV_PID")
    okc=$(sed -n 's/^ready ok=\([0-9]*\).*/\1/p' "$out")
    kill -TERM "$c" 2>/dev/null
    wait "$c" 2>/dev/null
    untrack "$c"
    per=$(awk -v a="$after" -v b="$before" -v n="$NCONN" 'BEGIN{printf "%.1f", (a - b) / n}')
    row "$name" "$mode" rss_per_idle_conn "$per" "KiB" "ok=${okc:-0}/$NCONN before=${before}KiB after=${after}KiB"
    stop
  done
done

# The table, into docs/benchmarks.md unless this was a subset.
DOC=$ROOT/docs/benchmarks.md
[ -n "${BENCH_SERVERS:-}" ] && DOC=$TOUT/benchmarks.md && { [ -f "$DOC" ] || cp "$ROOT/docs/benchmarks.md" "$DOC"; }
"$PY" - "$CSV" "$DOC" "$DUR" "$NHS" "$NCONN" "$(nproc)" "$ROUNDS" "$LOAD" <<'PY'
import csv, sys, datetime
rows = list(csv.DictReader(open(sys.argv[1])))
doc, dur, nhs, nconn, ncpu, rounds, load = sys.argv[2:9]
def num(r):
    try:
        return float(r["value"])
    except ValueError:
        return -1.0
val = {}  # the best round of each measure
for r in rows:
    k = (r["server"], r["mode"], r["measure"])
    if k not in val or num(r) > num(val[k]):
        val[k] = r
servers = []
for r in rows:
    if r["server"] not in servers:
        servers.append(r["server"])
def v(s, m, k, fmt="{:,.0f}"):
    r = val.get((s, m, k))
    if not r or r["value"] in ("", "-"):
        return "n/a"
    try:
        return fmt.format(float(r["value"]))
    except ValueError:
        return r["value"]
def cpu(s, m, k):
    r = val.get((s, m, k))
    if not r:
        return "n/a"
    for part in r["detail"].split():
        if part.startswith("cpu_us_per_call="):
            return part.split("=")[1]
    return "n/a"
out = [f"Run of {datetime.date.today()}: {dur} s per h2load run, best of {rounds} "
       f"rounds, server on core 0, clients on core 1 ({ncpu} cores; load average "
       f"{load} before the run), gRPC's test certificate (RSA 2048), 18-byte reply. "
       "TLS/plain is the share of plaintext throughput kept over TLS.", "",
       "| server | unary 1x100 plain | unary 1x100 TLS | TLS/plain | unary 16x10 plain | unary 16x10 TLS | TLS/plain | µs CPU per call, 1x100 plain / TLS |",
       "|---|---:|---:|---:|---:|---:|---:|---:|"]
for s in servers:
    cells = [s]
    for sc in ("1x100", "16x10"):
        p, t = v(s, "plain", "unary_" + sc), v(s, "tls", "unary_" + sc)
        try:
            ratio = "%.0f%%" % (100 * float(val[(s, "tls", "unary_" + sc)]["value"]) /
                                float(val[(s, "plain", "unary_" + sc)]["value"]))
        except (KeyError, ValueError, ZeroDivisionError):
            ratio = "n/a"
        cells += [p, t, ratio]
    cells.append(f"{cpu(s, 'plain', 'unary_1x100')} / {cpu(s, 'tls', 'unary_1x100')}")
    out.append("| " + " | ".join(cells) + " |")
out += ["", f"TLS handshakes ({nhs} connections opened at once, one call each; "
        "full handshakes, ECDHE + RSA 2048, no resumption):", "",
        "| server | handshakes/s (wall) | handshakes per server CPU-second |",
        "|---|---:|---:|"]
for s in servers:
    out.append(f"| {s} | {v(s, 'tls', 'handshakes_per_s')} | {v(s, 'tls', 'handshakes_per_cpu_s')} |")
out += ["", f"Server RSS per idle connection ({nconn} connections, one call each, "
        "then idle):", "", "| server | plaintext KiB | TLS KiB | TLS extra |", "|---|---:|---:|---:|"]
for s in servers:
    p, t = v(s, "plain", "rss_per_idle_conn", "{:.1f}"), v(s, "tls", "rss_per_idle_conn", "{:.1f}")
    try:
        extra = "%.1f" % (float(t) - float(p))
    except ValueError:
        extra = "n/a"
    out.append(f"| {s} | {p} | {t} | {extra} |")
begin = "<!-- BEGIN GENERATED by test/bench/tls_run.sh: do not edit by hand -->"
end = "<!-- END GENERATED tls -->"
text = open(doc).read()
block = begin + "\n" + "\n".join(out) + "\n" + end
if begin in text:
    a = text.index(begin)
    b = text.index(end) + len(end)
    text = text[:a] + block + text[b:]
else:
    text = text.rstrip("\n") + "\n\n# TLS\n\n" + block + "\n"
open(doc, "w").write(text)
print("\n".join(out))
PY
