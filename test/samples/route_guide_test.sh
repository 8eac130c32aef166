#!/usr/bin/env bash
# The route_guide sample: the client's four calls against the server, twice
# (the second RouteChat also hears the notes the first one left), then the
# server stops cleanly on SIGTERM.
#   route_guide_test.sh SERVER CLIENT
set -uo pipefail
server_bin=$1
client_bin=$2
out=$(mktemp)
trap 'rm -f "$out" "$out.c1" "$out.c2"; kill $server 2>/dev/null' EXIT
"$server_bin" --port 0 >"$out" &
server=$!
for _ in $(seq 200); do grep -q "listening on port" "$out" && break; sleep 0.05; done
port=$(sed -n 's/^listening on port \([0-9]*\)$/\1/p' "$out")
[ -n "$port" ] || { echo "route_guide_server did not start"; exit 1; }
"$client_bin" --port "$port" >"$out.c1" || { echo "first client run failed"; cat "$out.c1"; exit 1; }
"$client_bin" --port "$port" >"$out.c2" || { echo "second client run failed"; cat "$out.c2"; exit 1; }
cat "$out.c1"
fails=0
expect() { # FILE LINE
  grep -qxF -- "$2" "$1" || { echo "missing in $1: $2"; fails=$((fails + 1)); }
}
expect "$out.c1" "GetFeature: Old Mill, 3 River Lane at 40.7838351, -74.6143763"
expect "$out.c1" "GetFeature: nothing at 0.0000000, 0.0000000"
expect "$out.c1" "ListFeatures: Quarry Lookout at 41.2950425, -74.1077389"
expect "$out.c1" "ListFeatures: 7 features"
expect "$out.c1" "RecordRoute: 4 points, 3 features, 183862 m"
expect "$out.c1" 'RouteChat: "first note at A" was left at 0.0000001, 0.0000001'
expect "$out.c1" "RouteChat: done"
[ "$(grep -c '^RouteChat: "' "$out.c1")" = 2 ] || { echo "first RouteChat: not 2 notes"; fails=$((fails + 1)); }
# the second run: each note hears the earlier ones at its point (2+2+3+3)
[ "$(grep -c '^RouteChat: "' "$out.c2")" = 10 ] || { echo "second RouteChat: not 10 notes"; cat "$out.c2"; fails=$((fails + 1)); }
kill -TERM $server
wait $server
rc=$?
[ $rc -eq 0 ] || { echo "server exit status $rc"; fails=$((fails + 1)); }
[ $fails -eq 0 ] && echo "route_guide sample works"
exit $((fails > 0))
