//! `loadgen hold`: opens N connections and holds them idle, spreading them
//! over source addresses 127.0.0.x (each source address has about 28,000
//! ephemeral ports), with the descriptor limit raised as far as allowed.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use reactor::Reactor;
use reactor::service::{CloseReason, Config, ConnId, Connections, Handler, Origin, Service};

use crate::{Outcome, report, server};

pub struct Options {
    pub addr: SocketAddr,
    pub conns: usize,
    pub seconds: Duration,
    pub src_ips: ([u8; 4], [u8; 4]),
    pub server_pid: Option<u32>,
}

/// Parses `127.0.0.2-127.0.0.9` (or a single address).
pub fn parse_ip_range(s: &str) -> Result<([u8; 4], [u8; 4]), String> {
    let (first, last) = s.split_once('-').unwrap_or((s, s));
    let first: Ipv4Addr = first.trim().parse().map_err(|e| format!("{e}"))?;
    let last: Ipv4Addr = last.trim().parse().map_err(|e| format!("{e}"))?;
    let (a, b) = (first.octets(), last.octets());
    if a[..3] != b[..3] || a[3] > b[3] {
        return Err("give a range within one /24, like 127.0.0.2-127.0.0.9".into());
    }
    Ok((a, b))
}

#[derive(Default)]
struct Hold {
    open: usize,
    failed: usize,
    closed_while_held: usize,
    holding: bool,
    first_error: Option<String>,
}

impl Handler for Hold {
    fn on_open(&mut self, _: &mut Connections<'_>, _: ConnId, _: Origin) {
        self.open += 1;
    }

    fn on_data(&mut self, _: &mut Connections<'_>, _: ConnId, data: &[u8]) -> usize {
        data.len()
    }

    fn on_close(&mut self, _: &mut Connections<'_>, _: ConnId, reason: &CloseReason) {
        if self.holding {
            self.closed_while_held += 1;
            self.open -= 1;
        } else {
            self.failed += 1;
            if self.first_error.is_none() {
                self.first_error = Some(reason.to_string());
            }
        }
    }
}

/// Raises the soft descriptor limit to the hard one; returns the new limit.
fn raise_nofile_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        limit.rlim_cur as u64
    }
}

pub fn run(options: Options) -> io::Result<Outcome> {
    let limit = raise_nofile_limit();
    let mut reactor = Reactor::new()?;
    let config = Config::default()
        .max_connections(options.conns + 16)
        .connect_timeout(Duration::from_secs(30));
    let service = Service::new(&mut reactor, Hold::default(), config);
    let rss_before = options
        .server_pid
        .and_then(|pid| server::status_kib(pid, "VmRSS"));
    let (first, last) = options.src_ips;
    let sources: Vec<SocketAddr> = (first[3]..=last[3])
        .map(|d| SocketAddr::from(([first[0], first[1], first[2], d], 0)))
        .collect();
    // At most a thousand handshakes at a time, so the server's backlog is
    // not what is being measured.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let mut attempted = 0;
    let mut refused_locally = 0;
    loop {
        let (open, failed) = service.with(&mut reactor, |h, _| (h.open, h.failed))?;
        let settled = open + failed + refused_locally;
        while attempted < options.conns && attempted - settled < 1000 {
            let source = sources[attempted % sources.len()];
            match service.with(&mut reactor, |_, conns| {
                conns.connect_from(options.addr, source)
            })? {
                Ok(_) => {}
                Err(e) => {
                    refused_locally += 1;
                    log::debug!("connect from {source}: {e}");
                }
            }
            attempted += 1;
        }
        if settled >= options.conns || Instant::now() > deadline {
            break;
        }
        reactor.run_once(Some(Duration::from_millis(50)))?;
    }
    let setup = started.elapsed();
    service.with(&mut reactor, |h, _| h.holding = true)?;
    reactor.call_later(options.seconds, |r| r.stop());
    reactor.run()?;
    let rss_after = options
        .server_pid
        .and_then(|pid| server::status_kib(pid, "VmRSS"));

    service.with(&mut reactor, |hold, _| {
        let mut report = report::Report::new("hold");
        report
            .int("conns", options.conns as u64)
            .int("held", hold.open as u64)
            .int("failed", (hold.failed + refused_locally) as u64)
            .int("closed_while_held", hold.closed_while_held as u64)
            .int("nofile_limit", limit)
            .int("source_addresses", sources.len() as u64)
            .num("setup_s", setup.as_secs_f64());
        if let (Some(before), Some(after)) = (rss_before, rss_after) {
            report.int("server_rss_before_kib", before).int("server_rss_after_kib", after);
            if hold.open > 0 {
                report.num("server_bytes_per_conn", (after.saturating_sub(before) * 1024) as f64 / hold.open as f64);
            }
        }
        report.human = format!(
            "hold: {} of {} connections held for {:.0} s ({} failed{}, {} closed by the server); descriptor limit {limit}",
            hold.open,
            options.conns,
            options.seconds.as_secs_f64(),
            hold.failed + refused_locally,
            hold.first_error.as_ref().map(|e| format!(": first {e}")).unwrap_or_default(),
            hold.closed_while_held,
        );
        if let (Some(before), Some(after)) = (rss_before, rss_after) {
            report.human.push_str(&format!(
                "\nserver VmRSS {before} KiB -> {after} KiB: {:.0} bytes per connection",
                (after.saturating_sub(before) * 1024) as f64 / hold.open.max(1) as f64
            ));
        }
        let clean = hold.open == options.conns && hold.closed_while_held == 0;
        Outcome { report, clean }
    })
}
