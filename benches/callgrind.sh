#!/usr/bin/env bash
# Counts a server's user-space instructions per echo round trip with
# valgrind's callgrind: deterministic where CPU time is noisy.
#
# usage: benches/callgrind.sh NAME SECONDS -- SERVER-COMMAND...
#   the server must print 'listening on ADDR' and take SIGINT/SIGTERM.
# Runs the server twice under callgrind: idle (start, stop) and under
# `loadgen echo --conns 100 --size 64` for SECONDS (SIZE=4096 in the
# environment for another message size); prints
#   NAME instructions_per_round_trip ROUND_TRIPS LOADED_IR IDLE_IR
set -euo pipefail
name=$1; seconds=$2; shift 3
here=$(cd "$(dirname "$0")/.." && pwd)
loadgen=${LOADGEN:-$here/target/release/examples/loadgen}
out=$(mktemp -d)

measure() {
    local load=$1; shift
    rm -f "$out"/cg.* "$out/listen"
    # taskset outside valgrind: valgrind does not follow an exec.
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" "$@" >"$out/listen" 2>"$out/vg.err" &
    local vg=$!
    for _ in $(seq 1 200); do grep -q "listening on" "$out/listen" 2>/dev/null && break; sleep 0.05; done
    local addr; addr=$(sed -n 's/^listening on //p' "$out/listen" | head -1)
    local trips=0
    if [ "$load" != 0 ]; then
        trips=$(taskset -c 1 "$loadgen" echo --addr "$addr" --conns 100 --size ${SIZE:-64} --warmup 0s --duration "${load}s" --json \
            | sed -n 's/.*"round_trips":\([0-9]*\).*/\1/p')
    fi
    kill -TERM "$vg" 2>/dev/null || true
    wait "$vg" 2>/dev/null || true
    local ir; ir=$(grep -m1 '^summary:' "$out/cg.out" | awk '{print $2}')
    echo "$ir $trips"
}

read -r idle _ < <(measure 0 "$@")
read -r loaded trips < <(measure "$seconds" "$@")
per=$(( (loaded - idle) / (trips > 0 ? trips : 1) ))
echo "$name $per $trips $loaded $idle"
rm -rf "$out"
