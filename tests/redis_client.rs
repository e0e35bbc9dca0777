//! `reactor::redis::Client` against a real `redis-server` (started by each
//! test on a free port, persistence off; skipped with the reason printed
//! when it is not installed, unless `REQUIRE_ALL=1`): pipelining, pub/sub
//! across `CLIENT KILL` and a restart, AUTH, RESP3, and the bounded queue.
//!
//! The client runs on a reactor on its own thread; the test drives it
//! through a `ServiceHandle` and reads its events from a channel, while
//! `redis-cli` acts on Redis from outside.

mod support;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use reactor::Reactor;
use reactor::codec::resp::{Protocol, Value};
use reactor::redis::{Client, ClientConfig, Event, Failure, Overflow, QueueFull, TICK};
use reactor::service::{
    CloseReason, Config, ConnId, Connections, Handler, Origin, Service, ServiceHandle,
};
use support::redis::Redis;

const WAIT: Duration = Duration::from_secs(20);

/// One client on the connection layer, forwarding its connection's calls
/// and sending its events to the test.
struct App {
    redis: Client<u64>,
    events: mpsc::Sender<Event<u64>>,
}

impl App {
    fn pass_events(&mut self) {
        while let Some(event) = self.redis.next_event() {
            let _ = self.events.send(event);
        }
    }
}

impl Handler for App {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
        self.redis.on_open(conns, id);
        self.pass_events();
    }
    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let used = self.redis.on_data(conns, id, data);
        self.pass_events();
        used
    }
    fn on_drained(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        self.redis.on_drained(conns, id);
        self.pass_events();
    }
    fn on_close(&mut self, conns: &mut Connections<'_>, id: ConnId, why: &CloseReason) {
        self.redis.on_close(conns, id, why);
        self.pass_events();
    }
}

/// A client for `config` on a reactor thread, started.
struct Running {
    app: ServiceHandle<App>,
    events: mpsc::Receiver<Event<u64>>,
    stop: reactor::Handle,
    thread: Option<thread::JoinHandle<()>>,
}

impl Running {
    fn start(config: ClientConfig) -> Running {
        let (tx, events) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let thread = thread::spawn(move || {
            let mut reactor = Reactor::new().unwrap();
            let app = App {
                redis: Client::new(config),
                events: tx,
            };
            let service = Service::new(&mut reactor, app, Config::default());
            service
                .with(&mut reactor, |app, conns| app.redis.start(conns))
                .unwrap();
            let ticker = service.clone();
            reactor.call_every(TICK, move |reactor| {
                let _ = ticker.with(reactor, |app, conns| {
                    app.redis.tick(conns, Instant::now());
                    app.pass_events();
                });
            });
            ready_tx
                .send((service.handle(&mut reactor), reactor.handle()))
                .unwrap();
            reactor.run().unwrap();
        });
        let (app, stop) = ready.recv_timeout(WAIT).unwrap();
        Running {
            app,
            events,
            stop,
            thread: Some(thread),
        }
    }

    /// Runs `job` on the loop with the client and the connections.
    fn call(&self, job: impl FnOnce(&mut Client<u64>, &mut Connections<'_>) + Send + 'static) {
        self.app
            .call(move |app, conns| {
                job(&mut app.redis, conns);
                app.pass_events();
            })
            .unwrap();
    }

    fn send(&self, args: &[&str], tag: u64) {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        self.call(move |redis, conns| redis.send(conns, &args, tag).unwrap());
    }

    /// The next event, skipping none.
    #[track_caller]
    fn next(&self) -> Event<u64> {
        self.events.recv_timeout(WAIT).expect("an event in time")
    }

    /// Skips events until one satisfies `want`.
    #[track_caller]
    fn until(&self, want: impl Fn(&Event<u64>) -> bool) -> Event<u64> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self
                .events
                .recv_timeout(left)
                .expect("the awaited event in time");
            if want(&event) {
                return event;
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn connected(e: &Event<u64>) -> bool {
    *e == Event::Connected
}

fn disconnected(e: &Event<u64>) -> bool {
    matches!(e, Event::Disconnected { .. })
}

fn message(e: &Event<u64>) -> bool {
    matches!(e, Event::Message { .. })
}

/// Polls `redis-cli PUBSUB NUMSUB channel` until it reports `n`: the
/// signal that a subscription has reached Redis.
fn wait_subscribers(redis: &Redis, channel: &str, n: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = redis.cli_text(&["PUBSUB", "NUMSUB", channel]);
        if out.lines().nth(1) == Some(n.to_string().as_str()) {
            return;
        }
        assert!(Instant::now() < deadline, "NUMSUB {channel} stayed {out:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pipelined_replies_come_back_in_order_with_their_tags() {
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    let client = Running::start(ClientConfig::new(redis.addr));
    client.call(|redis, conns| {
        for tag in 1..=2000 {
            redis.send(conns, &["INCR", "counter"], tag).unwrap();
        }
    });
    assert_eq!(client.next(), Event::Connected);
    for tag in 1..=2000 {
        assert_eq!(
            client.next(),
            Event::Reply {
                tag,
                value: Value::Integer(tag as i64)
            }
        );
    }
    // An error reply is a reply, and the stream goes on.
    client.send(&["NOSUCHCOMMAND"], 1);
    client.send(&["GET", "counter"], 2);
    assert!(matches!(
        client.next(),
        Event::Reply {
            tag: 1,
            value: Value::Error(_)
        }
    ));
    assert_eq!(
        client.next(),
        Event::Reply {
            tag: 2,
            value: Value::Bulk(b"2000".to_vec())
        }
    );
}

#[test]
fn corked_commands_go_out_in_one_piece_with_their_replies_in_order() {
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    let client = Running::start(ClientConfig::new(redis.addr));
    assert_eq!(client.next(), Event::Connected);
    // Corked: held, counted in flight, written by the uncork. Then one
    // more sent after the uncork, which must come after them.
    client.call(|redis, conns| {
        redis.cork();
        for tag in 1..=500 {
            redis.send(conns, &["INCR", "corked"], tag).unwrap();
        }
        assert_eq!(redis.stats().in_flight, 500);
        assert_eq!(redis.stats().queued, 0);
        redis.uncork(conns);
        redis.send(conns, &["GET", "corked"], 501).unwrap();
    });
    for tag in 1..=500 {
        assert_eq!(
            client.next(),
            Event::Reply {
                tag,
                value: Value::Integer(tag as i64)
            }
        );
    }
    assert_eq!(
        client.next(),
        Event::Reply {
            tag: 501,
            value: Value::Bulk(b"500".to_vec())
        }
    );
}

#[test]
fn subscriptions_survive_client_kill_and_a_restart_and_queued_commands_wait() {
    let Some(mut redis) = Redis::start(&[]) else {
        return;
    };
    let sub = Running::start(
        ClientConfig::new(redis.addr)
            .backoff(Duration::from_millis(50), Duration::from_millis(400)),
    );
    sub.call(|redis, conns| {
        redis.subscribe(conns, b"news");
        redis.psubscribe(conns, b"alerts.*");
    });
    sub.until(connected);
    wait_subscribers(&redis, "news", 1);
    redis.cli(&["PUBLISH", "news", "first"]);
    redis.cli(&["PUBLISH", "alerts.fire", "hot"]);
    assert_eq!(
        sub.until(message),
        Event::Message {
            channel: b"news".to_vec(),
            pattern: None,
            payload: b"first".to_vec()
        }
    );
    assert_eq!(
        sub.until(message),
        Event::Message {
            channel: b"alerts.fire".to_vec(),
            pattern: Some(b"alerts.*".to_vec()),
            payload: b"hot".to_vec()
        }
    );

    // Redis cuts the subscriber: a disconnect, a reconnect, resubscribed.
    assert_eq!(redis.cli_text(&["CLIENT", "KILL", "TYPE", "pubsub"]), "1");
    sub.until(disconnected);
    sub.until(connected);
    wait_subscribers(&redis, "news", 1);
    redis.cli(&["PUBLISH", "news", "second"]);
    assert!(matches!(sub.until(message), Event::Message { payload, .. } if payload == b"second"));

    // Redis gone: retried with backoff; back on the same port, the
    // subscriptions are made again.
    redis.kill();
    sub.until(disconnected);
    redis.restart();
    sub.until(connected);
    wait_subscribers(&redis, "news", 1);
    redis.cli(&["PUBLISH", "news", "third"]);
    assert!(matches!(sub.until(message), Event::Message { payload, .. } if payload == b"third"));

    // A command client: what is sent while Redis is down waits, and runs
    // once it is back; what was in flight when it went is reported lost.
    let cmd = Running::start(
        ClientConfig::new(redis.addr)
            .backoff(Duration::from_millis(50), Duration::from_millis(400)),
    );
    cmd.until(connected);
    redis.kill();
    cmd.until(disconnected);
    cmd.send(&["SET", "k", "v"], 7);
    redis.restart();
    cmd.until(connected);
    assert_eq!(
        cmd.next(),
        Event::Reply {
            tag: 7,
            value: Value::Simple("OK".into())
        }
    );
    assert_eq!(redis.cli_text(&["GET", "k"]), "v");
}

#[test]
fn auth_from_a_password_and_a_refused_one_is_a_disconnect() {
    let Some(redis) = Redis::start(&["--requirepass", "s3cret"]) else {
        return;
    };
    let good = Running::start(ClientConfig::new(redis.addr).password(b"s3cret".to_vec()));
    good.send(&["PING"], 1);
    assert_eq!(good.next(), Event::Connected);
    assert_eq!(
        good.next(),
        Event::Reply {
            tag: 1,
            value: Value::Simple("PONG".into())
        }
    );
    let bad = Running::start(ClientConfig::new(redis.addr).password(b"wrong".to_vec()));
    match bad.next() {
        Event::Disconnected { reason, .. } => {
            assert!(reason.contains("refused the login"), "{reason}")
        }
        other => panic!("expected a disconnect, got {other:?}"),
    }
    // RESP3's HELLO carries the password too.
    let hello = Running::start(
        ClientConfig::new(redis.addr)
            .password(b"s3cret".to_vec())
            .protocol(Protocol::Resp3),
    );
    assert_eq!(hello.next(), Event::Connected);
}

#[test]
fn resp3_carries_pushes_and_replies_on_one_connection() {
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    let client = Running::start(ClientConfig::new(redis.addr).protocol(Protocol::Resp3));
    client.call(|redis, conns| redis.subscribe(conns, b"room"));
    client.until(connected);
    wait_subscribers(&redis, "room", 1);
    // A command on the subscribed connection: allowed in RESP3.
    client.send(&["SET", "x", "1"], 1);
    assert_eq!(
        client.next(),
        Event::Reply {
            tag: 1,
            value: Value::Simple("OK".into())
        }
    );
    redis.cli(&["PUBLISH", "room", "pushed"]);
    assert!(
        matches!(client.until(message), Event::Message { payload, .. } if payload == b"pushed")
    );
    client.send(&["GET", "x"], 2);
    assert_eq!(
        client.next(),
        Event::Reply {
            tag: 2,
            value: Value::Bulk(b"1".to_vec())
        }
    );
}

#[test]
fn a_full_queue_drops_its_oldest_or_refuses_the_newest() {
    // Nothing listens: every command waits in the queue (no redis-server
    // needed).
    let addr = support::unused_addr();
    let drop_oldest = Running::start(
        ClientConfig::new(addr)
            .max_queued(3, Overflow::DropOldest)
            .backoff(Duration::from_secs(5), Duration::from_secs(5)),
    );
    drop_oldest.until(disconnected);
    for tag in 0..5 {
        drop_oldest.send(&["PING"], tag);
    }
    for tag in 0..2 {
        assert_eq!(
            drop_oldest.next(),
            Event::Failed {
                tag,
                failure: Failure::Dropped
            }
        );
    }
    let (tx, rx) = mpsc::channel();
    drop_oldest.call(move |redis, _| tx.send(redis.stats()).unwrap());
    let stats = rx.recv_timeout(WAIT).unwrap();
    assert_eq!((stats.queued, stats.dropped), (3, 2));

    let reject = Running::start(
        ClientConfig::new(addr)
            .max_queued(3, Overflow::Reject)
            .backoff(Duration::from_secs(5), Duration::from_secs(5)),
    );
    let (tx, rx) = mpsc::channel();
    reject.call(move |redis, conns| {
        let results: Vec<_> = (0..4)
            .map(|tag| redis.send(conns, &["PING"], tag))
            .collect();
        tx.send(results).unwrap();
    });
    let results = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(results, [Ok(()), Ok(()), Ok(()), Err(QueueFull(3))]);
}

/// A stand-in that accepts one connection, answers the client's `PING`,
/// reads one more command, and then does `act` to it: the faults a real
/// Redis would not commit on demand.
fn fake_redis(act: impl FnOnce(&mut std::net::TcpStream) + Send + 'static) -> std::net::SocketAddr {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut command = [0; 64];
        let _ = stream.read(&mut command);
        std::io::Write::write_all(&mut stream, b"+PONG\r\n").unwrap();
        let _ = stream.read(&mut command);
        act(&mut stream);
        // Keep the listener (and so the port) until the client is done.
        let _ = stream.read(&mut command);
        drop(listener);
    });
    addr
}

#[test]
fn bad_data_from_redis_is_a_disconnect_and_the_command_in_flight_is_lost() {
    use std::io::Write;
    let addr = fake_redis(|stream| {
        stream.write_all(b"?not resp\r\n").unwrap();
    });
    let client = Running::start(
        ClientConfig::new(addr).backoff(Duration::from_secs(5), Duration::from_secs(5)),
    );
    assert_eq!(client.next(), Event::Connected);
    client.send(&["PING"], 9);
    assert_eq!(
        client.next(),
        Event::Failed {
            tag: 9,
            failure: Failure::Lost
        }
    );
    match client.next() {
        Event::Disconnected { reason, .. } => assert!(reason.contains("bad data"), "{reason}"),
        other => panic!("expected a disconnect, got {other:?}"),
    }
}

#[test]
fn redis_closing_the_connection_is_a_disconnect_and_a_reply_to_nothing_too() {
    use std::io::Write;
    let closes = fake_redis(|stream| {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    });
    let client = Running::start(
        ClientConfig::new(closes).backoff(Duration::from_secs(5), Duration::from_secs(5)),
    );
    assert_eq!(client.next(), Event::Connected);
    client.send(&["PING"], 1);
    assert_eq!(
        client.next(),
        Event::Failed {
            tag: 1,
            failure: Failure::Lost
        }
    );
    assert!(disconnected(&client.next()));

    let chatty = fake_redis(|stream| {
        stream.write_all(b"+PONG\r\n+EXTRA\r\n").unwrap();
    });
    let client = Running::start(
        ClientConfig::new(chatty).backoff(Duration::from_secs(5), Duration::from_secs(5)),
    );
    assert_eq!(client.next(), Event::Connected);
    client.send(&["PING"], 1);
    assert_eq!(
        client.next(),
        Event::Reply {
            tag: 1,
            value: Value::Simple("PONG".into())
        }
    );
    match client.next() {
        Event::Disconnected { reason, .. } => {
            assert!(reason.contains("reply to no command"), "{reason}")
        }
        other => panic!("expected a disconnect, got {other:?}"),
    }
}

#[test]
fn a_hung_redis_is_noticed_by_the_reply_timeout_even_on_an_idle_subscriber() {
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    let config = ClientConfig::new(redis.addr)
        .reply_timeout(Some(Duration::from_millis(400)))
        .backoff(Duration::from_millis(50), Duration::from_millis(200));
    let sub = Running::start(config);
    sub.call(|redis, conns| redis.subscribe(conns, b"quiet"));
    sub.until(connected);
    // SIGSTOP: the sockets stay open, nothing answers.
    let pid = redis.pid().to_string();
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status();
    assert!(stop.unwrap().success());
    let event = sub.until(disconnected);
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    match event {
        Event::Disconnected { reason, .. } => assert!(reason.contains("no reply"), "{reason}"),
        _ => unreachable!(),
    }
    sub.until(connected);
    wait_subscribers(&redis, "quiet", 1);
}

#[test]
fn close_writes_what_was_sent_and_stops_reconnecting() {
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    let client = Running::start(ClientConfig::new(redis.addr));
    client.until(connected);
    client.call(|redis, conns| {
        redis.send(conns, &["SET", "last", "words"], 1).unwrap();
        redis.close(conns);
    });
    // Written and run, but a closing connection reads no reply.
    assert_eq!(
        client.next(),
        Event::Failed {
            tag: 1,
            failure: Failure::Lost
        }
    );
    assert_eq!(redis.cli_text(&["GET", "last"]), "words");
    // Only redis-cli itself is left connected, for good.
    let deadline = Instant::now() + WAIT;
    while redis.cli_text(&["CLIENT", "LIST"]).lines().count() != 1 {
        assert!(Instant::now() < deadline, "the client did not close");
        thread::sleep(Duration::from_millis(20));
    }
    let (tx, rx) = mpsc::channel();
    client.call(move |redis, _| tx.send(redis.stats()).unwrap());
    let stats = rx.recv_timeout(WAIT).unwrap();
    assert_eq!((stats.connects, stats.disconnects), (1, 0));
}
