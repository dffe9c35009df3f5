# Sourced by start.sh and stop.sh (needs $RUN): whether a component they started still runs.
# running NAME -> 0 if the pid in run/NAME.pid is alive and is our binary (argv[0] or, while
# still inside the setsid/sh launcher, a later argv word ends in /NAME)
running() {
  local name=$1 pid w
  [ -s "$RUN/$name.pid" ] || return 1
  pid=$(cat "$RUN/$name.pid")
  [ -r "/proc/$pid/cmdline" ] || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != "Z" ] || return 1
  while IFS= read -r -d '' w; do
    case "$w" in "$name"|*/"$name") return 0 ;; --*) return 1 ;; esac
  done < "/proc/$pid/cmdline"
  return 1
}
