#!/usr/bin/env python3
"""Turns benches/run.sh's results (one JSON line per run) into
docs/benchmarks.md and the SVG plots under docs/img/.

usage: benches/report.py RESULTS.jsonl OUT.md IMG_DIR

Medians over rounds; ratios are ours / theirs from the same run of the
runner. The analysis at the end comes from benches/analysis.md, written by
hand after reading the figures.
"""
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from collections import defaultdict

results_path, out_path, img_dir = sys.argv[1:4]
runs = [json.loads(line) for line in open(results_path) if line.strip()]

by = defaultdict(list)
for r in runs:
    by[(r.get("server"), r.get("workload"))].append(r)


def median(server, workload, key):
    values = [r[key] for r in by[(server, workload)] if isinstance(r.get(key), (int, float))]
    return statistics.median(values) if values else None


def fmt(value, digits=0):
    if value is None:
        return "n/a"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def per_round(server, base, workload, key):
    """The ratio round by round (the k-th run of each server is round k)."""
    a = [r.get(key) for r in by[(server, workload)]]
    b = [r.get(key) for r in by[(base, workload)]]
    return [x / y for x, y in zip(a, b) if isinstance(x, (int, float)) and isinstance(y, (int, float)) and y]


def ratio_target(text, workload, key, limit, at_most, digits=2, server="ours", base="epoll"):
    """A target on server / base (ours / epoll unless said). Met or missed by
    the ratio of medians; but when the round-by-round ratios fall on both
    sides of the limit, the difference is within this machine's noise, and
    the table says so."""
    r = ratio(median(server, workload, key), median(base, workload, key))
    rounds = per_round(server, base, workload, key)
    shown = fmt(r, digits) + "x"
    if len(rounds) >= 2:
        shown += f" (rounds {min(rounds):.2f}-{max(rounds):.2f})"
    if r is None:
        return target(text, shown, None)
    ok = r <= limit if at_most else r >= limit
    if len(rounds) >= 2 and min(rounds) <= limit <= max(rounds):
        return w(f"| {text} | {shown} | within noise (median: {'yes' if ok else 'no'}) |")
    target(text, shown, ok)


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return "?"


def lock_version(path, name):
    try:
        text = open(path).read()
        m = re.search(r'name = "%s"\nversion = "([^"]+)"' % re.escape(name), text)
        return m.group(1) if m else "?"
    except OSError:
        return "?"


# ----- SVG ---------------------------------------------------------------------
COLORS = {"ours": "#1f77b4", "epoll": "#2ca02c", "tokio-ct": "#ff7f0e", "tokio-mt": "#d62728",
          "ours-chat": "#1f77b4", "tokio-chat": "#ff7f0e",
          "ours-ws": "#1f77b4", "tokio-ws": "#ff7f0e", "tokio-ws-batch": "#d62728", "ours-line": "#2ca02c",
          "ours-ndjson": "#9467bd"}


def svg_lines(path, title, xlabel, ylabel, series, xs):
    """series: {name: [y for each x]}; x on a categorical axis."""
    w, h, left, bottom, top, right = 640, 360, 80, 50, 40, 140
    ymax = max((y for ys in series.values() for y in ys if y is not None), default=1) * 1.1 or 1
    px = lambda i: left + (w - left - right) * (i / max(1, len(xs) - 1))
    py = lambda y: h - bottom - (h - bottom - top) * (y / ymax)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w/2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{left}" y1="{h-bottom}" x2="{w-right}" y2="{h-bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h-bottom}" stroke="black"/>',
           f'<text x="{(left + w - right)/2}" y="{h-12}" text-anchor="middle">{xlabel}</text>',
           f'<text x="16" y="{(top + h - bottom)/2}" transform="rotate(-90 16 {(top + h - bottom)/2})" text-anchor="middle">{ylabel}</text>']
    for k in range(5):
        y = ymax * k / 4
        out.append(f'<line x1="{left-4}" y1="{py(y):.1f}" x2="{w-right}" y2="{py(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left-8}" y="{py(y)+4:.1f}" text-anchor="end">{y:,.0f}</text>')
    for i, x in enumerate(xs):
        out.append(f'<text x="{px(i):.1f}" y="{h-bottom+18}" text-anchor="middle">{x}</text>')
    for n, (name, ys) in enumerate(series.items()):
        color = COLORS.get(name, "#555")
        points = [(px(i), py(y)) for i, y in enumerate(ys) if y is not None]
        if points:
            out.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' % (
                color, " ".join(f"{x:.1f},{y:.1f}" for x, y in points)))
            for x, y in points:
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
        out.append(f'<rect x="{w-right+15}" y="{top+n*20}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{w-right+32}" y="{top+n*20+10}">{name}</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out))


def svg_bars(path, title, ylabel, groups, series):
    """groups: labels on x; series: {name: [value per group]}."""
    w, h, left, bottom, top, right = 640, 360, 80, 50, 40, 140
    ymax = max((v for vs in series.values() for v in vs if v is not None), default=1) * 1.1 or 1
    gw = (w - left - right) / len(groups)
    bw = gw * 0.8 / max(1, len(series))
    py = lambda y: h - bottom - (h - bottom - top) * (y / ymax)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w/2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{left}" y1="{h-bottom}" x2="{w-right}" y2="{h-bottom}" stroke="black"/>',
           f'<text x="16" y="{(top + h - bottom)/2}" transform="rotate(-90 16 {(top + h - bottom)/2})" text-anchor="middle">{ylabel}</text>']
    for k in range(5):
        y = ymax * k / 4
        out.append(f'<line x1="{left-4}" y1="{py(y):.1f}" x2="{w-right}" y2="{py(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left-8}" y="{py(y)+4:.1f}" text-anchor="end">{y:,.0f}</text>')
    for g, label in enumerate(groups):
        out.append(f'<text x="{left + gw*(g+0.5):.1f}" y="{h-bottom+18}" text-anchor="middle">{label}</text>')
        for s, (name, values) in enumerate(series.items()):
            v = values[g]
            if v is None:
                continue
            x = left + gw * g + gw * 0.1 + bw * s
            out.append(f'<rect x="{x:.1f}" y="{py(v):.1f}" width="{bw:.1f}" height="{h-bottom-py(v):.1f}" fill="{COLORS.get(name, "#555")}"/>')
    for n, name in enumerate(series):
        out.append(f'<rect x="{w-right+15}" y="{top+n*20}" width="12" height="12" fill="{COLORS.get(name, "#555")}"/>')
        out.append(f'<text x="{w-right+32}" y="{top+n*20+10}">{name}</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out))


os.makedirs(img_dir, exist_ok=True)
echo_servers = ["ours", "epoll", "tokio-ct", "tokio-mt"]
svg_lines(os.path.join(img_dir, "echo-throughput.svg"), "Echo, 64 B messages: round trips per second",
          "connections", "round trips / s",
          {s: [median(s, f"echo-{c}x64", "round_trips_per_s") for c in (1, 100, 1000)] for s in echo_servers},
          ["1", "100", "1000"])
svg_bars(os.path.join(img_dir, "echo-latency.svg"), "Echo, 100 connections x 64 B: latency (µs)", "µs",
         ["p50", "p99", "p99.9"],
         {s: [median(s, "echo-100x64", k) for k in ("p50_us", "p99_us", "p999_us")] for s in echo_servers})
svg_bars(os.path.join(img_dir, "chat-deliveries.svg"), "Chat fan-out, 1 sender: deliveries per second", "deliveries / s",
         ["100 clients", "1000 clients"],
         {s: [median(s, f"chat-{c}", "deliveries_per_s") for c in (100, 1000)] for s in ("ours-chat", "tokio-chat")})
WS_SERVERS = ("ours-ws", "tokio-ws", "tokio-ws-batch", "ours-line", "ours-ndjson")
svg_bars(os.path.join(img_dir, "ws-deliveries.svg"), "WebSocket fan-out, 1 sender: deliveries per second", "deliveries / s",
         ["100 clients", "1000 clients"],
         {s: [median(s, f"ws-{c}", "deliveries_per_s") for c in (100, 1000)] for s in WS_SERVERS})

def fanout_tables(prefix, servers, sent="lines sent/s", cpu=False):
    """The tables of a fan-out section (`loadgen chat`): workloads PREFIX-100,
    PREFIX-1000 and PREFIX-unlimited; with `cpu`, the server's CPU per
    delivery too."""
    extra = " server µs/delivery |" if cpu else ""
    w(f"| clients | server | {sent} | deliveries/s | delivery ratio | peak RSS MiB | disconnected |{extra}")
    w("|---:|---|---:|---:|---:|---:|---:|" + ("---:|" if cpu else ""))
    for c in (100, 1000):
        for s in servers:
            wl = f"{prefix}-{c}"
            if not by[(s, wl)]:
                continue
            w(f"| {c} | {s} | {fmt(median(s, wl, 'lines_per_s'))} | {fmt(median(s, wl, 'deliveries_per_s'))} | "
              f"{fmt(median(s, wl, 'delivery_ratio'), 4)} | {fmt((median(s, wl, 'server_peak_rss_kib') or 0) / 1024, 1)} | "
              f"{fmt(median(s, wl, 'disconnected'))} |"
              + (f" {fmt(median(s, wl, 'server_cpu_us_per_delivery'), 3)} |" if cpu else ""))
    w("")
    w("With the sender unlimited (`--max-in-flight 0`, 100 clients, 5 s):")
    w("")
    w("| server | deliveries/s | peak RSS MiB | disconnected |")
    w("|---|---:|---:|---:|")
    wl = f"{prefix}-unlimited"
    for s in servers:
        if by[(s, wl)]:
            w(f"| {s} | {fmt(median(s, wl, 'deliveries_per_s'))} | "
              f"{fmt((median(s, wl, 'server_peak_rss_kib') or 0) / 1024, 1)} | {fmt(median(s, wl, 'disconnected'))} |")
    w("")


# ----- the document ----------------------------------------------------------------
md = []
w = md.append
here = os.path.dirname(os.path.abspath(results_path))
root = os.path.abspath(os.path.join(here, "..", ".."))
w("# Benchmarks")
w("")
w("Generated by `benches/run.sh` (then `benches/report.py`); the analysis at the end is written by")
w("hand in `benches/analysis.md`. Every figure is a median of the runner's rounds; every ratio is")
w("ours / theirs from the same run. Each server runs pinned to CPU 0, the load generator")
w("(`examples/loadgen`, itself on the reactor) to CPU 1.")
w("")
w("## Machine")
w("")
cpu_model = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
w(f"- CPU: {cpu_model}, {os.cpu_count()} cores; kernel {platform.release()}")
w(f"- {sh('rustc --version')}; tokio {lock_version(os.path.join(root, 'benches/baselines/tokio_echo/Cargo.lock'), 'tokio')}, "
  f"mio {lock_version(os.path.join(root, 'Cargo.lock'), 'mio')}")
w(f"- descriptor limit (hard): {sh('ulimit -Hn')}; date: {sh('date -u +%Y-%m-%d')}")
w("- This is a sandboxed VM: system calls cost several times what they cost on bare metal, and")
w("  time figures move from round to round: total CPU and throughput by 10-20%, user CPU by up to")
w("  2x for the same server. Instruction counts (callgrind) are exact and repeatable; prefer them")
w("  for comparing user-space cost.")
w("- Every server, ours and the baselines, is built with the same release profile: fat LTO, one")
w("  codegen unit.")
w("")
w("## The servers")
w("")
w("| name | what |")
w("|---|---|")
w("| ours | `examples/echo_server` (the connection layer), or `examples/chat_server` for chat |")
w("| epoll | `benches/baselines/epoll_echo`: raw `libc` epoll, edge-triggered, no abstraction (the floor) |")
w("| tokio-ct / tokio-mt | `benches/baselines/tokio_echo`: a task per connection, current_thread / multi_thread runtime |")
w("| tokio-chat | `benches/baselines/tokio_chat`: tokio's chat example (mutex, unbounded channel per peer), on our wire format |")
w("| ours-ws / ours-line / ours-ndjson | `examples/chat_server`: its WebSocket listener (`--web-addr`) / its line listener / its JSON listener (`--json-addr`), same server |")
w("| tokio-ws / tokio-ws-batch | `benches/baselines/tokio_ws_chat`: tokio's chat example on tokio-tungstenite, a `send` (flush) per message / `feed` while the channel has more, then one flush |")
w("")
w("## Echo")
w("")
w("`loadgen echo --conns N --size S [--pipeline K]`: each connection sends S bytes, waits for the")
w("whole echo (K messages in flight with a pipeline), checks every byte. Server CPU comes from")
w("`/proc/PID/stat` over the measured window.")
w("")
w("| workload | server | round trips/s | MB/s | p50 µs | p99 µs | p99.9 µs | user µs/rt | total µs/rt | errors |")
w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for label in ("1x64", "100x64", "100x4096", "100x64p16", "1000x64"):
    for s in echo_servers:
        wl = f"echo-{label}"
        if not by[(s, wl)]:
            continue
        errs = sum((r.get("errors") or 0) + (r.get("mismatches") or 0) for r in by[(s, wl)])
        w(f"| {label} | {s} | {fmt(median(s, wl, 'round_trips_per_s'))} | {fmt(median(s, wl, 'mb_per_s'), 1)} | "
          f"{fmt(median(s, wl, 'p50_us'))} | {fmt(median(s, wl, 'p99_us'))} | {fmt(median(s, wl, 'p999_us'))} | "
          f"{fmt(median(s, wl, 'server_user_us_per_round_trip'), 3)} | {fmt(median(s, wl, 'server_cpu_us_per_round_trip'), 2)} | {errs} |")
w("")
w("![echo throughput](img/echo-throughput.svg)")
w("")
w("![echo latency](img/echo-latency.svg)")
w("")
w("## Chat fan-out")
w("")
w("`loadgen chat --clients N --senders 1 --max-in-flight 100000`: N clients answer the name prompt,")
w("one sends lines as fast as the server takes them (at most 100,000 in flight); every client")
w("counts the lines that reach it. The delivery ratio is deliveries / (sent x (N-1)).")
w("")
fanout_tables("chat", ("ours-chat", "tokio-chat"))
w("![chat deliveries](img/chat-deliveries.svg)")
w("")
w("## Idle connections")
w("")
w("`loadgen hold --conns N --src-ips 127.0.0.2-127.0.0.9`: N idle connections; bytes per connection")
w("is the server's VmRSS growth divided by N.")
w("")
w("| connections | server | held | bytes per connection |")
w("|---:|---|---:|---:|")
for wl in ("hold-10000", "hold-max"):
    for s in ("ours", "epoll", "tokio-ct"):
        for r in by[(s, wl)]:
            w(f"| {r.get('conns')} | {s} | {fmt(r.get('held'))} | {fmt(r.get('server_bytes_per_conn'))} |")
w("")
w("## System calls")
w("")
w("`strace -c -f` attached to the server for 3 s during `echo --conns 100 --size 64`. Calls per")
w("round trip = all calls / writes (each round trip is exactly one write on every server here).")
w("")
w("| server | calls per round trip | epoll_wait | epoll_ctl | read/recv | write/send |")
w("|---|---:|---:|---:|---:|---:|")
for s in ("ours", "epoll", "tokio-ct"):
    for r in by[(s, "strace")]:
        c = r.get("calls", {})
        reads = sum(c.get(k, 0) for k in ("read", "recvfrom", "recvmsg"))
        waits = sum(c.get(k, 0) for k in ("epoll_wait", "epoll_pwait", "epoll_pwait2"))
        w(f"| {s} | {fmt(r.get('per_round_trip'), 3)} | {fmt(waits)} | {fmt(c.get('epoll_ctl', 0))} | {fmt(reads)} | {fmt(r.get('writes'))} |")
w("")
w("## Instructions")
w("")
w("`benches/callgrind.sh`: user-space instructions per echo round trip (100 connections x 64 B),")
w("counted by valgrind's callgrind, minus an idle run of the same server (start-up).")
w("")
w("| server | instructions per round trip |")
w("|---|---:|")
for s in ("ours", "epoll", "tokio-ct"):
    v = median(s, "callgrind", "instructions_per_round_trip")
    if v is not None:
        w(f"| {s} | {fmt(v)} |")
w("")

w("## TLS echo")
w("")
w("`loadgen echo --tls CERT --conns 100 --size S`: the echo above over TLS. Ours is")
w("`echo_server --tls-addr` (rustls on the connection layer's transport seam); the baseline is")
w("`benches/baselines/tokio_tls_echo` (tokio current_thread + tokio-rustls), with the same rustls")
w("version, the ring provider and rustls's defaults on both sides, so the same cipher suite.")
w("")
w("| workload | server | round trips/s | MB/s | p50 µs | p99 µs | user µs/rt | total µs/rt | errors |")
w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for label in ("100x64", "100x16384"):
    for s in ("ours-tls", "tokio-tls"):
        wl = f"tls-{label}"
        if not by[(s, wl)]:
            continue
        errs = sum((r.get("errors") or 0) + (r.get("mismatches") or 0) for r in by[(s, wl)])
        w(f"| {label} | {s} | {fmt(median(s, wl, 'round_trips_per_s'))} | {fmt(median(s, wl, 'mb_per_s'), 1)} | "
          f"{fmt(median(s, wl, 'p50_us'))} | {fmt(median(s, wl, 'p99_us'))} | "
          f"{fmt(median(s, wl, 'server_user_us_per_round_trip'), 3)} | {fmt(median(s, wl, 'server_cpu_us_per_round_trip'), 2)} | {errs} |")
w("")

# ----- WebSocket fan-out (issue 14) ---------------------------------------------------
w("## WebSocket fan-out")
w("")
w("`loadgen chat --ws --clients N --senders 1 --max-in-flight 100000`: the chat workload over")
w("JSON-over-WebSocket (`GET /ws`, one JSON object per text message, client frames masked): each")
w("client upgrades, answers the welcome with a join, waits for its own join's notification; one")
w("sends `{\"type\":\"chat\",...}` messages as fast as the server takes them, every client counts")
w("the chat messages that reach it (sequence numbers, in order). ours-line is the same chat_server")
w("driven by the line protocol (`loadgen chat`, no `--ws`), ours-ndjson by its JSON protocol")
w("(`--ndjson`: the same objects, one per line), in the same rounds: beside ours-ndjson, ours-ws")
w("shows what the WebSocket framing costs.")
w("Goal: at least 10x tokio-ws's deliveries/s, at bounded memory, and ahead of tokio-ws-batch.")
w("After the window every run drains for up to 30 s (100,000 messages in flight are up to 100")
w("million deliveries at 1,000 clients); a ratio below 1 with nothing out of order and nobody")
w("disconnected means the backlog was still arriving then, not that a message was lost. The load")
w("generator is one process on one core and, against ours, it is the bottleneck (the server idles")
w("part of the time): the server's CPU per delivery, the last column, is what each server spends.")
w("")
fanout_tables("ws", WS_SERVERS, sent="messages sent/s", cpu=True)
w("![WebSocket deliveries](img/ws-deliveries.svg)")
w("")

# ----- targets -------------------------------------------------------------------------
w("## Targets")
w("")
w("| target | measured | met |")
w("|---|---|---|")


def target(text, value, ok):
    """A target's row; `ok` is True, False, None (not measured) or a verdict in words."""
    verdict = ok if isinstance(ok, str) else ("yes" if ok else ("no" if ok is not None else "n/a"))
    w(f"| {text} | {value} | {verdict} |")


for label in ("100x64", "100x4096", "100x64p16"):
    wl = f"echo-{label}"
    ratio_target(f"echo {label}: user CPU per round trip <= 1.25x epoll", wl, "server_user_us_per_round_trip", 1.25, True)
    ratio_target(f"echo {label}: total CPU per round trip <= 1.05x epoll", wl, "server_cpu_us_per_round_trip", 1.05, True)
    ratio_target(f"echo {label}: throughput >= 0.95x epoll", wl, "round_trips_per_s", 0.95, False)
ratio_target("echo 1x64: p50 latency <= 1.1x epoll", "echo-1x64", "p50_us", 1.1, True)
st = next(iter(by[("ours", "strace")]), {})
target("syscalls per echo round trip <= 2.02", fmt(st.get("per_round_trip"), 3), None if not st else (st.get("per_round_trip") or 9) <= 2.02)
target("epoll_ctl in steady state: 0", fmt(st.get("calls", {}).get("epoll_ctl", 0)) if st else "n/a",
       None if not st else st.get("calls", {}).get("epoll_ctl", 0) == 0)
ci = ratio(median("ours", "callgrind", "instructions_per_round_trip"), median("epoll", "callgrind", "instructions_per_round_trip"))
target("instructions per round trip <= 4x epoll", f"{fmt(median('ours', 'callgrind', 'instructions_per_round_trip'))} ({fmt(ci, 1)}x)",
       None if ci is None else ci <= 4)
for c, need in ((100, 10), (1000, 8)):
    d = ratio(median("ours-chat", f"chat-{c}", "deliveries_per_s"), median("tokio-chat", f"chat-{c}", "deliveries_per_s"))
    target(f"chat {c} clients: deliveries/s >= {need}x tokio chat", fmt(d, 1) + "x", None if d is None else d >= need)
    full = median("ours-chat", f"chat-{c}", "delivery_ratio")
    target(f"chat {c} clients: every line delivered", fmt(full, 4), None if full is None else full == 1)
    rss = median("ours-chat", f"chat-{c}", "server_peak_rss_kib")
    target(f"chat {c} clients: server RSS < 64 MiB", fmt((rss or 0) / 1024, 1) + " MiB", None if rss is None else rss < 64 * 1024)
rss = median("ours-chat", "chat-unlimited", "server_peak_rss_kib")
target("chat, sender unlimited: RSS bounded", fmt((rss or 0) / 1024, 1) + " MiB", None if rss is None else rss < 512 * 1024)
idle = median("ours", "hold-10000", "server_bytes_per_conn")
target("idle: <= 256 bytes per connection at 10,000", fmt(idle) + " B", None if idle is None else idle <= 256)
hm = next(iter(by[("ours", "hold-max")]), {})
target("as many idle connections as RLIMIT_NOFILE allows", f"{fmt(hm.get('held'))} of {fmt(hm.get('conns'))}",
       None if not hm else hm.get("held") == hm.get("conns"))
for label in ("100x64", "100x16384"):
    wl = f"tls-{label}"
    ratio_target(f"TLS echo {label}: server CPU per round trip <= 1.0x tokio-rustls", wl,
                 "server_cpu_us_per_round_trip", 1.0, True, server="ours-tls", base="tokio-tls")
    ratio_target(f"TLS echo {label}: throughput >= 1.0x tokio-rustls", wl,
                 "round_trips_per_s", 1.0, False, server="ours-tls", base="tokio-tls")
# WebSocket fan-out (issue 14).
for c in (100, 1000):
    wl = f"ws-{c}"
    ratio_target(f"WebSocket {c} clients: deliveries/s >= 10x tokio-ws (flush per message)", wl,
                 "deliveries_per_s", 10, False, digits=1, server="ours-ws", base="tokio-ws")
    ratio_target(f"WebSocket {c} clients: deliveries/s ahead of tokio-ws-batch", wl,
                 "deliveries_per_s", 1.0, False, digits=2, server="ours-ws", base="tokio-ws-batch")
    for base, what in (("ours-line", "our line protocol's"), ("ours-ndjson", "our NDJSON's")):
        r = ratio(median("ours-ws", wl, "deliveries_per_s"), median(base, wl, "deliveries_per_s"))
        target(f"WebSocket {c} clients: deliveries/s / {what}", fmt(r, 2) + "x", "(information)")
    full = median("ours-ws", wl, "delivery_ratio")
    target(f"WebSocket {c} clients: every message delivered", fmt(full, 4), None if full is None else full == 1)
    rss = median("ours-ws", wl, "server_peak_rss_kib")
    target(f"WebSocket {c} clients: server RSS < 64 MiB", fmt((rss or 0) / 1024, 1) + " MiB", None if rss is None else rss < 64 * 1024)
rss = median("ours-ws", "ws-unlimited", "server_peak_rss_kib")
target("WebSocket, sender unlimited: RSS bounded", fmt((rss or 0) / 1024, 1) + " MiB", None if rss is None else rss < 512 * 1024)
# HTTP: benches/http.sh's own results (its section is folded in below).
http_path = os.path.join(root, "benches", "results", "http.jsonl")
http_runs = [json.loads(l) for l in open(http_path) if l.strip()] if os.path.exists(http_path) else []
def http_median(server, workload, key):
    v = [r[key] for r in http_runs if r.get("server") == server and r.get("workload") == workload
         and isinstance(r.get(key), (int, float))]
    return statistics.median(v) if v else None
for wl, label in (("http-plain", "wrk -c100"), ("http-pipe16", "wrk -c100, pipelined 16")):
    for key, what, at_most in (("rps", "requests/s >= 1.0x", False), ("cpu_us_per_request", "server CPU per request <= 1.0x", True)):
        r = ratio(http_median("ours", wl, key), http_median("nginx", wl, key))
        ours_rounds = [x[key] for x in http_runs if x.get("server") == "ours" and x.get("workload") == wl and x.get(key)]
        nginx_rounds = [x[key] for x in http_runs if x.get("server") == "nginx" and x.get("workload") == wl and x.get(key)]
        per = [a / b for a, b in zip(ours_rounds, nginx_rounds)]
        ok = (lambda v: v <= 1.0) if at_most else (lambda v: v >= 1.0)
        shown = "not measured (benches/http.sh)" if r is None else fmt(r, 2) + "x"
        met = None if r is None else ok(r)
        if r is not None and len(per) >= 2:
            shown += f" (rounds {min(per):.2f}-{max(per):.2f})"
            if ok(min(per)) != ok(max(per)):
                met = "within noise (median: " + ("yes" if ok(r) else "no") + ")"
        target(f"HTTP {label}: {what} nginx", shown, met)
w("")
w("## Commands")
w("")
w("```sh")
w("benches/run.sh                      # everything, ~11 minutes")
w("taskset -c 0 target/release/examples/echo_server --addr 127.0.0.1:0 &")
w("taskset -c 1 target/release/examples/loadgen echo --addr ADDR --conns 100 --size 64 --duration 3s --server-pid PID")
w("taskset -c 1 target/release/examples/loadgen chat --addr ADDR --clients 1000 --senders 1 --max-in-flight 100000")
w("taskset -c 1 target/release/examples/loadgen chat --ws --addr WEB_ADDR --clients 1000 --senders 1 --max-in-flight 100000")
w("taskset -c 1 target/release/examples/loadgen hold --addr ADDR --conns 10000 --src-ips 127.0.0.2-127.0.0.9")
w("benches/callgrind.sh ours 4 -- target/release/examples/echo_server --addr 127.0.0.1:0")
w("```")
w("")
# Sections written by the programs' own runners (benches/http.sh, ...),
# each a Markdown file of its own, kept from their last run.
sections = os.path.join(root, "benches", "sections")
if os.path.isdir(sections):
    for name in sorted(os.listdir(sections)):
        if name.endswith(".md"):
            w(open(os.path.join(sections, name)).read().rstrip())
            w("")
analysis = os.path.join(root, "benches", "analysis.md")
if os.path.exists(analysis):
    w(open(analysis).read().rstrip())
    w("")
open(out_path, "w").write("\n".join(md))
print(f"wrote {out_path}")
