//! A load generator on the reactor: the seeds' multi-connection client grown
//! up. Three modes, each printing a human summary, or with `--json` one JSON
//! line (what `benches/run.sh` collects):
//!
//! - `echo`: N connections send S-byte messages and check every echoed byte;
//!   round trips per second, MB/s, latency percentiles.
//! - `chat`: N chat clients answer the name prompt, M of them send lines;
//!   lines sent and delivered per second, and whether every line reached
//!   every other client. With `--ndjson` the clients speak the JSON
//!   protocol (`chat_server --json-addr`), with `--ws` the same JSON over
//!   WebSocket (`chat_server --web-addr`), instead of the line protocol; the
//!   counting is the same (`wire.rs` holds all that differs).
//! - `pubsub`: Redis pub/sub, the chat mode's counterpart: N subscribers
//!   to one channel, one publisher; the same figures as `chat`.
//! - `game`: N bots (`game_client`'s) play on a `game_server`; snapshots
//!   received against those due, and the server's own tick jitter.
//! - `hold`: N idle connections, spread over source addresses 127.0.0.x to
//!   get past the ephemeral ports of one address; how many held.
//!
//! Run:   cargo run --release --example echo_server &
//!        cargo run --release --example loadgen -- echo --conns 100 --size 64 --duration 5s
//!
//! With `--server-pid PID` it reads the server's CPU time from
//! `/proc/PID/stat` at the exact start and end of the measured window, and
//! reports CPU per unit of work (round trip, delivery).

#[path = "../game_client/bot.rs"]
mod bot;
mod chat;
#[path = "../common/mod.rs"]
mod common;
mod echo;
mod fanout;
#[path = "../game/mod.rs"]
mod game;
mod game_load;
mod hold;
#[path = "../game_client/link.rs"]
mod link;
mod pubsub;
mod report;
mod server;
mod wire;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reactor::Reactor;
use reactor::service::{Handler, Service};

const USAGE: &str = "\
loadgen: load for echo, chat and pub/sub servers, measured

usage: loadgen echo --addr A [--conns N] [--size S] [--pipeline K] [--tls CA.pem] [--duration D] [--warmup D]
       loadgen chat --addr A [--clients N] [--senders M] [--size S] [--max-in-flight L] [--duration D]
                    [--ndjson | --ws [--ws-path /ws] [--origin URL]]
       loadgen chat --addr A,B,... (a cluster's nodes) [--rate R] [chat options]
       loadgen pubsub --addr REDIS [--subscribers N] [--channel C] [--size S] [--max-in-flight L] [--rate R]
       loadgen hold --addr A --conns N [--seconds H] [--src-ips 127.0.0.2-127.0.0.9]
       loadgen game --addr A [--players N] [--tick D] [--duration D]

common options:
  --json              print one JSON line instead of a human summary
  --server-pid PID    measure that process's CPU time and memory during the window
                      (PID,PID,...: the CPU time of all of them, summed; memory of the first)
  --warmup D          run this long before measuring (default 1s)
  --duration D        the measured window (default 5s)

echo:  --conns 100, --size 64, --pipeline 1 (messages in flight per connection),
       --tls CA.pem (speak TLS to a server whose certificate for localhost CA.pem signs)
chat:  --clients 100, --senders 1, --size 32 (bytes of text per line),
       --max-in-flight 100000 (lines sent but not yet delivered; 0: no limit),
       --drain 30s (after the window, how long to wait for lines in flight),
       --ndjson (the JSON protocol, one object per line: --addr is the --json-addr
       listener), --ws (the JSON protocol over WebSocket: upgrade at --ws-path, default
       /ws, then join the lobby), --origin URL (the upgrade's Origin; default none, as a
       non-browser sends)
       --addr A,B,C: clients spread over the nodes in turn, senders on the first;
       latency is reported apart for receivers on the sender's node (near) and others (far)
pubsub: --subscribers 100, --channel loadgen, --size, --max-in-flight and --drain as for chat
chat and pubsub: --rate R (lines per second across the senders, paced every 1 ms; paced runs
       report the latency from sender to receiver, p50 and p99)
game:  --players 100, --tick 50ms (the server's --tick: how many snapshots are due)
hold:  --conns 1000, --seconds 5, --src-ips FIRST-LAST (127.0.0.x range; default 127.0.0.1)

Exit status 1 if any byte came back wrong, a connection failed, a chat
line was lost, or game bots got fewer than 99% of the snapshots due.
";

/// The measurement window.
#[derive(Clone, Copy)]
pub struct Window {
    pub warmup: Duration,
    pub duration: Duration,
    pub server_pid: Option<u32>,
    /// More server processes whose CPU time is added to the first's
    /// (`--server-pid A,B,...`: a cluster's nodes and its broker).
    pub more_pids: &'static [u32],
}

/// What a measured window saw of time and of the server.
pub struct Measured {
    pub elapsed: Duration,
    pub server_cpu: Option<server::CpuTime>,
    pub server_pid: Option<u32>,
}

impl Measured {
    /// Adds the server's CPU (total and per unit of `work`) and memory.
    pub fn add_server_figures(&self, report: &mut report::Report, work: u64, unit: &str) {
        if let Some(cpu) = self.server_cpu {
            let user = cpu.user.as_secs_f64();
            let total = user + cpu.system.as_secs_f64();
            report
                .num("server_user_s", user)
                .num("server_sys_s", cpu.system.as_secs_f64());
            if work > 0 {
                report
                    .num(
                        &format!("server_user_us_per_{unit}"),
                        user * 1e6 / work as f64,
                    )
                    .num(
                        &format!("server_cpu_us_per_{unit}"),
                        total * 1e6 / work as f64,
                    );
            }
        }
        if let Some(pid) = self.server_pid {
            if let Some(rss) = server::status_kib(pid, "VmRSS") {
                report.int("server_rss_kib", rss);
            }
            if let Some(hwm) = server::status_kib(pid, "VmHWM") {
                report.int("server_peak_rss_kib", hwm);
            }
        }
    }
}

/// Runs the warm-up, then the measured window, switching the handler's
/// `measuring` flag on and off at the window's edges.
pub fn measure<H: Handler>(
    reactor: &mut Reactor,
    service: &Service<H>,
    window: Window,
    mut set_measuring: impl FnMut(&mut H, bool),
) -> io::Result<Measured> {
    if !window.warmup.is_zero() {
        reactor.call_later(window.warmup, |r| r.stop());
        reactor.run()?;
    }
    let cpu_before = servers_cpu(window);
    let start = Instant::now();
    service.with(reactor, |h, _| set_measuring(h, true))?;
    reactor.call_later(window.duration, |r| r.stop());
    reactor.run()?;
    service.with(reactor, |h, _| set_measuring(h, false))?;
    let elapsed = start.elapsed();
    let cpu_after = servers_cpu(window);
    Ok(Measured {
        elapsed,
        server_cpu: cpu_before.zip(cpu_after).map(|(a, b)| b.since(a)),
        server_pid: window.server_pid,
    })
}

/// The CPU time of every server process measured, summed; `None` if one
/// cannot be read.
fn servers_cpu(window: Window) -> Option<server::CpuTime> {
    let mut sum = server::cpu_time(window.server_pid?)?;
    for &pid in window.more_pids {
        let more = server::cpu_time(pid)?;
        sum.user += more.user;
        sum.system += more.system;
    }
    Some(sum)
}

fn main() {
    common::init_logging();
    let mut parser = lexopt::Parser::from_env();
    let mode = match common::next_arg(&mut parser) {
        Some(lexopt::Arg::Value(mode)) => mode.to_string_lossy().into_owned(),
        Some(lexopt::Arg::Long("help") | lexopt::Arg::Short('h')) => common::help(USAGE),
        _ => {
            common::usage_error("the first argument is the mode: echo, chat, pubsub, game or hold")
        }
    };
    let mut addr = None;
    let mut json = false;
    let mut tls_ca: Option<String> = None;
    let mut window = Window {
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(5),
        server_pid: None,
        more_pids: &[],
    };
    let (mut conns, mut size, mut pipeline) = (None, None, 1);
    let (mut clients, mut senders, mut in_flight) = (100, 1, 100_000);
    let (mut seconds, mut src_ips) = (Duration::from_secs(5), None);
    let mut drain = Duration::from_secs(30);
    let (mut websocket, mut ndjson) = (false, false);
    let (mut ws_path, mut origin) = ("/ws".to_string(), None);
    let (mut subscribers, mut channel, mut rate) = (100, "loadgen".to_string(), None);
    let (mut players, mut tick) = (100, Duration::from_millis(50));
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short};
        match arg {
            Long("addr") => addr = Some(common::value(&mut parser, "addr", common::text)),
            Long("json") => json = true,
            Long("tls") => tls_ca = Some(common::value(&mut parser, "tls", common::text)),
            Long("server-pid") => {
                let pids = common::value(&mut parser, "server-pid", parse_pids);
                window.server_pid = pids.first().copied();
                // Leaked once: the list lives as long as the process.
                window.more_pids = Vec::leak(pids[1..].to_vec());
            }
            Long("warmup") => {
                window.warmup = common::value(&mut parser, "warmup", common::parse_duration)
            }
            Long("duration") => {
                window.duration = common::value(&mut parser, "duration", common::parse_duration)
            }
            Long("conns") => conns = Some(common::value(&mut parser, "conns", common::count)),
            Long("size") => size = Some(common::value(&mut parser, "size", common::parse_size)),
            Long("pipeline") => {
                pipeline = common::value(&mut parser, "pipeline", common::count).max(1)
            }
            Long("clients") => clients = common::value(&mut parser, "clients", common::count),
            Long("senders") => senders = common::value(&mut parser, "senders", common::count),
            Long("max-in-flight") => {
                in_flight = common::value(&mut parser, "max-in-flight", common::count)
            }
            Long("players") => players = common::value(&mut parser, "players", common::count),
            Long("tick") => tick = common::value(&mut parser, "tick", common::parse_duration),
            Long("ws") => websocket = true,
            Long("ndjson") => ndjson = true,
            Long("ws-path") => ws_path = common::value(&mut parser, "ws-path", common::text),
            Long("origin") => origin = Some(common::value(&mut parser, "origin", common::text)),
            Long("drain") => drain = common::value(&mut parser, "drain", common::parse_duration),
            Long("subscribers") => {
                subscribers = common::value(&mut parser, "subscribers", common::count)
            }
            Long("channel") => channel = common::value(&mut parser, "channel", common::text),
            Long("rate") => rate = Some(common::value(&mut parser, "rate", parse_rate)),
            Long("seconds") => {
                seconds = common::value(&mut parser, "seconds", common::parse_duration)
            }
            Long("src-ips") => {
                src_ips = Some(common::value(&mut parser, "src-ips", hold::parse_ip_range))
            }
            Long("help") | Short('h') => common::help(USAGE),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    let addr = addr.unwrap_or_else(|| common::usage_error("--addr is required"));
    // A list only for chat (a cluster's nodes); every other mode takes one.
    let addrs: Vec<SocketAddr> = addr.split(',').map(common::resolve_addr).collect();
    if addrs.len() > 1 && mode != "chat" {
        common::usage_error("only chat takes several addresses");
    }
    let addr = addrs[0];
    let outcome = match mode.as_str() {
        "echo" => echo::run(echo::Options {
            addr,
            tls_ca: tls_ca.map(std::path::PathBuf::from),
            conns: conns.unwrap_or(100).max(1),
            size: size.unwrap_or(64).max(1),
            pipeline,
            window,
        }),
        "chat" => {
            if senders == 0 || senders > clients || clients < 2 {
                common::usage_error("chat needs at least 2 clients and 1 to --clients senders");
            }
            if websocket && ndjson {
                common::usage_error("--ws and --ndjson are two wires: choose one");
            }
            let options = chat::Options {
                addrs,
                clients,
                senders,
                size: size.unwrap_or(32),
                max_in_flight: in_flight,
                rate,
                drain,
                window,
                wire: match (websocket, ndjson) {
                    (true, _) => "ws",
                    (_, true) => "ndjson",
                    _ => "line",
                },
            };
            if websocket {
                chat::run(options, |name, node| {
                    let target = wire::Target {
                        host: node.to_string(),
                        path: ws_path.clone(),
                        origin: origin.clone(),
                    };
                    wire::WebSocket::new(name, target)
                })
            } else if ndjson {
                chat::run(options, |name, _| wire::Ndjson::new(name))
            } else {
                chat::run(options, |name, _| wire::Line::new(name))
            }
        }
        "pubsub" => pubsub::run(pubsub::Options {
            addr,
            subscribers: subscribers.max(1),
            channel,
            size: size.unwrap_or(32),
            max_in_flight: in_flight,
            rate,
            drain,
            window,
        }),
        "hold" => hold::run(hold::Options {
            addr,
            conns: conns.unwrap_or(1000),
            seconds,
            src_ips: src_ips.unwrap_or(([127, 0, 0, 1], [127, 0, 0, 1])),
            server_pid: window.server_pid,
        }),
        "game" => game_load::run(game_load::Options {
            addr,
            players: players.max(1),
            tick,
            window,
        }),
        other => common::usage_error(format!(
            "unknown mode '{other}': echo, chat, pubsub, game or hold"
        )),
    };
    match outcome {
        Ok(report) => {
            report.report.print(json);
            if !report.clean {
                std::process::exit(1);
            }
        }
        Err(e) => common::fail(e),
    }
}

/// `--server-pid`: one process id, or a comma-separated list.
fn parse_pids(s: &str) -> Result<Vec<u32>, String> {
    s.split(',')
        .map(|p| {
            p.trim()
                .parse::<u32>()
                .map_err(|_| format!("'{p}' is not a process id"))
        })
        .collect()
}

/// `--rate`: lines per second, more than zero.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!("'{s}' is not a rate in lines per second")),
    }
}

/// A report and whether the run was clean (nothing wrong, nothing lost).
pub struct Outcome {
    pub report: report::Report,
    pub clean: bool,
}
