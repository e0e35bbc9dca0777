#!/usr/bin/env bash
# The game benchmark (docs/benchmarks.md, "Game"): how many players one
# game_server core holds at a 20 Hz tick. For each player count, ROUNDS
# rounds of: game_server pinned to CPU 0 on a field sized for its players
# (about 30 cells each), `loadgen game --players N` pinned to CPU 1, a
# warm-up while the join's announcements settle, then a measured window.
# Prints one JSON line per round (loadgen's report, with the server's own
# STATS: jitter and tick work).
#
# usage: benches/game.sh [PLAYERS...]     (default: 100 1000 5000)
#   ROUNDS=3 WINDOW=10s in the environment change the defaults.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$here/target/release/examples}
rounds=${ROUNDS:-3}
window=${WINDOW:-10s}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# A field of about 30 cells per player, 3:2.
field() {
    python3 -c "import math; n=$1; w=max(60, int(math.sqrt(n*30*1.5))); print(w, max(20, int(w/1.5)))"
}

for players in "${@:-100 1000 5000}"; do
    read -r width height < <(field "$players")
    warmup=$((2 + players / 500))s
    for _ in $(seq 1 "$rounds"); do
        taskset -c 0 "$bin/game_server" --addr 127.0.0.1:0 --width "$width" --height "$height" \
            --max-players $((players + 100)) --win-score 1000000 >"$out/listen" 2>"$out/server.err" &
        server=$!
        for _ in $(seq 1 100); do grep -q "listening on" "$out/listen" 2>/dev/null && break; sleep 0.05; done
        addr=$(sed -n 's/^listening on //p' "$out/listen" | head -1)
        taskset -c 1 "$bin/loadgen" game --addr "$addr" --players "$players" --warmup "$warmup" \
            --duration "$window" --server-pid "$server" --json || true
        kill -TERM "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    done
done
