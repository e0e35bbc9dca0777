#!/usr/bin/env bash
# Autobahn|Testsuite's fuzzing client (wstest -m fuzzingclient) against
# ws_echo_server: the RFC 6455 conformance cases, sections 1-10 by default
# (framing, ping/pong, reserved bits, opcodes, fragmentation, UTF-8,
# closing, limits and performance, auto-fragmentation). Sections 12 and 13
# (permessage-deflate) are excluded: we decline compression.
#
# usage: benches/autobahn.sh                 all of 1-10 (a few minutes), and
#                                            the summary into docs/websocket.md
#        benches/autobahn.sh 1 2 3 4 5 6 7   those sections only (what CI runs,
#                                            through tests/websocket.rs)
#        NO_DOCS=1 benches/autobahn.sh ...   do not touch docs/websocket.md
#
# Needs wstest on PATH (or WSTEST=path), Python 2 only: .ci/run installs it
# into a virtualenv (see there). The server is built in release mode unless
# WS_ECHO_SERVER names a binary. Prints the summary table; exits 1 when any
# case FAILED (or was not run), 3 when wstest is missing. The full report
# (HTML and JSON per case) is left in AUTOBAHN_OUT (default a temporary
# directory, whose name is printed).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

sections=("$@")
if [ "${#sections[@]}" -eq 0 ]; then sections=(1 2 3 4 5 6 7 9 10); fi
write_docs=1
if [ -n "${NO_DOCS:-}" ] || [ "$#" -gt 0 ]; then write_docs=; fi

wstest=${WSTEST:-$(command -v wstest || true)}
if [ -z "$wstest" ] || [ ! -x "$wstest" ]; then
    echo "benches/autobahn.sh: wstest is not installed (see .ci/run for the install)" >&2
    exit 3
fi

server=${WS_ECHO_SERVER:-}
if [ -z "$server" ]; then
    cargo build --release --example ws_echo_server >&2
    server=${CARGO_TARGET_DIR:-$root/target}/release/examples/ws_echo_server
fi

out=${AUTOBAHN_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/autobahn.XXXXXX")}
mkdir -p "$out"
echo "== reports in $out" >&2

# Section 9 sends messages of up to 16 MiB; the server's limit must let
# them through.
"$server" --addr 127.0.0.1:0 --max-message 16MiB --output-limit 64MiB >"$out/server.out" 2>"$out/server.err" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT
addr=
for _ in $(seq 100); do
    addr=$(sed -n 's/^listening on //p' "$out/server.out" | head -1)
    [ -n "$addr" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$out/server.err" >&2; exit 1; }
    sleep 0.1
done
[ -n "$addr" ] || { echo "ws_echo_server did not start" >&2; exit 1; }

cases=$(printf '"%s.*",' "${sections[@]}")
cat >"$out/fuzzingclient.json" <<SPEC
{
  "outdir": "$out/reports",
  "servers": [{"agent": "reactor", "url": "ws://$addr"}],
  "cases": [${cases%,}],
  "exclude-cases": ["12.*", "13.*"],
  "exclude-agent-cases": {}
}
SPEC

echo "== wstest -m fuzzingclient, sections ${sections[*]}, against $addr" >&2
(cd "$out" && timeout "${AUTOBAHN_TIMEOUT:-1800}" "$wstest" -m fuzzingclient -s fuzzingclient.json >"$out/wstest.log" 2>&1) || {
    tail -20 "$out/wstest.log" >&2
    echo "wstest failed" >&2
    exit 1
}

python3 - "$out/reports/index.json" "${sections[*]}" "$write_docs" "$root/docs/websocket.md" <<'PY'
import json, sys
from collections import OrderedDict

index_path, sections, write_docs, docs = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4]
with open(index_path) as f:
    results = json.load(f)["reactor"]

def key(case):
    return [int(part) for part in case.split(".")]

kinds = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
table = OrderedDict((s, dict.fromkeys(kinds, 0)) for s in sections)
not_ok = []
for case in sorted(results, key=key):
    r = results[case]
    section = case.split(".")[0]
    # A case is as good as the worse of its two verdicts (the messages,
    # and the closing handshake).
    verdicts = [r["behavior"], r["behaviorClose"]]
    worst = max(verdicts, key=lambda v: kinds.index(v) if v in kinds else len(kinds))
    worst = worst if worst in kinds else "FAILED"
    table.setdefault(section, dict.fromkeys(kinds, 0))[worst] += 1
    if worst != "OK":
        not_ok.append((case, r["behavior"], r["behaviorClose"], r.get("remoteCloseCode")))

names = {"1": "framing", "2": "ping/pong", "3": "reserved bits", "4": "opcodes",
         "5": "fragmentation", "6": "UTF-8", "7": "close handshake",
         "9": "limits and performance", "10": "auto-fragmentation"}
lines = ["| section | cases | OK | NON-STRICT | INFORMATIONAL | UNIMPLEMENTED | FAILED |",
         "|---|---|---|---|---|---|---|"]
for s, counts in table.items():
    total = sum(counts.values())
    lines.append("| %s %s | %d | %s |" % (s, names.get(s, ""), total,
                 " | ".join(str(counts[k]) for k in kinds)))
totals = {k: sum(c[k] for c in table.values()) for k in kinds}
lines.append("| **all** | %d | %s |" % (sum(totals.values()), " | ".join(str(totals[k]) for k in kinds)))
lines.append("")
if not_ok:
    lines.append("Cases not OK (case: messages / closing handshake, the close code we sent):")
    lines.append("")
    for case, behavior, close, code in not_ok:
        lines.append("- %s: %s / %s, close %s" % (case, behavior, close, code))
else:
    lines.append("Every case OK.")
summary = "\n".join(lines)
print(summary)

missing = [s for s, c in table.items() if sum(c.values()) == 0]
if write_docs:
    begin, end = "<!-- autobahn:begin -->", "<!-- autobahn:end -->"
    with open(docs) as f:
        text = f.read()
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(docs, "w") as f:
        f.write(head + begin + "\n" + summary + "\n" + end + tail)
    print("(written into %s)" % docs)
if totals["FAILED"] or missing:
    if missing:
        print("no case ran in section(s) %s" % " ".join(missing))
    sys.exit(1)
PY
