//! `Service::shutdown_on_signal`: SIGTERM, raised in this process, as an
//! event on the loop. In a test binary of its own, since a signal reaches
//! the whole process.

mod support;

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reactor::Reactor;
use reactor::service::{Config, ConnId, Connections, Handler, Origin, Service};

struct Greeter {
    greeting: Vec<u8>,
}

impl Handler for Greeter {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
        conns.send(id, &self.greeting).unwrap();
    }
    fn on_data(&mut self, _: &mut Connections<'_>, _: ConnId, data: &[u8]) -> usize {
        data.len()
    }
}

#[test]
fn sigterm_flushes_every_client_and_then_run_returns() {
    let greeting = support::Rng::new(3).bytes(2 << 20);
    let mut reactor = Reactor::new().unwrap();
    let service = Service::new(
        &mut reactor,
        Greeter {
            greeting: greeting.clone(),
        },
        Config::default(),
    );
    service
        .shutdown_on_signal(&mut reactor, Duration::from_secs(10))
        .unwrap();
    let listener = service
        .listen(&mut reactor, "127.0.0.1:0".parse().unwrap())
        .unwrap();
    let addr = service.tcp_addr(listener).unwrap();
    // The client connects, and the signal comes once it is being served;
    // it then reads everything at its own pace and hangs up at the end.
    let client = std::thread::spawn(move || {
        let mut s = support::connect(addr);
        let mut first = [0; 1];
        s.read_exact(&mut first).unwrap();
        // SAFETY: raising a signal in this process; `shutdown_on_signal`
        // has installed its handler, so it is caught, not fatal.
        unsafe { libc::raise(libc::SIGTERM) };
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        rest.insert(0, first[0]);
        rest
    });
    // A watchdog, so that a shutdown that never finishes fails the test
    // instead of hanging it.
    let handle = reactor.handle();
    let gave_up = Arc::new(AtomicBool::new(false));
    let watchdog_gave_up = gave_up.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        watchdog_gave_up.store(true, Ordering::SeqCst);
        let _ = handle.stop();
    });
    reactor.run().unwrap();
    assert!(
        !gave_up.load(Ordering::SeqCst),
        "run did not return after SIGTERM"
    );
    let got = client.join().unwrap();
    assert!(
        got == greeting,
        "got {} of {} bytes",
        got.len(),
        greeting.len()
    );
    assert_eq!(service.stats().unwrap().open, 0);
}
