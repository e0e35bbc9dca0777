#!/usr/bin/env bash
# The benchmark runner: builds everything in release mode, runs every
# workload against the reactor and each baseline, alternating servers round
# by round (5 rounds, medians; each round starts with a different server),
# pins each server to CPU 0 and the load
# generator to CPU 1, and writes docs/benchmarks.md and docs/img/*.svg.
#
# usage: benches/run.sh            (about 13 minutes on 2 cores)
#        QUICK=1 benches/run.sh    (one round, short windows: a smoke run)
#        ONLY="tls callgrind" benches/run.sh
#                                  (those sections only; the other results of
#                                   the last run are kept)
#
# Sections: echo chat hold strace callgrind tls ws kv (kv: benches/kv.sh, redis-benchmark
# against kv_server and redis-server; needs redis-server and redis-tools) pubsub
# (benches/pubsub.sh: chat_server against Redis pub/sub, and the chat cluster).
# CARGO_TARGET_DIR, when set, is where the crate's binaries are built and
# found; the baselines always build in their own target/.
# Needs: taskset, strace, valgrind (callgrind), python3, openssl. Results (one JSON
# line per run) go to benches/results/latest.jsonl; benches/report.py turns
# them into the document.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

rounds=${ROUNDS:-5}
window=${WINDOW:-3s}
warmup=${WARMUP:-1s}
if [ -n "${QUICK:-}" ]; then rounds=1; window=1s; warmup=0.5s; fi

results=benches/results/latest.jsonl
mkdir -p benches/results docs/img
log() { echo "[$(date +%T)] $*" >&2; }
# Which sections run; with ONLY, the results of the others are kept.
only=${ONLY:-}
want() { [ -z "$only" ] || [[ " $only " == *" $1 "* ]]; }
if [ -z "$only" ]; then
    : > "$results"
else
    touch "$results"
    python3 - "$results" "$only" <<'PY'
import json, sys
path, only = sys.argv[1], sys.argv[2].split()
def section(r):
    w = r.get("workload", "")
    for name in ("echo", "chat", "hold", "strace", "callgrind", "tls", "ws"):
        if w == name or w.startswith(name + "-"):
            return name
    return None
kept = [l for l in open(path) if l.strip() and section(json.loads(l)) not in only]
open(path, "w").writelines(kept)
PY
fi

# ----- build ------------------------------------------------------------------
log "building (release)"
cargo build --release --quiet --example echo_server --example chat_server --example loadgen
bin=${CARGO_TARGET_DIR:-$root/target}/release/examples
# The baselines the wanted sections run.
baselines=()
if want echo || want hold || want strace || want callgrind; then baselines+=(epoll_echo tokio_echo); fi
if want chat; then baselines+=(tokio_chat); fi
if want tls; then baselines+=(tokio_tls_echo); fi
if want ws; then baselines+=(tokio_ws_chat); fi
for b in "${baselines[@]}"; do
    (cd "benches/baselines/$b" && env -u CARGO_TARGET_DIR cargo build --release --quiet)
done
loadgen=$bin/loadgen

# A certificate for the TLS runs, made for this run (not the demo pair).
pki=$(mktemp -d)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 1 -nodes \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" \
    -addext "basicConstraints=critical,CA:FALSE" -keyout "$pki/key.pem" -out "$pki/cert.pem" 2>/dev/null

# Servers: name, then the command (prints 'listening on ADDR').
declare -A server=(
    [ours]="$bin/echo_server --addr 127.0.0.1:0 --max-conns 30000"
    [epoll]="$root/benches/baselines/epoll_echo/target/release/epoll_echo 127.0.0.1:0"
    [tokio-ct]="$root/benches/baselines/tokio_echo/target/release/tokio_echo 127.0.0.1:0 current"
    [tokio-mt]="$root/benches/baselines/tokio_echo/target/release/tokio_echo 127.0.0.1:0 multi"
    [ours-chat]="$bin/chat_server --addr 127.0.0.1:0 --json-addr 127.0.0.1:0 --max-clients 30000"
    [tokio-chat]="$root/benches/baselines/tokio_chat/target/release/tokio_chat 127.0.0.1:0"
    [ours-tls]="$bin/echo_server --tls-addr 127.0.0.1:0 --cert $pki/cert.pem --key $pki/key.pem"
    [tokio-tls]="$root/benches/baselines/tokio_tls_echo/target/release/tokio_tls_echo 127.0.0.1:0 $pki/cert.pem $pki/key.pem current"
    # WebSocket fan-out: chat_server's web listener, its line and JSON listeners
    # (the same server: the line protocol's figure, and the same JSON objects
    # framed by newlines), and the two tokio ports.
    [ours-ws]="$bin/chat_server --addr 127.0.0.1:0 --json-addr 127.0.0.1:0 --web-addr 127.0.0.1:0 --max-clients 30000"
    [ours-line]="$bin/chat_server --addr 127.0.0.1:0 --json-addr 127.0.0.1:0 --max-clients 30000"
    [ours-ndjson]="$bin/chat_server --addr 127.0.0.1:0 --json-addr 127.0.0.1:0 --max-clients 30000"
    [tokio-ws]="$root/benches/baselines/tokio_ws_chat/target/release/tokio_ws_chat 127.0.0.1:0"
    [tokio-ws-batch]="$root/benches/baselines/tokio_ws_chat/target/release/tokio_ws_chat 127.0.0.1:0 --batch"
)
# The listener a server's load goes to: the one printed 'listening on ADDR (TAG)'
# when the server has a TAG here, the Nth 'listening on' when it has a number N,
# else the first.
declare -A listener=([ours-ws]="web" [ours-ndjson]=2)

# As many descriptors as allowed, for the servers and the load generator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

SERVER_PID=""; SERVER_ADDR=""
start_server() { # $1 = server name
    local out; out=$(mktemp)
    local tag=${listener[$1]:-} nth=1 pattern
    case $tag in
        [0-9]*) nth=$tag; pattern="^listening on " ;;
        *) pattern="^listening on [^ ]*${tag:+ ($tag)}" ;;
    esac
    # shellcheck disable=SC2086
    taskset -c 0 ${server[$1]} >"$out" 2>/dev/null &
    SERVER_PID=$!
    for _ in $(seq 1 200); do [ "$(grep -c "$pattern" "$out")" -ge "$nth" ] && break; sleep 0.05; done
    # Where the shell interposed a subshell, the server is its child.
    local child; child=$(pgrep -P "$SERVER_PID" | head -1 || true)
    [ -n "$child" ] && SERVER_PID=$child
    SERVER_ADDR=$(grep "$pattern" "$out" | sed -n 's/^listening on \([^ ]*\).*/\1/p' | sed -n "${nth}p")
    rm -f "$out"
    [ -n "$SERVER_ADDR" ] || { log "$1 did not start"; exit 1; }
}
stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}

# Runs the load generator against the running server; adds the server's name
# and the workload's label to the JSON line it prints.
load() { # $1 = server name, $2 = workload label, rest = loadgen arguments
    local name=$1 label=$2; shift 2
    local line
    line=$(taskset -c 1 "$loadgen" "$@" --addr "$SERVER_ADDR" --server-pid "$SERVER_PID" --json 2>/dev/null || true)
    [ -n "$line" ] || line='{"failed":true}'
    echo "{\"server\":\"$name\",\"workload\":\"$label\",${line#\{}" >> "$results"
}

# The servers in an order that shifts by one each round, so none always runs
# first (or right after the same neighbour).
rotate() { # $1 = round, then the servers
    local round=$1; shift
    local n=$# i
    local all=("$@")
    for ((i = 0; i < n; i++)); do echo "${all[$(( (i + round - 1) % n ))]}"; done
}

# ----- echo -------------------------------------------------------------------
if want echo; then
echo_workloads=("1x64:1:64:1" "100x64:100:64:1" "100x4096:100:4096:1" "100x64p16:100:64:16" "1000x64:1000:64:1")
for round in $(seq 1 "$rounds"); do
    for w in "${echo_workloads[@]}"; do
        IFS=: read -r label conns size pipeline <<<"$w"
        for s in $(rotate "$round" ours epoll tokio-ct tokio-mt); do
            log "echo $label round $round: $s"
            start_server "$s"
            load "$s" "echo-$label" echo --conns "$conns" --size "$size" --pipeline "$pipeline" --warmup "$warmup" --duration "$window"
            stop_server
        done
    done
done

fi

# ----- chat -------------------------------------------------------------------
if want chat; then
for round in $(seq 1 "$rounds"); do
    for clients in 100 1000; do
        for s in $(rotate "$round" ours-chat tokio-chat); do
            log "chat $clients clients round $round: $s"
            start_server "$s"
            load "$s" "chat-$clients" chat --clients "$clients" --senders 1 --max-in-flight 100000 \
                --warmup "$warmup" --duration "$window" --drain 5s
            stop_server
        done
    done
done
# The sender unlimited: what memory does each server grow to?
for s in ours-chat tokio-chat; do
    log "chat unlimited sender: $s"
    start_server "$s"
    load "$s" "chat-unlimited" chat --clients 100 --senders 1 --max-in-flight 0 --warmup 0s --duration 5s --drain 1s
    stop_server
done

fi

# ----- idle connections ------------------------------------------------------
if want hold; then
for s in ours epoll tokio-ct; do
    log "hold 10000: $s"
    start_server "$s"
    load "$s" "hold-10000" hold --conns 10000 --seconds 2 --src-ips 127.0.0.2-127.0.0.9
    stop_server
done
# As many as the descriptor limit allows, on one thread.
limit=$(ulimit -Hn)
most=$(( limit - 64 ))
log "hold $most (the limit is $limit): ours"
start_server ours
load ours "hold-max" hold --conns "$most" --seconds 2 --src-ips 127.0.0.2-127.0.0.9
stop_server

fi

# ----- system calls -----------------------------------------------------------
if want strace; then
# strace -c on the server for 3 s under 100 x 64 B: calls per round trip.
for s in ours epoll tokio-ct; do
    log "strace: $s"
    start_server "$s"
    taskset -c 1 "$loadgen" echo --addr "$SERVER_ADDR" --conns 100 --size 64 --warmup 1s --duration 5s --json >/dev/null 2>&1 &
    lg=$!
    sleep 1.5
    out=$(mktemp)
    timeout -s INT 3 strace -c -f -p "$SERVER_PID" -o "$out" >/dev/null 2>&1 || true
    wait "$lg" 2>/dev/null || true
    stop_server
    python3 - "$s" "$out" >>"$results" <<'PY'
import json, re, sys
name, path = sys.argv[1], sys.argv[2]
calls = {}
for line in open(path):
    m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
    if m and m.group(2) != "total":
        calls[m.group(2)] = int(m.group(1))
writes = sum(calls.get(k, 0) for k in ("sendto", "write", "writev", "sendmsg"))
total = sum(calls.values())
print(json.dumps({"server": name, "workload": "strace", "calls": calls, "writes": writes,
                  "total": total, "per_round_trip": round(total / writes, 3) if writes else None}))
PY
    rm -f "$out"
done

fi

# ----- instructions -------------------------------------------------------------
if want callgrind; then
for s in ours epoll tokio-ct; do
    log "callgrind: $s"
    # shellcheck disable=SC2086
    line=$(LOADGEN=$loadgen benches/callgrind.sh "$s" 4 -- ${server[$s]})
    read -r n per trips loaded idle <<<"$line"
    echo "{\"server\":\"$n\",\"workload\":\"callgrind\",\"instructions_per_round_trip\":$per,\"round_trips\":$trips,\"loaded_ir\":$loaded,\"idle_ir\":$idle}" >>"$results"
done

fi

# ----- TLS echo -------------------------------------------------------------------
# The same rustls (0.23), provider (ring) and defaults on both sides, with
# the cipher suite the two negotiate (TLS 1.3, AES-128-GCM first by default).
if want tls; then
tls_workloads=("100x64:100:64" "100x16384:100:16384")
for round in $(seq 1 "$rounds"); do
    for w in "${tls_workloads[@]}"; do
        IFS=: read -r label conns size <<<"$w"
        for s in $(rotate "$round" ours-tls tokio-tls); do
            log "tls echo $label round $round: $s"
            start_server "$s"
            load "$s" "tls-$label" echo --tls "$pki/cert.pem" --conns "$conns" --size "$size" --warmup "$warmup" --duration "$window"
            stop_server
        done
    done
done
fi
rm -rf "$pki"

# ----- WebSocket fan-out ----------------------------------------------------------
# `loadgen chat --ws`: the chat workload above over JSON-over-WebSocket, against
# chat_server --web-addr and the tokio-tungstenite port of tokio's chat example
# (a flush per message, as the example does; and batching its flushes). ours-line
# and ours-ndjson are the same chat_server over the line protocol and over NDJSON
# (the same JSON objects as the WebSocket's, framed by newlines), in the same rounds.
if want ws; then
ws_servers=(ours-ws tokio-ws tokio-ws-batch ours-line ours-ndjson)
ws_wire() {
    case $1 in
        ours-line) ;;
        ours-ndjson) echo --ndjson ;;
        *) echo --ws ;;
    esac
}
# Up to 100,000 messages in flight to 999 receivers are 100 million deliveries
# still to make when the window ends: 5 s (the chat section's drain) is too
# short to see them all arrive at 1,000 clients, so every server gets 30 s.
ws_drain=${WS_DRAIN:-30s}
for round in $(seq 1 "$rounds"); do
    for clients in 100 1000; do
        for s in $(rotate "$round" "${ws_servers[@]}"); do
            log "ws $clients clients round $round: $s"
            start_server "$s"
            # shellcheck disable=SC2046
            load "$s" "ws-$clients" chat $(ws_wire "$s") --clients "$clients" --senders 1 --max-in-flight 100000 \
                --warmup "$warmup" --duration "$window" --drain "$ws_drain"
            stop_server
        done
    done
done
# The sender unlimited: what memory does each server grow to?
for s in "${ws_servers[@]}"; do
    log "ws unlimited sender: $s"
    start_server "$s"
    # shellcheck disable=SC2046
    load "$s" "ws-unlimited" chat $(ws_wire "$s") --clients 100 --senders 1 --max-in-flight 0 --warmup 0s --duration 5s --drain 1s
    stop_server
done
fi

log "writing docs/benchmarks.md"
python3 benches/report.py "$results" docs/benchmarks.md docs/img

# kv_server against redis-server: its own section of docs/benchmarks.md,
# written after the report (which rewrites the file).
if want kv; then
    log "kv: kv_server against redis-server"
    benches/kv.sh
fi
# Fan-out against Redis pub/sub, and the Redis-joined chat cluster: its own
# section (benches/sections/pubsub.md), folded in by a second report pass.
if want pubsub; then
    log "pubsub: chat_server against redis-server pub/sub, and the cluster"
    benches/pubsub.sh
    python3 benches/report.py "$results" docs/benchmarks.md docs/img
fi
log "done"
