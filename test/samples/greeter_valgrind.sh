#!/usr/bin/env bash
# Runs the greeter server under valgrind, calls it with the Python grpcio
# client and with the C client (itself under valgrind), stops the server
# with SIGTERM and fails on any memory error or leak (definite, indirect or
# possible) in either program.
#   greeter_valgrind.sh GREETER_SERVER GREETER_CLIENT_PY GREETER_CLIENT
set -uo pipefail
server_bin=$1
client=$2
c_client=$3
out=$(mktemp)
log=$(mktemp)
trap 'rm -f "$out" "$log"' EXIT
valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect,possible \
  --error-exitcode=9 --log-file="$log" "$server_bin" --port 0 >"$out" &
vg=$!
for _ in $(seq 200); do grep -q "listening on port" "$out" && break; sleep 0.05; done
port=$(sed -n 's/^listening on port \([0-9]*\)$/\1/p' "$out")
if [ -z "$port" ]; then
  echo "server did not start"; kill -9 $vg; cat "$log"; exit 1
fi
rc=0
for name in one two three; do
  /usr/bin/python3 "$client" --port "$port" --name "$name" || rc=1
done
valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect,possible \
  --error-exitcode=9 "$c_client" --port "$port" --name four --count 3 || {
  echo "greeter_client failed or leaked"; rc=1; }
kill -TERM $vg
wait $vg
vrc=$?
if [ $vrc -ne 0 ]; then
  echo "valgrind exit status $vrc"
  cat "$log"
  rc=1
fi
grep -E "ERROR SUMMARY|definitely lost|indirectly lost|possibly lost" "$log"
exit $rc
