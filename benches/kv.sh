#!/usr/bin/env bash
# kv_server against redis-server on redis-benchmark's own workload: each
# server pinned to CPU 0, redis-benchmark to CPU 1; `-t set` and `-t get`
# run separately, so each row's server CPU (utime+stime from /proc, before
# and after) is that test's alone. Then the same rows under callgrind:
# user-space instructions per request, which the other work on a shared
# machine does not disturb. Writes benches/sections/kv.md, which
# benches/report.py folds into docs/benchmarks.md.
#
# usage: benches/kv.sh            (3 rounds of -n 500000 per row, then callgrind:
#                                  about 15 minutes)
#        QUICK=1 benches/kv.sh    (one round of -n 100000: a smoke run)
#        KV_REQUESTS=1000000 KV_ROUNDS=5 benches/kv.sh
set -euo pipefail
cd "$(dirname "$0")/.."
n=${KV_REQUESTS:-500000}
cg_n=${KV_CALLGRIND_REQUESTS:-20000}
rounds=${KV_ROUNDS:-3}
if [ -n "${QUICK:-}" ]; then n=100000; cg_n=5000; rounds=1; fi
port=16390
out=$(mktemp)
cargo build --release --example kv_server >&2
kv=${CARGO_TARGET_DIR:-target}/release/examples/kv_server
tick=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start() {
    case $1 in
        kv_server) taskset -c 0 "$kv" --addr 127.0.0.1:$port >/dev/null 2>&1 & ;;
        redis-server) taskset -c 0 redis-server --port $port --bind 127.0.0.1 --save "" \
                          --appendonly no --io-threads 1 >/dev/null 2>&1 & ;;
    esac
    pid=$!
    for _ in $(seq 100); do redis-cli -p $port ping >/dev/null 2>&1 && return; sleep 0.05; done
    echo "$1 did not start" >&2; exit 1
}

# Rounds alternate which server goes first; each row reports medians.
raw=$(mktemp)
for round in $(seq 1 "$rounds"); do
    order="kv_server redis-server"
    if [ $((round % 2)) -eq 0 ]; then order="redis-server kv_server"; fi
    for row in "1:3" "16:3" "1:16384" "16:16384"; do
        IFS=: read -r pipe size <<<"$row"
        for server in $order; do
            start "$server"
            for t in set get; do
                before=$(cpu_ticks "$pid")
                rps=$(taskset -c 1 redis-benchmark -p $port -c 50 -n "$n" -P "$pipe" -d "$size" -t "$t" -q \
                      | tr '\r' '\n' | grep -i "requests per second" | tail -1 | awk '{print $2}')
                after=$(cpu_ticks "$pid")
                us=$(python3 -c "print(f'{($after-$before)/$tick*1e6/$n:.2f}')")
                echo "[kv bench] round $round: $server $t -P $pipe -d $size: $rps req/s, $us µs CPU/req" >&2
                echo "$server ${t^^} $pipe $size $rps $us" >> "$raw"
            done
            kill "$pid"; wait "$pid" 2>/dev/null || true
        done
    done
done
python3 - "$raw" > "$out" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    server, test, pipe, size, rps, us = line.split()
    rows.setdefault((pipe, size, test), {}).setdefault(server, []).append((float(rps), float(us)))
print("| test | pipeline | value | kv_server requests/s | redis-server requests/s | ratio | kv_server CPU µs/req | redis-server CPU µs/req | ratio | cores busy (kv / redis) |")
print("|---|---|---|---|---|---|---|---|---|---|")
order = sorted(rows, key=lambda k: (int(k[1]), int(k[0]), k[2] != "SET"))
for key in order:
    pipe, size, test = key
    med = {s: (statistics.median(r for r, _ in v), statistics.median(u for _, u in v)) for s, v in rows[key].items()}
    (kr, ku), (rr, ru) = med["kv_server"], med["redis-server"]
    # How busy each server kept its core: requests/s times CPU per request.
    print(f"| {test} | {pipe} | {size} B | {kr:,.0f} | {rr:,.0f} | {kr/rr:.2f}x | {ku:.2f} | {ru:.2f} | {ku/ru:.2f}x | {kr*ku/1e4:.0f} % / {rr*ru/1e4:.0f} % |")
PY
rm -f "$raw"

# Callgrind: instructions per request, counted from after a warm-up
# (callgrind_control --zero) to the end of the row (--dump).
cg=$(mktemp)
cg_raw=$(mktemp)
for row in "1:3" "16:3" "1:16384" "16:16384"; do
    IFS=: read -r pipe size <<<"$row"
    for t in set get; do
        for server in kv_server redis-server; do
            dir=$(mktemp -d)
            case $server in
                kv_server) valgrind --tool=callgrind --callgrind-out-file="$dir/cg.%p" \
                               "$kv" --addr 127.0.0.1:$port >/dev/null 2>&1 & ;;
                redis-server) valgrind --tool=callgrind --callgrind-out-file="$dir/cg.%p" \
                               redis-server --port $port --save "" --appendonly no >/dev/null 2>&1 & ;;
            esac
            pid=$!
            for _ in $(seq 200); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.1; done
            redis-benchmark -p $port -q -n 2000 -d "$size" -t set >/dev/null 2>&1
            callgrind_control -z "$pid" >/dev/null
            redis-benchmark -p $port -c 50 -n "$cg_n" -P "$pipe" -d "$size" -t "$t" -q >/dev/null 2>&1
            callgrind_control -d "$pid" >/dev/null
            sleep 0.5
            ir=$(grep -h "^summary:" "$dir"/cg.*.1 | awk '{print $2}')
            kill "$pid"; wait "$pid" 2>/dev/null || true
            per=$((ir / cg_n))
            echo "[kv callgrind] $server $t -P $pipe -d $size: $per instructions/request" >&2
            echo "$server ${t^^} $pipe $size $per" >> "$cg_raw"
            rm -rf "$dir"
        done
    done
done

python3 - "$cg_raw" > "$cg" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    server, test, pipe, size, per = line.split()
    rows.setdefault((test, pipe, size), {})[server] = int(per)
print("| test | pipeline | value | kv_server | redis-server | ratio |")
print("|---|---|---|---|---|---|")
for (test, pipe, size), v in rows.items():
    k, r = v["kv_server"], v["redis-server"]
    print(f"| {test} | {pipe} | {size} B | {k:,} | {r:,} | {k/r:.2f}x |")
PY
rm -f "$cg_raw"

python3 - "$out" "$n" "$cg" "$cg_n" "$rounds" <<'PY'
import sys, re
table, n = open(sys.argv[1]).read(), sys.argv[2]
cg_table, cg_n = open(sys.argv[3]).read(), sys.argv[4]
rounds = sys.argv[5]
section = f"""<!-- kv:start -->
## kv_server against redis-server (redis-benchmark)

`benches/kv.sh`: `redis-benchmark -c 50 -n {n} -t set|get` with `-P 1` and `-P 16`, values
of 3 bytes (redis-benchmark's default) and 16 KiB; the median of {rounds} rounds, which
alternate the server that goes first. Each server is pinned to CPU 0 and redis-benchmark to
CPU 1, on a shared 2-core VM (other sessions were compiling and testing on it: single runs
swing by 2x, so read the ratios of medians, and the callgrind counts below, which do not
swing). redis-server is Debian's 7.0.15, with persistence off and one I/O
thread. Server CPU is utime+stime over the row, divided by its requests; "cores busy" is
requests/s times CPU per request, how much of its core each server used. Goal: kv_server's
requests/s at least redis-server's, and its CPU per request at most redis-server's, on
every row.

{table}
User-space instructions per request under callgrind (`-n {cg_n}`, counted after a warm-up):
deterministic, whatever else the machine runs; kernel work (the copies into and out of
the sockets, the same for both servers) is not in it.

{cg_table}
{{analysis}}
<!-- kv:end -->
"""
analysis_path = "benches/kv-analysis.md"
try:
    analysis = open(analysis_path).read()
except OSError:
    analysis = ""
section = section.replace("{analysis}", analysis)
# Its own section file: benches/report.py folds every benches/sections/*.md
# into docs/benchmarks.md, so a later run of either keeps the other's work.
section = section.replace("<!-- kv:start -->\n", "").replace("<!-- kv:end -->\n", "")
open("benches/sections/kv.md", "w").write(section.rstrip() + "\n")
PY
rm -f "$out" "$cg"
