#!/usr/bin/env bash
# The embedding sample: its own line service and timer keep working beside
# gRPC on one loop; Hash calls are answered from the thread pool through
# uvg_post(); Count sees all of it; SIGTERM stops everything, also with a
# line client still connected.
#   embedding_test.sh SERVER CLIENT
set -uo pipefail
server_bin=$1
client_bin=$2
out=$(mktemp)
trap 'rm -f "$out" "$out.c"; kill $server 2>/dev/null' EXIT
"$server_bin" --port 0 >"$out" &
server=$!
for _ in $(seq 200); do grep -q "listening on port" "$out" && break; sleep 0.05; done
port=$(sed -n 's/^listening on port \([0-9]*\),.*/\1/p' "$out")
lport=$(sed -n 's/.*lines on port \([0-9]*\)$/\1/p' "$out")
[ -n "$port" ] && [ -n "$lport" ] || { echo "embedded_server did not start"; exit 1; }
fails=0
exec 3<>"/dev/tcp/127.0.0.1/$lport"
printf 'one line\nanother\n' >&3
read -r -t 5 a <&3
read -r -t 5 b <&3
[ "$a/$b" = "ONE LINE/ANOTHER" ] || { echo "line service answered '$a' '$b'"; fails=$((fails + 1)); }
sleep 0.3 # a few timer ticks
"$client_bin" --port "$port" --hashes 8 --rounds 20000 >"$out.c" || {
  echo "work_client failed"; fails=$((fails + 1)); }
cat "$out.c"
[ "$(grep -c '^Hash [0-7]: [0-9a-f]\{16\}$' "$out.c")" = 8 ] || { echo "not 8 hashes"; fails=$((fails + 1)); }
# FNV-1a of "block 0", 20000 rounds, as the server computes it
grep -qx "Hash 0: $(/usr/bin/python3 -c '
h = 14695981039346656037
for _ in range(20000):
    for c in b"block 0":
        h = ((h ^ c) * 1099511628211) % 2**64
print(f"{h:016x}")')" "$out.c" || { echo "Hash 0 is not FNV-1a"; fails=$((fails + 1)); }
line=$(grep '^Count: ' "$out.c")
ticks=$(echo "$line" | sed -n 's/^Count: 8 hashes, 2 lines, \([0-9]*\) ticks$/\1/p')
[ -n "$ticks" ] && [ "$ticks" -ge 2 ] || { echo "Count said: $line"; fails=$((fails + 1)); }
kill -TERM $server # fd 3 still connected
wait $server
rc=$?
exec 3<&-
[ $rc -eq 0 ] || { echo "server exit status $rc"; fails=$((fails + 1)); }
[ $fails -eq 0 ] && echo "embedding sample works"
exit $((fails > 0))
