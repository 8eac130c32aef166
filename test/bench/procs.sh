# Sourced by the benchmark scripts: every background process a script
# starts is tracked by pid, and dropped from the list once reaped, so that
# the exit trap ends only its own.
PIDS=()
track() { PIDS+=("$1"); }
untrack() {
  local p keep=()
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
# alive PID: running (an exited child stays a zombie until waited for).
alive() {
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)
  [ -n "$st" ] && [ "$st" != Z ]
}
cleanup() {
  local p
  [ ${#PIDS[@]} -gt 0 ] || return 0
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.5
  for p in "${PIDS[@]}"; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
