#!/usr/bin/env bash
# Port-scan timing (issue 13): examples/port_scan (release) over all 65,535
# loopback ports, against the seed's Python scanner (a ThreadPoolExecutor
# of 100 threads, each blocked in connect_ex), ROUNDS rounds each, medians.
#
# usage: benches/port_scan.sh          (about half a minute)
#        ROUNDS=1 benches/port_scan.sh
#
# Ours runs pinned to CPU 0 (it is one thread); the Python seed gets both
# cores, as it would on its own. Needs python3 and taskset. The figures
# go into the "Port scan" section of docs/benchmarks.md by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
target=${CARGO_TARGET_DIR:-target}

cargo build --release --example port_scan >&2
scanner="$target/release/examples/port_scan"

# The seed's scan_port and port_scanner, unchanged but for the output
# (counted, not printed per port).
seed=$(cat <<'PY'
import socket, sys, time
from concurrent.futures import ThreadPoolExecutor
def scan_port(host, port, timeout=1):
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        result = sock.connect_ex((host, port))
        sock.close()
        return (port, result == 0)
    except:
        return (port, False)
start = time.monotonic()
with ThreadPoolExecutor(max_workers=100) as executor:
    futures = [executor.submit(scan_port, '127.0.0.1', p) for p in range(1, 65536)]
    found = [f.result()[0] for f in futures if f.result()[1]]
print(f"{len(found)} open in {time.monotonic() - start:.2f} s")
PY
)

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

ours=()
theirs=()
for round in $(seq "$rounds"); do
    line=$(taskset -c 0 "$scanner" 127.0.0.1 --ports 1-65535 | tail -1)
    echo "ours   round $round: $line" >&2
    ours+=("$(sed -E 's/.* in ([0-9.]+) s$/\1/' <<<"$line")")
    line=$(python3 -c "$seed")
    echo "seed   round $round: $line" >&2
    theirs+=("$(sed -E 's/.* in ([0-9.]+) s$/\1/' <<<"$line")")
done
echo "port_scan (one thread, CPU 0): median $(printf '%s\n' "${ours[@]}" | median) s over $rounds rounds"
echo "seed (100 threads, 2 CPUs):    median $(printf '%s\n' "${theirs[@]}" | median) s over $rounds rounds"
ss -ltnH | wc -l | xargs echo "listening sockets on this machine during the run:"
