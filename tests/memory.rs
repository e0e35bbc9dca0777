//! Memory under fan-out, measured on this process (its own test binary, one
//! test, so nothing else runs beside it).

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reactor::Reactor;
use reactor::service::{CloseReason, Config, ConnId, Connections, Handler, Origin, Service};

/// Relays every byte to every other connection, with `broadcast`.
struct Room {
    members: Vec<ConnId>,
}

impl Handler for Room {
    fn on_open(&mut self, _: &mut Connections<'_>, id: ConnId, _: Origin) {
        self.members.push(id);
    }
    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let others = self.members.iter().copied().filter(|&m| m != id);
        conns.broadcast(others, data);
        data.len()
    }
    fn on_close(&mut self, _: &mut Connections<'_>, id: ConnId, _: &CloseReason) {
        self.members.retain(|&m| m != id);
    }
}

/// Regression: bytes broadcast to members whose sockets were full were
/// copied into each member's backlog, so fifty members that do not read
/// cost fifty copies of everything said. They share one copy now.
#[test]
fn a_broadcast_to_members_who_do_not_read_is_stored_once() {
    const MEMBERS: usize = 50;
    const TOTAL: usize = 8 << 20;
    let config = Config::default()
        .send_buffer(Some(4096))
        .output_limit(1 << 30)
        .high_water(1 << 30);
    let mut reactor = Reactor::new().unwrap();
    let service = Service::new(
        &mut reactor,
        Room {
            members: Vec::new(),
        },
        config,
    );
    let listener = service
        .listen(&mut reactor, "127.0.0.1:0".parse().unwrap())
        .unwrap();
    let addr = service.local_addr(listener).unwrap().inet().unwrap();
    let members: Vec<TcpStream> = (0..MEMBERS)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            socket2::SockRef::from(&s)
                .set_recv_buffer_size(4096)
                .unwrap();
            s
        })
        .collect();
    let sender = TcpStream::connect(addr).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while service.stats().unwrap().open < MEMBERS + 1 {
        assert!(Instant::now() < deadline);
        reactor.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    let before = support::rss_kib(std::process::id());
    let writer = std::thread::spawn(move || {
        let mut sender = sender;
        let chunk = vec![b'z'; 64 * 1024];
        for _ in 0..TOTAL / chunk.len() {
            sender.write_all(&chunk).unwrap();
        }
        sender
    });
    while service.stats().unwrap().bytes_in < TOTAL as u64 {
        assert!(
            Instant::now() < deadline,
            "the server did not read everything"
        );
        reactor.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    let _sender = writer.join().unwrap();
    let stats = service.stats().unwrap();
    let after = support::rss_kib(std::process::id());
    let growth_mib = after.saturating_sub(before) / 1024;
    eprintln!(
        "{} MiB queued for {MEMBERS} members who do not read; this process grew by {growth_mib} MiB",
        stats.queued_output >> 20
    );
    // The members' output really is waiting in the service...
    assert!(stats.queued_output > MEMBERS * (TOTAL / 2), "{stats:?}");
    // ...but held once, not once per member.
    assert!(
        growth_mib < 64,
        "grew by {growth_mib} MiB for {} MiB of logical output",
        stats.queued_output >> 20
    );
    drop(members);
}
