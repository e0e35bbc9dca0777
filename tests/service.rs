//! Layer 3: the connection layer, through its public API, over real sockets.
//!
//! The service runs on the test's thread; clients are plain blocking sockets
//! on helper threads (with timeouts), or outgoing connections of a service.

mod support;

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reactor::Reactor;
use reactor::service::{CloseReason, Config, ConnId, Connections, Handler, Origin, Service};
use support::{Rng, connect};

/// What a test handler saw, for assertions.
#[derive(Default)]
struct Log {
    opened: Vec<ConnId>,
    closed: Vec<(ConnId, String)>,
}

type Shared = Rc<RefCell<Log>>;

/// An echo handler that records what happens.
struct Echo {
    log: Shared,
}

impl Handler for Echo {
    fn on_open(&mut self, _: &mut Connections<'_>, id: ConnId, _: Origin) {
        self.log.borrow_mut().opened.push(id);
    }
    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let _ = conns.send(id, data);
        data.len()
    }
    fn on_close(&mut self, _: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        self.log.borrow_mut().closed.push((id, reason.to_string()));
    }
}

fn serve<H: Handler>(handler: H, config: Config) -> (Reactor, Service<H>, SocketAddr) {
    let mut reactor = Reactor::new().unwrap();
    let service = Service::new(&mut reactor, handler, config);
    let id = service
        .listen(&mut reactor, "127.0.0.1:0".parse().unwrap())
        .unwrap();
    let addr = service.local_addr(id).unwrap().inet().unwrap();
    (reactor, service, addr)
}

/// Runs the loop until `done` holds, bounded in time.
#[track_caller]
fn run_until(reactor: &mut Reactor, mut done: impl FnMut(&mut Reactor) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(reactor) {
        assert!(Instant::now() < deadline, "condition not reached in time");
        reactor.run_once(Some(Duration::from_millis(20))).unwrap();
    }
}

/// Runs the loop until a client thread finishes, and returns its result.
#[track_caller]
fn run_client<T>(reactor: &mut Reactor, client: JoinHandle<T>) -> T {
    run_until(reactor, |_| client.is_finished());
    client.join().expect("client thread panicked")
}

#[test]
fn a_stale_conn_id_is_not_found_and_never_reaches_the_new_owner() {
    let log = Shared::default();
    let (mut reactor, service, addr) = serve(Echo { log: log.clone() }, Config::default());
    let first = connect(addr);
    run_until(&mut reactor, |_| log.borrow().opened.len() == 1);
    drop(first);
    run_until(&mut reactor, |_| log.borrow().closed.len() == 1);
    let mut second = connect(addr);
    run_until(&mut reactor, |_| log.borrow().opened.len() == 2);
    let (old, new) = (log.borrow().opened[0], log.borrow().opened[1]);
    assert_eq!(old.index(), new.index(), "the slot was reused");
    assert_ne!(old, new);

    let err = service
        .with(&mut reactor, |_, conns| conns.send(old, b"for the old one"))
        .unwrap();
    assert_eq!(err.unwrap_err().kind(), ErrorKind::NotFound);
    let err = service
        .with(&mut reactor, |_, conns| conns.close(old))
        .unwrap();
    assert_eq!(err.unwrap_err().kind(), ErrorKind::NotFound);
    service
        .with(&mut reactor, |_, conns| conns.send(new, b"for the new one"))
        .unwrap()
        .unwrap();
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    let mut got = [0; 15];
    second.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"for the new one");
}

/// Many sends in one turn cost one write system call.
#[test]
fn many_sends_in_one_turn_go_out_in_one_write() {
    struct Chatty;
    impl Handler for Chatty {
        fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
            for i in 0..100u8 {
                conns.send(id, &[b'a' + i % 26]).unwrap();
            }
            data.len()
        }
    }
    let (mut reactor, service, addr) = serve(Chatty, Config::default());
    let client = std::thread::spawn(move || {
        let mut stream = connect(addr);
        stream.write_all(b"go").unwrap();
        let mut got = vec![0; 100];
        stream.read_exact(&mut got).unwrap();
        got
    });
    let got = run_client(&mut reactor, client);
    let expected: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
    assert_eq!(got, expected);
    assert_eq!(
        service.stats().unwrap().writes,
        1,
        "{:?}",
        service.stats().unwrap()
    );
}

#[test]
fn a_client_that_does_not_read_is_not_read_either() {
    let config = Config::default()
        .high_water(64 * 1024)
        .low_water(16 * 1024)
        .read_budget(16 * 1024);
    let log = Shared::default();
    let (mut reactor, service, addr) = serve(Echo { log }, config);
    // More than loopback's kernel buffers can hold (autotuned, they take
    // about 10 MiB between the two sockets).
    const TOTAL: usize = 32 << 20;
    let data = Rng::new(11).bytes(TOTAL);
    let mut stream = connect(addr);
    stream.set_nonblocking(true).unwrap();
    let mut sent = 0;
    let mut stalled_turns = 0;
    // Push until several turns in a row accept nothing.
    while sent < TOTAL && stalled_turns < 50 {
        match stream.write(&data[sent..(sent + 65536).min(TOTAL)]) {
            Ok(n) => {
                sent += n;
                stalled_turns = 0;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => stalled_turns += 1,
            Err(e) => panic!("{e}"),
        }
        reactor.run_once(Some(Duration::from_millis(5))).unwrap();
        // Reading stops above high water: at most one read budget more.
        assert!(
            service.largest_output().unwrap() <= 64 * 1024 + 16 * 1024,
            "{}",
            service.largest_output().unwrap()
        );
    }
    assert!(
        sent < TOTAL,
        "the server kept reading a client that does not read"
    );
    // Read it all back (the loop keeps the server going meanwhile).
    stream.set_nonblocking(false).unwrap();
    let reader_stream = stream.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = reader_stream;
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut got = vec![0; TOTAL];
        s.read_exact(&mut got).unwrap();
        got
    });
    let rest = data[sent..].to_vec();
    let writer = std::thread::spawn(move || stream.write_all(&rest).unwrap());
    let got = run_client(&mut reactor, reader);
    writer.join().unwrap();
    assert!(got == data);
    assert!(service.stats().unwrap().peak_output <= 64 * 1024 + 16 * 1024);
}

#[test]
fn output_past_the_limit_closes_only_that_connection() {
    /// Answers every byte with a kilobyte.
    struct Amplify {
        log: Shared,
    }
    impl Handler for Amplify {
        fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
            for _ in 0..data.len() {
                if conns.send(id, &[b'z'; 1024]).is_err() {
                    break;
                }
            }
            data.len()
        }
        fn on_close(&mut self, _: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
            self.log.borrow_mut().closed.push((id, reason.to_string()));
        }
    }
    let log = Shared::default();
    let config = Config::default()
        .output_limit(512 * 1024)
        .high_water(128 * 1024);
    let (mut reactor, _service, addr) = serve(Amplify { log: log.clone() }, config);
    let mut hog = connect(addr);
    hog.write_all(&vec![b'!'; 32 * 1024]).unwrap(); // asks for 32 MiB, never reads
    run_until(&mut reactor, |_| !log.borrow().closed.is_empty());
    assert!(
        log.borrow().closed[0].1.contains("output limit"),
        "{:?}",
        log.borrow().closed
    );
    // A polite client is served as usual.
    let client = std::thread::spawn(move || {
        let mut s = connect(addr);
        s.write_all(b"?").unwrap();
        let mut got = vec![0; 1024];
        s.read_exact(&mut got).unwrap();
        got
    });
    assert_eq!(run_client(&mut reactor, client), vec![b'z'; 1024]);
    drop(hog);
}

/// A line protocol: consumes whole lines only, leaving partial ones.
struct Lines {
    lines: Rc<RefCell<Vec<String>>>,
    log: Shared,
    pause_after_first: bool,
}

impl Handler for Lines {
    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let mut consumed = 0;
        while let Some(end) = data[consumed..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&data[consumed..consumed + end]).into_owned();
            self.lines.borrow_mut().push(line);
            consumed += end + 1;
            if self.pause_after_first {
                self.pause_after_first = false;
                // The test resumes it later: the leftover must then be
                // handed back even though nothing new arrives.
                conns.pause_reading(id).unwrap();
                return consumed;
            }
        }
        consumed
    }
    fn on_close(&mut self, _: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        self.log.borrow_mut().closed.push((id, reason.to_string()));
    }
}

#[test]
fn partial_lines_are_kept_until_the_rest_arrives() {
    let lines = Rc::new(RefCell::new(Vec::new()));
    let handler = Lines {
        lines: lines.clone(),
        log: Shared::default(),
        pause_after_first: false,
    };
    let (mut reactor, _service, addr) = serve(handler, Config::default());
    let text = b"first line\nsecond\nthird one, longer than the others\n";
    let client = std::thread::spawn(move || {
        let mut s = connect(addr);
        s.set_nodelay(true).unwrap();
        for byte in text {
            s.write_all(&[*byte]).unwrap(); // one byte per write
        }
        s
    });
    let _stream = run_client(&mut reactor, client);
    run_until(&mut reactor, |_| lines.borrow().len() == 3);
    assert_eq!(
        *lines.borrow(),
        ["first line", "second", "third one, longer than the others"]
    );
}

#[test]
fn unconsumed_input_past_the_limit_closes_the_connection() {
    let lines = Rc::new(RefCell::new(Vec::new()));
    let log = Shared::default();
    let handler = Lines {
        lines,
        log: log.clone(),
        pause_after_first: false,
    };
    let (mut reactor, _service, addr) = serve(handler, Config::default().input_limit(1024));
    let mut s = connect(addr);
    s.write_all(&[b'x'; 4096]).unwrap(); // no newline
    run_until(&mut reactor, |_| !log.borrow().closed.is_empty());
    assert!(
        log.borrow().closed[0].1.contains("input limit"),
        "{:?}",
        log.borrow().closed
    );
    assert!(support::closed_within(&mut s, Duration::from_secs(5)));
}

#[test]
fn resume_reading_hands_back_leftover_input_without_new_bytes() {
    let lines = Rc::new(RefCell::new(Vec::new()));
    let handler = Lines {
        lines: lines.clone(),
        log: Shared::default(),
        pause_after_first: true,
    };
    let (mut reactor, service, addr) = serve(handler, Config::default());
    let mut s = connect(addr);
    s.write_all(b"one\ntwo\nthree\n").unwrap(); // arrives in one read
    run_until(&mut reactor, |_| lines.borrow().len() == 1);
    // Paused: the other two lines wait in the connection's input buffer.
    for _ in 0..5 {
        reactor.run_once(Some(Duration::from_millis(5))).unwrap();
    }
    assert_eq!(lines.borrow().len(), 1);
    service
        .with(&mut reactor, |_, conns| {
            let id = conns.ids().next().unwrap();
            assert_eq!(conns.input_len(id), Some(10));
            conns.resume_reading(id).unwrap();
        })
        .unwrap();
    run_until(&mut reactor, |_| lines.borrow().len() == 3);
    assert_eq!(*lines.borrow(), ["one", "two", "three"]);
}

#[test]
fn read_and_write_budgets_of_a_few_bytes_still_move_everything() {
    let config = Config::default().read_budget(7).write_budget(1000);
    let (mut reactor, service, addr) = serve(
        Echo {
            log: Shared::default(),
        },
        config,
    );
    let data = Rng::new(5).bytes(200_000);
    let expected = data.clone();
    let client = std::thread::spawn(move || {
        let mut s = connect(addr);
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || w.write_all(&data).unwrap());
        let mut got = vec![0; 200_000];
        s.read_exact(&mut got).unwrap();
        writer.join().unwrap();
        got
    });
    assert!(run_client(&mut reactor, client) == expected);
    assert!(service.stats().unwrap().reads >= 200_000 / 7);
}

#[test]
fn a_burst_of_connections_is_accepted_a_few_per_turn() {
    let log = Shared::default();
    let config = Config::default().accepts_per_turn(4);
    let (mut reactor, _service, addr) = serve(Echo { log: log.clone() }, config);
    let clients: Vec<TcpStream> = (0..300).map(|_| connect(addr)).collect();
    run_until(&mut reactor, |_| log.borrow().opened.len() == 300);
    drop(clients);
}

#[test]
fn the_handler_may_answer_a_half_close_before_closing() {
    struct Goodbye;
    impl Handler for Goodbye {
        fn on_data(&mut self, _: &mut Connections<'_>, _: ConnId, data: &[u8]) -> usize {
            data.len()
        }
        fn on_read_closed(&mut self, conns: &mut Connections<'_>, id: ConnId) {
            conns.send(id, b"bye\n").unwrap();
            conns.close(id).unwrap();
        }
    }
    let (mut reactor, _service, addr) = serve(Goodbye, Config::default());
    let client = std::thread::spawn(move || {
        let mut s = connect(addr);
        s.write_all(b"hello").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        support::read_to_end(&mut s).unwrap()
    });
    assert_eq!(run_client(&mut reactor, client), b"bye\n");
}

#[test]
fn shutdown_write_sends_fin_but_keeps_receiving() {
    struct Greeter {
        heard: Rc<RefCell<Vec<u8>>>,
    }
    impl Handler for Greeter {
        fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
            conns.send(id, b"all I have to say").unwrap();
            conns.shutdown_write(id).unwrap();
            assert_eq!(
                conns.send(id, b"more").unwrap_err().kind(),
                ErrorKind::BrokenPipe
            );
        }
        fn on_data(&mut self, _: &mut Connections<'_>, _: ConnId, data: &[u8]) -> usize {
            self.heard.borrow_mut().extend_from_slice(data);
            data.len()
        }
    }
    let heard = Rc::new(RefCell::new(Vec::new()));
    let (mut reactor, _service, addr) = serve(
        Greeter {
            heard: heard.clone(),
        },
        Config::default(),
    );
    let client = std::thread::spawn(move || {
        let mut s = connect(addr);
        let got = support::read_to_end(&mut s).unwrap(); // EOF = the server's FIN
        s.write_all(b"and my reply").unwrap();
        (s, got)
    });
    let (_stream, got) = run_client(&mut reactor, client);
    assert_eq!(got, b"all I have to say");
    run_until(&mut reactor, |_| heard.borrow().len() == 12);
    assert_eq!(*heard.borrow(), b"and my reply");
}

#[test]
fn a_refused_connect_closes_without_opening() {
    let log = Shared::default();
    let mut reactor = Reactor::new().unwrap();
    let service = Service::new(&mut reactor, Echo { log: log.clone() }, Config::default());
    let id = service
        .connect(&mut reactor, support::unused_addr())
        .unwrap();
    service
        .with(&mut reactor, |_, conns| {
            conns.send(id, b"queued early").unwrap()
        })
        .unwrap();
    run_until(&mut reactor, |_| !log.borrow().closed.is_empty());
    let log = log.borrow();
    assert!(log.opened.is_empty());
    assert_eq!(log.closed[0].0, id);
    assert!(log.closed[0].1.contains("refused"), "{:?}", log.closed);
}

#[test]
fn a_connect_that_hangs_times_out() {
    // A listener with a backlog of 0 that never accepts: once its queue is
    // full the kernel drops further SYNs, so the next connect hangs.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let fillers: Vec<TcpStream> = (0..2)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok())
        .collect();
    assert!(!fillers.is_empty());

    let log = Shared::default();
    let mut reactor = Reactor::new().unwrap();
    let config = Config::default().connect_timeout(Duration::from_millis(300));
    let service = Service::new(&mut reactor, Echo { log: log.clone() }, config);
    service.connect(&mut reactor, addr).unwrap();
    run_until(&mut reactor, |_| !log.borrow().closed.is_empty());
    assert!(log.borrow().opened.is_empty());
    assert_eq!(log.borrow().closed[0].1, "connect timed out");
}

#[test]
fn a_service_client_and_server_talk_over_a_unix_socket() {
    struct Ask {
        answer: Rc<RefCell<Vec<u8>>>,
    }
    impl Handler for Ask {
        fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, origin: Origin) {
            assert_eq!(origin, Origin::Connected);
            conns.send(id, b"over unix").unwrap();
        }
        fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
            self.answer.borrow_mut().extend_from_slice(data);
            if self.answer.borrow().len() == 9 {
                conns.close(id).unwrap();
            }
            data.len()
        }
    }
    let path =
        std::env::temp_dir().join(format!("reactor-service-test-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut reactor = Reactor::new().unwrap();
    let server = Service::new(
        &mut reactor,
        Echo {
            log: Shared::default(),
        },
        Config::default(),
    );
    server.listen_unix(&mut reactor, &path).unwrap();
    let answer = Rc::new(RefCell::new(Vec::new()));
    let client = Service::new(
        &mut reactor,
        Ask {
            answer: answer.clone(),
        },
        Config::default(),
    );
    client
        .with(&mut reactor, |_, conns| conns.connect_unix(&path).unwrap())
        .unwrap();
    run_until(&mut reactor, |_| answer.borrow().len() == 9);
    assert_eq!(*answer.borrow(), b"over unix");
    server
        .shutdown(&mut reactor, Duration::from_secs(1), |_| {})
        .unwrap();
    run_until(&mut reactor, |_| !path.exists());
}

#[test]
fn an_idle_connection_is_closed_with_the_reason() {
    let log = Shared::default();
    let config = Config::default().idle_timeout(Some(Duration::from_millis(50)));
    let (mut reactor, _service, addr) = serve(Echo { log: log.clone() }, config);
    let mut s = connect(addr);
    run_until(&mut reactor, |_| !log.borrow().closed.is_empty());
    assert_eq!(log.borrow().closed[0].1, "idle timeout");
    assert!(support::closed_within(&mut s, Duration::from_secs(5)));
}

#[test]
fn a_panicking_handler_loses_only_the_connection_it_was_handling() {
    struct Fragile {
        log: Shared,
    }
    impl Handler for Fragile {
        fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
            if data.starts_with(b"panic") {
                panic!("asked to");
            }
            let _ = conns.send(id, data);
            data.len()
        }
        fn on_close(&mut self, _: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
            self.log.borrow_mut().closed.push((id, reason.to_string()));
        }
    }
    let log = Shared::default();
    let (mut reactor, _service, addr) = serve(Fragile { log: log.clone() }, Config::default());
    let mut healthy = connect(addr);
    let mut doomed = connect(addr);
    doomed.write_all(b"panic").unwrap();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        for _ in 0..200 {
            reactor.run_once(Some(Duration::from_millis(20))).unwrap();
        }
    }));
    assert!(outcome.is_err(), "the panic propagated out of run_once");
    // Run on: the doomed connection is closed, the healthy one still echoes.
    let client = std::thread::spawn(move || {
        healthy.write_all(b"fine").unwrap();
        let mut got = [0; 4];
        healthy.read_exact(&mut got).unwrap();
        got
    });
    assert_eq!(&run_client(&mut reactor, client), b"fine");
    assert!(support::closed_within(&mut doomed, Duration::from_secs(5)));
    assert_eq!(log.borrow().closed[0].1, "handler panicked");
}

#[test]
fn graceful_shutdown_flushes_queued_output_then_runs_done() {
    let log = Shared::default();
    let (mut reactor, service, addr) = serve(Echo { log: log.clone() }, Config::default());
    let mut s = connect(addr);
    run_until(&mut reactor, |_| log.borrow().opened.len() == 1);
    let id = log.borrow().opened[0];
    let big = Rng::new(9).bytes(4 << 20);
    service
        .with(&mut reactor, |_, conns| conns.send(id, &big).unwrap())
        .unwrap();
    let done = Rc::new(RefCell::new(false));
    let d = done.clone();
    service
        .shutdown(&mut reactor, Duration::from_secs(20), move |_| {
            *d.borrow_mut() = true
        })
        .unwrap();
    assert_eq!(
        service
            .shutdown(&mut reactor, Duration::from_secs(1), |_| {})
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    // Nobody new gets in.
    assert!(TcpStream::connect(addr).is_err());
    let reader = std::thread::spawn(move || support::read_to_end(&mut s).unwrap());
    let got = run_client(&mut reactor, reader);
    assert!(got == big, "got {} of {} bytes", got.len(), big.len());
    run_until(&mut reactor, |_| *done.borrow());
    assert_eq!(log.borrow().closed[0].1, "service shut down");
}

#[test]
fn service_with_from_inside_the_handler_is_refused_not_a_panic() {
    struct Nested {
        me: Rc<RefCell<Option<Service<Nested>>>>,
        answer: Rc<RefCell<Option<ErrorKind>>>,
    }
    impl Handler for Nested {
        fn on_data(&mut self, conns: &mut Connections<'_>, _: ConnId, data: &[u8]) -> usize {
            let service = self.me.borrow().clone().unwrap();
            let result = service.with(conns.reactor(), |_, _| ());
            *self.answer.borrow_mut() = Some(result.unwrap_err().kind());
            data.len()
        }
    }
    let me = Rc::new(RefCell::new(None));
    let answer = Rc::new(RefCell::new(None));
    let (mut reactor, service, addr) = serve(
        Nested {
            me: me.clone(),
            answer: answer.clone(),
        },
        Config::default(),
    );
    *me.borrow_mut() = Some(service);
    let mut s = connect(addr);
    s.write_all(b"x").unwrap();
    run_until(&mut reactor, |_| answer.borrow().is_some());
    assert_eq!(*answer.borrow(), Some(ErrorKind::WouldBlock));
}

/// Regression: a write shutdown asked for while the connect was still in
/// progress, with nothing queued, used to be forgotten.
#[test]
fn shutdown_write_before_the_connect_completes_still_sends_fin() {
    struct Quiet;
    impl Handler for Quiet {
        fn on_data(&mut self, _: &mut Connections<'_>, _: ConnId, data: &[u8]) -> usize {
            data.len()
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut reactor = Reactor::new().unwrap();
    let client = Service::new(&mut reactor, Quiet, Config::default());
    client
        .with(&mut reactor, |_, conns| {
            let id = conns.connect(addr).unwrap();
            conns.shutdown_write(id).unwrap();
        })
        .unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        support::read_to_end(&mut s).unwrap() // returns only on our FIN
    });
    assert_eq!(run_client(&mut reactor, peer), b"");
}

/// Regression: when a graceful close completed during the before-sleep flush,
/// the handler's `on_close` ran after the hook had decided the loop could
/// sleep, so output it queued for others waited for an unrelated event.
#[test]
fn output_queued_by_on_close_after_a_flush_goes_out_without_another_event() {
    struct Relay {
        watcher: Option<ConnId>,
        closes: Rc<RefCell<usize>>,
    }
    impl Handler for Relay {
        fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
            if self.watcher.is_none() {
                self.watcher = Some(id);
            } else {
                // Output pending, then a graceful close: it completes only
                // when the flush in the before-sleep hook empties the queue.
                conns.send(id, b"goodbye\n").unwrap();
                conns.close(id).unwrap();
            }
        }
        fn on_data(&mut self, _: &mut Connections<'_>, _: ConnId, data: &[u8]) -> usize {
            data.len()
        }
        fn on_close(&mut self, conns: &mut Connections<'_>, id: ConnId, _: &CloseReason) {
            *self.closes.borrow_mut() += 1;
            if let Some(watcher) = self.watcher.filter(|w| *w != id) {
                conns.send(watcher, b"someone left\n").unwrap();
            }
        }
    }
    let closes = Rc::new(RefCell::new(0));
    let (mut reactor, _service, addr) = serve(
        Relay {
            watcher: None,
            closes: closes.clone(),
        },
        Config::default().linger_timeout(Duration::ZERO),
    );
    // The watcher hangs up once it has the notice, or after 10 s without it:
    // either way its close is an event, so the loop below always ends.
    let watcher = std::thread::spawn(move || {
        let mut s = connect(addr);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = [0; 13];
        s.read_exact(&mut got).map(|()| got)
    });
    // Let the watcher connect first, then the one that is closed.
    run_until(&mut reactor, |r| r.stats().events >= 1);
    let leaver = std::thread::spawn(move || support::read_to_end(&mut connect(addr)).unwrap());
    // Block on events only, with no timeout to hide the bug: if the notice
    // waited for a further event, the watcher would time out instead.
    for _ in 0..1000 {
        if *closes.borrow() == 2 {
            break;
        }
        reactor.run_once(None).unwrap();
    }
    assert_eq!(leaver.join().unwrap(), b"goodbye\n");
    let got = watcher.join().unwrap();
    assert_eq!(
        got.as_ref().map(|b| &b[..]).map_err(|e| e.kind()),
        Ok(&b"someone left\n"[..]),
        "the notice for the watcher was never written"
    );
}

/// Regression: the input limit was checked on the leftover plus a whole new
/// read before the handler had consumed anything, so a partial line followed
/// by a full read closed a connection that never held more than a line.
#[test]
fn the_input_limit_counts_only_what_the_handler_leaves() {
    let lines = Rc::new(RefCell::new(Vec::new()));
    let log = Shared::default();
    let handler = Lines {
        lines: lines.clone(),
        log: log.clone(),
        pause_after_first: false,
    };
    // Lines of 1,000 bytes, a limit of 4 KiB, reads of up to 64 KiB.
    let (mut reactor, _service, addr) = serve(handler, Config::default().input_limit(4096));
    let mut text = Vec::new();
    for i in 0..2000 {
        text.extend_from_slice(format!("{i:04}{}\n", "z".repeat(995)).as_bytes());
    }
    let client = std::thread::spawn(move || {
        let mut s = connect(addr);
        s.write_all(&text).unwrap();
        s
    });
    let _stream = run_client(&mut reactor, client);
    run_until(&mut reactor, |_| {
        lines.borrow().len() == 2000 || !log.borrow().closed.is_empty()
    });
    assert!(log.borrow().closed.is_empty(), "{:?}", log.borrow().closed);
}

#[test]
fn over_the_output_budget_nobody_is_read_until_it_drains() {
    /// Copies every byte to every other connection, like a chat room.
    struct Room {
        members: Vec<ConnId>,
    }
    impl Handler for Room {
        fn on_open(&mut self, _: &mut Connections<'_>, id: ConnId, _: Origin) {
            self.members.push(id);
        }
        fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
            for &m in self.members.iter().filter(|&&m| m != id) {
                conns.send(m, data).unwrap();
            }
            data.len()
        }
        fn on_close(&mut self, _: &mut Connections<'_>, id: ConnId, _: &CloseReason) {
            self.members.retain(|&m| m != id);
        }
    }
    const BUDGET: usize = 256 * 1024;
    const TOTAL: usize = 32 << 20;
    let config = Config::default()
        .output_budget(Some(BUDGET))
        .read_budget(16 * 1024)
        .high_water(16 << 20);
    let (mut reactor, service, addr) = serve(
        Room {
            members: Vec::new(),
        },
        config,
    );
    // Three members that do not read (yet). 32 MiB is more than the
    // kernel buffers between the server and each of them can hold.
    let mut readers: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
    run_until(&mut reactor, |_| service.stats().unwrap().open == 3);
    let mut sender = connect(addr);
    sender.set_nonblocking(true).unwrap();
    let data = Rng::new(21).bytes(TOTAL);
    let mut sent = 0;
    let mut stalled = 0;
    while sent < TOTAL && stalled < 50 {
        match sender.write(&data[sent..(sent + 65536).min(TOTAL)]) {
            Ok(n) => {
                sent += n;
                stalled = 0;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => stalled += 1,
            Err(e) => panic!("{e}"),
        }
        reactor.run_once(Some(Duration::from_millis(5))).unwrap();
        // Over budget, reading stops: at most one read's fan-out past it.
        let queued = service.stats().unwrap().queued_output;
        assert!(queued <= BUDGET + 3 * 16 * 1024, "{queued} bytes queued");
    }
    assert!(sent < TOTAL, "the sender was read without limit");
    // The members read: everything flows again, nothing lost.
    let threads: Vec<_> = readers
        .drain(..)
        .map(|mut r| {
            std::thread::spawn(move || {
                let mut got = vec![0; TOTAL];
                r.read_exact(&mut got).unwrap();
                got
            })
        })
        .collect();
    sender.set_nonblocking(false).unwrap();
    let rest = data[sent..].to_vec();
    let writer = std::thread::spawn(move || sender.write_all(&rest).unwrap());
    for t in threads {
        let got = run_client(&mut reactor, t);
        assert!(got == data);
    }
    writer.join().unwrap();
}

/// Regression: a small send went to the turn buffer and a large one, right
/// after it, to the backlog; the flush writes the backlog first, so the
/// bytes went out in the wrong order.
#[test]
fn small_then_large_sends_keep_their_order() {
    struct Mixed;
    impl Handler for Mixed {
        fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
            conns.send(id, b"head:").unwrap();
            conns.send(id, &vec![b'x'; 1 << 20]).unwrap();
            conns.send(id, b":tail").unwrap();
            conns.close(id).unwrap();
        }
        fn on_data(&mut self, _: &mut Connections<'_>, _: ConnId, data: &[u8]) -> usize {
            data.len()
        }
    }
    let (mut reactor, _service, addr) = serve(Mixed, Config::default());
    let client = std::thread::spawn(move || support::read_to_end(&mut connect(addr)).unwrap());
    let got = run_client(&mut reactor, client);
    let mut expected = b"head:".to_vec();
    expected.extend(vec![b'x'; 1 << 20]);
    expected.extend_from_slice(b":tail");
    assert!(
        got == expected,
        "{} bytes, starting {:?}",
        got.len(),
        String::from_utf8_lossy(&got[..10.min(got.len())])
    );
}

// ----- replies written straight from the read buffer ----------------------
//
// A send of a slice of the input `on_data` is reading, back to the same
// connection, is written from the read buffer when `on_data` returns. These
// tests check that whatever else the handler does meanwhile still sees the
// reply as queued, in order.

/// For each line: `order:` quotes it twice around a bar, `close:` echoes it
/// and closes, `abort:` echoes it and aborts, `shut:` echoes it and shuts
/// down the write side, `len:` echoes it and records
/// the output length it then sees, `bcast:` echoes it and broadcasts
/// `after`, `panic:` echoes it and panics; anything else is echoed.
struct Quoter {
    seen_len: SeenLen,
}

impl Handler for Quoter {
    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let mut used = 0;
        while let Some(end) = data[used..].iter().position(|&b| b == b'\n') {
            let line = &data[used..used + end + 1];
            let text = &line[..line.len() - 1];
            used += end + 1;
            if text.starts_with(b"order:") {
                conns.send(id, text).unwrap();
                conns.send(id, b"|").unwrap();
                conns.send(id, text).unwrap();
                conns.send(id, b"\n").unwrap();
                continue;
            }
            conns.send(id, line).unwrap();
            if text.starts_with(b"close:") {
                conns.close(id).unwrap();
            } else if text.starts_with(b"abort:") {
                conns.abort(id).unwrap();
            } else if text.starts_with(b"shut:") {
                conns.shutdown_write(id).unwrap();
            } else if text.starts_with(b"len:") {
                self.seen_len.borrow_mut().push(conns.output_len(id));
            } else if text.starts_with(b"bcast:") {
                assert_eq!(conns.broadcast([id], b"after\n"), 1);
            } else if text.starts_with(b"panic:") {
                panic!("asked to");
            }
        }
        used
    }
}

/// Output lengths a `Quoter` saw.
type SeenLen = Rc<RefCell<Vec<Option<usize>>>>;

fn quoter() -> (Reactor, Service<Quoter>, SocketAddr, SeenLen) {
    let seen_len = Rc::new(RefCell::new(Vec::new()));
    let (reactor, service, addr) = serve(
        Quoter {
            seen_len: seen_len.clone(),
        },
        Config::default(),
    );
    (reactor, service, addr, seen_len)
}

/// Sends one line and reads until `want` bytes came back or the server
/// closed; returns what came.
fn ask(addr: SocketAddr, line: &'static [u8], want: usize) -> JoinHandle<Vec<u8>> {
    ask_with(addr, line, want, None)
}

/// [`ask`] from a socket with a receive buffer of `receive_buffer` bytes (a
/// small one makes the server's writes partial).
fn ask_with(
    addr: SocketAddr,
    line: &'static [u8],
    want: usize,
    receive_buffer: Option<usize>,
) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        if let Some(size) = receive_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        socket.connect(&addr.into()).unwrap();
        let mut s: TcpStream = socket.into();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(line).unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 256];
        while got.len() < want {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got
    })
}

#[test]
fn a_quoted_reply_and_the_sends_after_it_keep_their_order() {
    let (mut reactor, service, addr, _) = quoter();
    let client = ask(addr, b"order:abc\n", 20);
    assert_eq!(run_client(&mut reactor, client), b"order:abc|order:abc\n");
    let client = ask(addr, b"bcast:x\n", 14);
    assert_eq!(run_client(&mut reactor, client), b"bcast:x\nafter\n");
    run_until(&mut reactor, |_| {
        service.stats().unwrap().queued_output == 0
    });
}

#[test]
fn a_quoted_reply_counts_as_queued_until_written() {
    let (mut reactor, _service, addr, seen_len) = quoter();
    let client = ask(addr, b"len:hello\n", 10);
    assert_eq!(run_client(&mut reactor, client), b"len:hello\n");
    assert_eq!(*seen_len.borrow(), [Some(10)]);
}

#[test]
fn close_or_shutdown_after_a_quoted_reply_sends_it_first_and_abort_drops_it() {
    let (mut reactor, service, addr, _) = quoter();
    // `want` past the reply: the client reads on to the close.
    let client = ask(addr, b"close:bye\n", 100);
    assert_eq!(run_client(&mut reactor, client), b"close:bye\n");
    let client = ask(addr, b"shut:fin\n", 100);
    assert_eq!(run_client(&mut reactor, client), b"shut:fin\n");
    let client = ask(addr, b"abort:gone\n", 100);
    assert_eq!(run_client(&mut reactor, client), b"");
    run_until(&mut reactor, |_| {
        let stats = service.stats().unwrap();
        stats.queued_output == 0 && stats.open == 0
    });
}

#[test]
fn a_panic_after_a_quoted_reply_leaves_nothing_counted() {
    let (mut reactor, service, addr, _) = quoter();
    let client = ask(addr, b"panic:now\n", 100);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        for _ in 0..200 {
            reactor.run_once(Some(Duration::from_millis(20))).unwrap();
        }
    }));
    assert!(outcome.is_err(), "the panic propagated out of run_once");
    assert_eq!(run_client(&mut reactor, client), b"");
    assert_eq!(service.stats().unwrap().queued_output, 0);
    // The service still answers.
    let client = ask(addr, b"plain\n", 6);
    assert_eq!(run_client(&mut reactor, client), b"plain\n");
}

#[test]
fn a_quoted_reply_the_socket_cannot_take_at_once_stays_first() {
    // Small kernel buffers on both sides: a 30 KB reply is written in part,
    // and the rest must still go out before what the handler sent after it.
    let seen_len = Rc::new(RefCell::new(Vec::new()));
    let (mut reactor, _service, addr) = serve(
        Quoter { seen_len },
        Config::default().send_buffer(Some(4096)),
    );
    for (command, tail) in [("order:", None), ("bcast:", Some(&b"after\n"[..]))] {
        let text = format!("{command}{}", "x".repeat(30_000));
        let mut want = Vec::new();
        match tail {
            None => want.extend_from_slice(format!("{text}|{text}\n").as_bytes()),
            Some(tail) => {
                want.extend_from_slice(format!("{text}\n").as_bytes());
                want.extend_from_slice(tail);
            }
        }
        let line: &'static [u8] = format!("{text}\n").into_bytes().leak();
        let client = ask_with(addr, line, want.len(), Some(4096));
        let got = run_client(&mut reactor, client);
        assert!(got == want, "{command} reply out of order");
    }
}

/// Regression (defects issue, 1): an ordinary graceful close lingered a
/// fixed `linger_timeout` after flushing, although the kernel still held
/// most of the reply for a peer that reads slowly. The peer's next packet
/// then drew a reset, and the reset destroyed what was still unsent. Now the
/// linger clock starts only once the peer has taken everything.
#[test]
fn a_graceful_close_delivers_everything_to_a_slow_reader_that_keeps_sending() {
    struct SendAndClose {
        reply: Vec<u8>,
    }
    impl Handler for SendAndClose {
        fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
            conns.send(id, &self.reply).unwrap();
            conns.close(id).unwrap();
        }
        fn on_data(&mut self, _: &mut Connections<'_>, _: ConnId, data: &[u8]) -> usize {
            data.len()
        }
    }
    let _heavy = support::heavy();
    let reply = Rng::new(31).bytes(4 << 20);
    let (mut reactor, _service, addr) = serve(
        SendAndClose {
            reply: reply.clone(),
        },
        // Short, so that the old fixed linger ended long before the reader
        // had read; the reply itself takes over a second to read.
        Config::default().linger_timeout(Duration::from_millis(100)),
    );
    let client = std::thread::spawn(move || {
        // A small receive window keeps most of the reply in the server's
        // kernel until it is read.
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.set_recv_buffer_size(32 * 1024)?;
        socket.connect(&addr.into())?;
        let mut stream = TcpStream::from(socket);
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut writer = stream.try_clone()?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_writer = stop.clone();
        // Input keeps arriving during the close, as from a pipelining client.
        let writer = std::thread::spawn(move || {
            for _ in 0..2000 {
                if stop_writer.load(std::sync::atomic::Ordering::Relaxed)
                    || writer.write_all(&[b'x'; 512]).is_err()
                {
                    break;
                }
                // Pacing a load, not synchronisation.
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let mut got = Vec::new();
        let mut buf = [0; 16 * 1024];
        let end = loop {
            match stream.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break Err(e),
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = writer.join();
        Ok::<_, std::io::Error>((got, end.map_err(|e| e.kind())))
    });
    let (got, end) = run_client(&mut reactor, client).unwrap();
    assert_eq!(end, Ok(()), "after {} of {} bytes", got.len(), reply.len());
    assert!(got == reply, "got {} of {} bytes", got.len(), reply.len());
}

/// Regression (defects issue, 5): a graceful close first flushed, with no
/// deadline, so a peer that never read held its descriptor and its queued
/// output for ever. Now the whole close has `close_timeout`.
#[test]
fn a_close_whose_peer_never_reads_is_aborted_at_the_close_timeout() {
    struct Blast {
        log: Shared,
        blast: Vec<u8>,
    }
    impl Handler for Blast {
        fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
            if data == b"blast" {
                conns.send(id, &self.blast).unwrap();
                conns.close(id).unwrap();
            } else {
                let _ = conns.send(id, data);
            }
            data.len()
        }
        fn on_close(&mut self, _: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
            self.log.borrow_mut().closed.push((id, reason.to_string()));
        }
    }
    let _heavy = support::heavy();
    let log = Shared::default();
    let (mut reactor, service, addr) = serve(
        Blast {
            log: log.clone(),
            blast: Rng::new(5).bytes(10 << 20),
        },
        Config::default()
            .close_timeout(Duration::from_millis(500))
            .send_buffer(Some(64 * 1024)),
    );
    let mut deaf = connect(addr);
    deaf.write_all(b"blast").unwrap();
    run_until(&mut reactor, |_| service.stats().unwrap().queued_output > 0);
    // Another client is served meanwhile, and after.
    let healthy = std::thread::spawn(move || support::echo_once(addr, b"still here"));
    assert_eq!(run_client(&mut reactor, healthy), b"still here");
    let timed_out = |log: &Shared| {
        log.borrow()
            .closed
            .iter()
            .any(|(_, reason)| reason == "close timed out (peer not reading)")
    };
    run_until(&mut reactor, |_| timed_out(&log));
    let stats = service.stats().unwrap();
    assert_eq!(
        (stats.open, stats.lingering, stats.queued_output),
        (0, 0, 0)
    );
    // The descriptor is closed: the peer sees the reset that the close with
    // output still queued sends. (Counting this process's descriptors would
    // race with the tests running beside this one.)
    assert!(support::closed_within(&mut deaf, Duration::from_secs(10)));
}

/// A line echo that leaves partial lines unconsumed, asks for a first line
/// on open, and answers the unfinished-input deadline with an error.
struct SlowLines {
    log: Shared,
}

impl Handler for SlowLines {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
        self.log.borrow_mut().opened.push(id);
        conns.expect_message(id).unwrap();
    }
    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let whole = data
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |end| end + 1);
        let _ = conns.send(id, &data[..whole]);
        whole
    }
    fn on_input_timeout(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        conns.send(id, b"error: too slow\n").unwrap();
    }
    fn on_close(&mut self, _: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        self.log.borrow_mut().closed.push((id, reason.to_string()));
    }
}

/// Regression (defects issue, 4): any byte counted as activity, so a client
/// trickling one byte at a time and never finishing a line held its slot
/// for ever. The unfinished-input deadline counts from a message's first
/// byte (or from connecting, for a first message) to its end.
#[test]
fn a_message_left_unfinished_is_closed_however_slowly_it_trickles() {
    let log = Shared::default();
    let (mut reactor, _service, addr) = serve(
        SlowLines { log: log.clone() },
        Config::default()
            .unfinished_input_timeout(Some(Duration::from_millis(300)))
            .idle_timeout(Some(Duration::from_secs(20))),
    );
    let trickler = std::thread::spawn(move || {
        let mut s = connect(addr);
        s.write_all(b"hello\n").unwrap();
        let mut got = vec![0; 6];
        s.read_exact(&mut got).unwrap();
        // Then one byte every 50 ms, never a newline, for at most 10 s.
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut reply = Vec::new();
        for _ in 0..200 {
            if s.write_all(b"z").is_err() {
                break;
            }
            let mut buf = [0; 64];
            match s.read(&mut buf) {
                Ok(0) => return (reply, true),
                Ok(n) => reply.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return (reply, false),
            }
        }
        (reply, false)
    });
    let talker = std::thread::spawn(move || {
        // Whole lines, slowly, for as long as the trickler takes: never cut.
        let mut s = connect(addr);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for i in 0..40 {
            let line = format!("line {i}\n");
            s.write_all(line.as_bytes()).unwrap();
            let mut got = vec![0; line.len()];
            s.read_exact(&mut got).unwrap();
            assert_eq!(got, line.as_bytes());
            // Pacing, not synchronisation: 40 lines over about 2 s.
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let silent = std::thread::spawn(move || {
        // Connects and never sends: the first message is expected.
        let mut s = connect(addr);
        let mut reply = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let ok = s.read_to_end(&mut reply).is_ok();
        (reply, ok)
    });
    let (reply, clean) = run_client(&mut reactor, trickler);
    assert_eq!(reply, b"error: too slow\n");
    assert!(clean, "the close was not a clean end of stream");
    assert_eq!(
        run_client(&mut reactor, silent),
        (b"error: too slow\n".to_vec(), true)
    );
    run_client(&mut reactor, talker);
    let log = log.borrow();
    let timed_out = log
        .closed
        .iter()
        .filter(|(_, reason)| reason == "unfinished input timed out")
        .count();
    assert_eq!(timed_out, 2, "closes: {:?}", log.closed);
}

/// Regression (rebuild issue, review hazard): a slow receiver of a broadcast
/// kept a slice of the turn's frozen copy, and so the whole copy, other
/// connections' private replies included, while only its slice counted
/// against its output limit. Turn after turn it could pin megabytes under a
/// limit of a few bytes. Now what its backlog pins counts.
#[test]
fn a_slow_receiver_answers_for_the_frozen_turns_it_pins() {
    struct Pinner {
        log: Shared,
        slow: Option<ConnId>,
        reply: Vec<u8>,
    }
    impl Handler for Pinner {
        fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
            if self.slow.is_none() {
                // Fill its socket, so what follows waits in its backlog.
                self.slow = Some(id);
                conns.send(id, &vec![b's'; 512 * 1024]).unwrap();
            }
        }
        fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
            for _ in data.iter().filter(|&&b| b == b'\n') {
                // One byte to both, then a large reply to the sender alone,
                // in the same turn: the frozen copy holds both.
                let to = self.slow.into_iter().chain([id]);
                conns.broadcast(to, b"x");
                conns.send(id, &self.reply).unwrap();
            }
            data.len()
        }
        fn on_close(&mut self, _: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
            self.log.borrow_mut().closed.push((id, reason.to_string()));
        }
    }
    let _heavy = support::heavy();
    let log = Shared::default();
    const REPLY: usize = 200 * 1024;
    let (mut reactor, _service, addr) = serve(
        Pinner {
            log: log.clone(),
            slow: None,
            reply: vec![b'r'; REPLY],
        },
        Config::default()
            .output_limit(2 << 20)
            .send_buffer(Some(16 * 1024)),
    );
    let slow = connect(addr);
    run_until(&mut reactor, |_| service_has_backlog(&_service));
    let driver = std::thread::spawn(move || {
        let mut s = connect(addr);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = vec![0; 1 + REPLY];
        for _ in 0..30 {
            s.write_all(b"go\n").unwrap();
            s.read_exact(&mut got).unwrap();
        }
    });
    run_client(&mut reactor, driver);
    let closed = log.borrow().closed.clone();
    assert!(
        closed
            .iter()
            .any(|(_, r)| r == "output limit exceeded (peer not reading)"),
        "the slow receiver pinned 30 turns of {REPLY} bytes and was not closed: {closed:?}"
    );
    drop(slow);
}

/// True once some connection of the service has a backlog it cannot write.
fn service_has_backlog<H: Handler>(service: &Service<H>) -> bool {
    service.largest_output().unwrap() > 0
}

#[test]
fn broadcast_where_and_broadcast_all_reach_the_chosen_connections() {
    struct Shout;
    impl Handler for Shout {
        fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
            // Everyone but the sender.
            assert_eq!(conns.broadcast_where(|to| to != id, data), 2);
            data.len()
        }
    }
    let (mut reactor, service, addr) = serve(Shout, Config::default());
    let mut clients: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
    run_until(&mut reactor, |_| service.stats().unwrap().open == 3);
    clients[0].write_all(b"hi").unwrap();
    let readers: Vec<_> = clients
        .iter()
        .skip(1)
        .map(|c| {
            let mut c = c.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut got = [0; 2];
                c.read_exact(&mut got).unwrap();
                got
            })
        })
        .collect();
    for reader in readers {
        assert_eq!(&run_client(&mut reactor, reader), b"hi");
    }
    let told = service
        .with(&mut reactor, |_, conns| conns.broadcast_all(b"all"))
        .unwrap();
    assert_eq!(told, 3);
    for client in &mut clients {
        let mut c = client.try_clone().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = [0; 3];
            c.read_exact(&mut got).unwrap();
            got
        });
        assert_eq!(
            &run_client(&mut reactor, reader),
            b"all",
            "the sender got no echo of its own"
        );
    }
}

#[test]
fn a_service_handle_drives_the_service_from_another_thread() {
    let log = Shared::default();
    let (mut reactor, service, addr) = serve(Echo { log: log.clone() }, Config::default());
    let mut client = connect(addr);
    run_until(&mut reactor, |_| log.borrow().opened.len() == 1);
    let remote = service.handle(&mut reactor);
    let admin = std::thread::spawn(move || {
        let (tx, rx) = std::sync::mpsc::channel();
        remote
            .call(move |_, conns| {
                tx.send(conns.len()).unwrap();
                conns.broadcast_all(b"from afar");
            })
            .unwrap();
        let open = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        remote
            .shutdown(Duration::from_secs(5), |reactor| reactor.stop())
            .unwrap();
        open
    });
    let reader = std::thread::spawn(move || support::read_to_end(&mut client).unwrap());
    reactor.run().unwrap(); // returns when the admin's shutdown is done
    assert_eq!(admin.join().unwrap(), 1);
    assert_eq!(reader.join().unwrap(), b"from afar");
    assert_eq!(log.borrow().closed[0].1, "service shut down");
}

#[test]
fn a_connection_exempt_from_the_idle_timeout_outlives_an_idle_one() {
    struct Exempting {
        log: Shared,
    }
    impl Handler for Exempting {
        fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
            // The first to connect is exempt.
            if self.log.borrow().opened.is_empty() {
                conns.exempt_from_idle(id, true).unwrap();
            }
            self.log.borrow_mut().opened.push(id);
        }
        fn on_data(&mut self, _: &mut Connections<'_>, _: ConnId, data: &[u8]) -> usize {
            data.len()
        }
        fn on_close(&mut self, _: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
            self.log.borrow_mut().closed.push((id, reason.to_string()));
        }
    }
    let log = Shared::default();
    let config = Config::default().idle_timeout(Some(Duration::from_millis(100)));
    let (mut reactor, service, addr) = serve(Exempting { log: log.clone() }, config);
    let _exempt = connect(addr);
    run_until(&mut reactor, |_| log.borrow().opened.len() == 1);
    let _idle = connect(addr);
    run_until(&mut reactor, |_| !log.borrow().closed.is_empty());
    let (exempt, idle) = (log.borrow().opened[0], log.borrow().opened[1]);
    assert_eq!(
        log.borrow().closed,
        vec![(idle, "idle timeout".to_string())]
    );
    // Subject to it again, the exempt one goes the same way.
    service
        .with(&mut reactor, |_, conns| {
            conns.reset_idle(exempt).unwrap();
            conns.exempt_from_idle(exempt, false).unwrap();
        })
        .unwrap();
    run_until(&mut reactor, |_| log.borrow().closed.len() == 2);
    assert_eq!(log.borrow().closed[1], (exempt, "idle timeout".to_string()));
}

/// Regression (outside review): an idle timeout or a shutdown grace of
/// `Duration::MAX` panicked on the first accept, or at the shutdown.
#[test]
fn timeouts_too_long_for_the_clock_mean_never() {
    let log = Shared::default();
    let config = Config::default()
        .idle_timeout(Some(Duration::MAX))
        .unfinished_input_timeout(Some(Duration::MAX))
        .close_timeout(Duration::MAX);
    let (mut reactor, service, addr) = serve(Echo { log: log.clone() }, config);
    let client = std::thread::spawn(move || support::echo_once(addr, b"forever"));
    assert_eq!(run_client(&mut reactor, client), b"forever");
    let done = Rc::new(RefCell::new(false));
    let d = done.clone();
    service
        .shutdown(&mut reactor, Duration::MAX, move |_| *d.borrow_mut() = true)
        .unwrap();
    run_until(&mut reactor, |_| *done.borrow());
}

/// A client that aborts each outgoing connection the moment it opens (as a
/// port scanner does) and starts the next one from inside `on_open`, so
/// the new connect can take the slot just freed.
struct AbortOnOpen {
    target: SocketAddr,
    left: usize,
    opened: usize,
    closed: usize,
}

impl Handler for AbortOnOpen {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, origin: Origin) {
        assert_eq!(origin, Origin::Connected);
        self.opened += 1;
        conns.abort(id).unwrap();
        if self.left > 0 {
            self.left -= 1;
            conns.connect(self.target).unwrap();
        }
    }
    fn on_data(&mut self, _: &mut Connections<'_>, _: ConnId, data: &[u8]) -> usize {
        data.len()
    }
    fn on_close(&mut self, _: &mut Connections<'_>, _: ConnId, _: &CloseReason) {
        self.closed += 1;
    }
}

/// Regression (issue 13, found by `port_scan`): the connect path went on
/// with the connection's slot after `on_open` had aborted it, and panicked
/// on the freed slot, or would have acted on the newcomer that took it.
#[test]
fn aborting_an_outgoing_connection_in_on_open_is_safe_even_when_its_slot_is_reused() {
    let log = Shared::default();
    let (mut reactor, _server, addr) = serve(Echo { log }, Config::default());
    let client = AbortOnOpen {
        target: addr,
        left: 20,
        opened: 0,
        closed: 0,
    };
    let client = Service::new(&mut reactor, client, Config::default());
    client.connect(&mut reactor, addr).unwrap();
    let probe = client.clone();
    run_until(&mut reactor, move |reactor| {
        probe.with(reactor, |c, _| c.closed == 21).unwrap()
    });
    let (opened, closed) = client
        .with(&mut reactor, |c, _| (c.opened, c.closed))
        .unwrap();
    assert_eq!((opened, closed), (21, 21));
}
