#!/usr/bin/env bash
# The custom-resolver sample against two greeter servers: it starts with
# the one address in its file, the file then lists both, and every call is
# answered; the sample must have seen the change.
#   file_resolver_test.sh GREETER_SERVER FILE_RESOLVER
set -uo pipefail
server_bin=$1
sample=$2
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
ports=()
for i in 0 1; do
  "$server_bin" --port 0 >"$dir/server$i.out" 2>&1 &
  pids+=($!)
done
for i in 0 1; do
  for _ in $(seq 200); do grep -q "listening on port" "$dir/server$i.out" && break; sleep 0.05; done
  ports+=("$(sed -n 's/^listening on port \([0-9]*\)$/\1/p' "$dir/server$i.out")")
  [ -n "${ports[$i]}" ] || { echo "server $i did not start"; exit 1; }
done
echo "127.0.0.1:${ports[0]}" >"$dir/backends.txt"
"$sample" --file "$dir/backends.txt" --count 20 --interval-ms 100 >"$dir/out" 2>&1 &
sample_pid=$!
# the change must come after the first resolution, however slow the start
for _ in $(seq 200); do grep -q "1 address in" "$dir/out" && break; sleep 0.05; done
# written in place: the sample watches the file's inode
printf '# both now\n127.0.0.1:%s\n127.0.0.1:%s\n' "${ports[0]}" "${ports[1]}" >"$dir/backends.txt"
wait $sample_pid
rc=$?
cat "$dir/out"
[ $rc -eq 0 ] || { echo "the sample failed ($rc)"; exit 1; }
grep -q "1 address in" "$dir/out" || { echo "no first resolution"; exit 1; }
grep -q "2 addresses in" "$dir/out" || { echo "the file change was not seen"; exit 1; }
[ "$(grep -c '^reply: Hello file resolver$' "$dir/out")" -eq 20 ] || { echo "not 20 replies"; exit 1; }
echo "ok"
