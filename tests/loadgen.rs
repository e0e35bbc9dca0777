//! A smoke run of the load generator (`examples/loadgen`) in each mode: a
//! second, a few connections, and the figures must be clean. Speed is never
//! asserted here; `benches/run.sh` measures it.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Server, run_example};

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn echo_mode_checks_every_byte_and_reports() {
    let server = Server::start("echo_server", &["--addr", "127.0.0.1:0"], 1);
    let addr = server.addr().to_string();
    let pid = server.pid().to_string();
    let (status, stdout, stderr) = run_example(
        "loadgen",
        &[
            "echo",
            "--addr",
            &addr,
            "--conns",
            "4",
            "--size",
            "100",
            "--pipeline",
            "3",
            "--warmup",
            "0s",
            "--duration",
            "1s",
            "--json",
            "--server-pid",
            &pid,
        ],
        Duration::from_secs(30),
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    let report = json(&stdout);
    assert_eq!(report["mismatches"], 0);
    assert_eq!(report["errors"], 0);
    assert!(report["round_trips"].as_u64().unwrap() > 0);
    assert!(report["p50_us"].as_f64().unwrap() > 0.0);
    assert!(
        report.get("server_cpu_us_per_round_trip").is_some(),
        "{report}"
    );
}

#[test]
fn echo_mode_notices_a_server_that_changes_the_bytes() {
    let server = Server::start("echo_server", &["--addr", "127.0.0.1:0", "--upper"], 1);
    let addr = server.addr().to_string();
    let (status, stdout, _) = run_example(
        "loadgen",
        &[
            "echo",
            "--addr",
            &addr,
            "--conns",
            "2",
            "--size",
            "64",
            "--warmup",
            "0s",
            "--duration",
            "1s",
            "--json",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        json(&stdout)["mismatches"].as_u64().unwrap() > 0,
        "{stdout}"
    );
}

/// A chat server with its line, JSON and web listeners, in that order.
fn chat_server_on_three_listeners() -> Server {
    Server::start(
        "chat_server",
        &[
            "--addr",
            "127.0.0.1:0",
            "--json-addr",
            "127.0.0.1:0",
            "--web-addr",
            "127.0.0.1:0",
        ],
        3,
    )
}

/// Runs `loadgen chat` with `wire` (none, `--ndjson`, `--ws`) against a
/// chat server's `listener`-th listener (line, JSON, web) and checks that
/// every line reached every other client in order.
fn chat_mode_delivers_everything(wire: Option<&str>, listener: usize, name: &str) {
    let server = chat_server_on_three_listeners();
    let addr = server.listening[listener].clone();
    let pid = server.pid().to_string();
    let mut args = vec!["chat"];
    args.extend(wire);
    args.extend([
        "--addr",
        &addr,
        "--clients",
        "5",
        "--senders",
        "2",
        // Few enough lines in flight that a reader is never the server's
        // output limit (4 MiB) behind, even with debug builds on a busy
        // machine: past it the server drops the reader, as it should.
        "--max-in-flight",
        "1000",
        "--warmup",
        "0s",
        "--duration",
        "1s",
        "--json",
        "--server-pid",
        &pid,
    ]);
    let (status, stdout, stderr) = run_example("loadgen", &args, Duration::from_secs(60));
    assert!(status.success(), "{stdout}\n{stderr}");
    let report = json(&stdout);
    assert_eq!(report["wire"], name, "{report}");
    assert_eq!(report["delivery_ratio"], 1.0, "{report}");
    assert_eq!(report["out_of_order"], 0);
    assert_eq!(report["disconnected"], 0);
    assert!(report["deliveries"].as_u64().unwrap() > 0);
}

#[test]
fn chat_mode_delivers_every_line_to_every_client() {
    chat_mode_delivers_everything(None, 0, "line");
}

#[test]
fn chat_mode_over_ndjson_delivers_every_message_to_every_client() {
    chat_mode_delivers_everything(Some("--ndjson"), 1, "ndjson");
}

#[test]
fn chat_mode_over_websocket_delivers_every_message_to_every_client() {
    // Line, JSON, then web.
    chat_mode_delivers_everything(Some("--ws"), 2, "ws");
}

#[test]
fn chat_mode_over_websocket_reports_a_refused_upgrade() {
    // An Origin the server does not allow: 403, and loadgen says why.
    let server = chat_server_on_three_listeners();
    let web = server.listening[2].clone();
    let (status, _, stderr) = run_example(
        "loadgen",
        &[
            "chat",
            "--ws",
            "--origin",
            "http://elsewhere.example",
            "--addr",
            &web,
            "--clients",
            "2",
            "--warmup",
            "0s",
            "--duration",
            "1s",
        ],
        Duration::from_secs(60),
    );
    assert!(!status.success());
    assert!(
        stderr.contains("could not join") && stderr.contains("403"),
        "{stderr}"
    );
}

#[test]
fn chat_mode_paced_over_two_addresses_reports_near_and_far_latency() {
    let server = Server::start("chat_server", &["--addr", "127.0.0.1:0"], 1);
    // The same server twice: two "nodes", so that half the readers count
    // as far from the sender.
    let addrs = format!("{0},{0}", server.addr());
    let (status, stdout, stderr) = run_example(
        "loadgen",
        &[
            "chat",
            "--addr",
            &addrs,
            "--clients",
            "6",
            "--rate",
            "200",
            "--warmup",
            "0s",
            "--duration",
            "1s",
            "--json",
        ],
        Duration::from_secs(60),
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    let report = json(&stdout);
    assert_eq!(report["nodes"], 2, "{report}");
    assert_eq!(report["delivery_ratio"], 1.0, "{report}");
    assert_eq!(report["out_of_order"], 0);
    // The pace is a ceiling (lines due by the clock), whatever the load.
    assert!(report["lines_per_s"].as_f64().unwrap() <= 250.0, "{report}");
    for field in ["near_latency_p50_us", "far_latency_p99_us"] {
        assert!(report[field].as_u64().unwrap() > 0, "{field}: {report}");
    }
}

#[test]
fn pubsub_mode_counts_every_message_at_every_subscriber_of_redis() {
    let Some(redis) = support::kv::Target::redis(&[]) else {
        return;
    };
    let addr = redis.addr().to_string();
    let (status, stdout, stderr) = run_example(
        "loadgen",
        &[
            "pubsub",
            "--addr",
            &addr,
            "--subscribers",
            "10",
            "--max-in-flight",
            "1000",
            "--warmup",
            "0s",
            "--duration",
            "1s",
            "--json",
        ],
        Duration::from_secs(60),
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    let report = json(&stdout);
    let sent = report["lines_sent"].as_u64().unwrap();
    assert!(sent > 0, "{report}");
    assert_eq!(report["deliveries"].as_u64(), Some(sent * 10), "{report}");
    assert_eq!(report["publish_replies"].as_u64(), Some(sent), "{report}");
    assert_eq!(report["short_replies"], 0);
    assert_eq!(report["out_of_order"], 0);
}

#[test]
fn pubsub_mode_fails_when_the_server_is_not_redis() {
    // A chat server's prompt is not RESP, and it refuses SUBSCRIBE as a
    // name: whichever comes first, the run fails with its cause, at once.
    let server = Server::start("chat_server", &["--addr", "127.0.0.1:0"], 1);
    let addr = server.addr().to_string();
    let (status, stdout, stderr) = run_example(
        "loadgen",
        &["pubsub", "--addr", &addr, "--subscribers", "2", "--json"],
        Duration::from_secs(60),
    );
    assert!(!status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("not RESP") || stderr.contains("closed before the run"),
        "{stderr}"
    );
}

#[test]
fn hold_mode_holds_connections_from_several_source_addresses() {
    let server = Server::start("echo_server", &["--addr", "127.0.0.1:0"], 1);
    let addr = server.addr().to_string();
    let pid = server.pid().to_string();
    let (status, stdout, stderr) = run_example(
        "loadgen",
        &[
            "hold",
            "--addr",
            &addr,
            "--conns",
            "50",
            "--seconds",
            "0.2",
            "--src-ips",
            "127.0.0.2-127.0.0.3",
            "--json",
            "--server-pid",
            &pid,
        ],
        Duration::from_secs(60),
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    let report = json(&stdout);
    assert_eq!(report["held"], 50);
    assert_eq!(report["source_addresses"], 2);
}
