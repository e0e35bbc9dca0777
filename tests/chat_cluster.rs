//! `chat_server --redis`: three chat nodes joined by one real
//! `redis-server`, driven over loopback as users would, with Redis killed,
//! restarted, its subscribers cut, a node SIGKILLed, and `redis-cli` as a
//! subscriber and a publisher.
//!
//! Skipped (with the reason printed) without `redis-server` and
//! `redis-cli`, unless `REQUIRE_ALL=1`. Waits are for expected lines, each
//! bounded; where a message may be lost by design (published while a
//! node's subscription is being made again), the sender repeats a numbered
//! line until it arrives, a bounded number of times.

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::redis::Redis;
use support::{Server, heavy};

const PROMPT: &str = "Enter your name: ";
const WAIT: Duration = Duration::from_secs(20);

/// A chat node on free ports, joined to `redis`.
fn node(redis: &Redis, id: &str, extra: &[&str]) -> Server {
    let addr = redis.addr.to_string();
    let mut args = vec![
        "--addr",
        "127.0.0.1:0",
        "--json-addr",
        "127.0.0.1:0",
        "--redis",
        &addr,
        "--node-id",
        id,
    ];
    args.extend_from_slice(extra);
    let listeners = 2 + usize::from(extra.contains(&"--web-addr"));
    Server::start("chat_server", &args, listeners)
}

fn nodes(redis: &Redis, extra: &[&str]) -> Vec<Server> {
    (0..3)
        .map(|i| node(redis, &format!("node{i}"), extra))
        .collect()
}

fn line_addr(server: &Server) -> SocketAddr {
    server.listening[0].parse().unwrap()
}

fn json_addr(server: &Server) -> SocketAddr {
    server.listening[1].parse().unwrap()
}

/// A user: line protocol or NDJSON, reading lines with a short timeout so
/// that every wait below can keep its own deadline.
struct User {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    name: String,
    /// What the last `expect` skipped, for its failure message.
    skipped: Vec<String>,
}

impl User {
    fn connect(addr: SocketAddr, name: &str) -> User {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        User {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
            name: name.to_string(),
            skipped: Vec::new(),
        }
    }

    /// A line user who has answered the prompt and been welcomed.
    fn line(server: &Server, name: &str) -> User {
        let mut user = User::connect(line_addr(server), name);
        user.send(name);
        user.expect(&format!("welcome to lobby, {name}"));
        user
    }

    /// A JSON user who has joined the lobby.
    fn json(server: &Server, name: &str) -> User {
        let mut user = User::connect(json_addr(server), name);
        user.expect("\"welcome\"");
        user.send(&json!({"type": "join", "room": "lobby", "username": name}).to_string());
        user.expect(&format!("{name} joined lobby"));
        user
    }

    fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    /// The next line within `limit`, or `None`. (A prompt has no newline:
    /// it is returned as soon as it is complete.)
    fn next_within(&mut self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        let mut line = Vec::new();
        loop {
            let buf = match self.reader.fill_buf() {
                Ok([]) => panic!("{}: end of stream", self.name),
                Ok(buf) => buf,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if Instant::now() >= deadline {
                        // Keep a partial line for next time.
                        assert!(line.is_empty(), "{}: partial line {line:?}", self.name);
                        return None;
                    }
                    continue;
                }
                Err(e) => panic!("{}: {e}", self.name),
            };
            if let Some(end) = buf.iter().position(|&b| b == b'\n') {
                line.extend_from_slice(&buf[..end]);
                self.reader.consume(end + 1);
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
            let n = buf.len();
            line.extend_from_slice(buf);
            self.reader.consume(n);
            if line == PROMPT.as_bytes() {
                return Some(PROMPT.to_string());
            }
        }
    }

    /// Skips lines until one contains `needle` (within [`WAIT`]).
    #[track_caller]
    fn expect(&mut self, needle: &str) -> String {
        self.skipped.clear();
        self.expect_within(needle, WAIT).unwrap_or_else(|| {
            panic!(
                "{}: no line with {needle:?} within {WAIT:?}; skipped {:?}",
                self.name, self.skipped
            )
        })
    }

    fn expect_within(&mut self, needle: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.next_within(left) {
                Some(line) if line.contains(needle) => return Some(line),
                Some(line) => self.skipped.push(line),
                None => return None,
            }
        }
    }

    /// Asks `/who` (line users) until the answer satisfies `ok`, at most
    /// `tries` times; returns the last answer. A local answer (Redis away)
    /// is followed by a note, which is returned joined to it in brackets.
    fn who_until(&mut self, tries: usize, ok: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        for _ in 0..tries {
            last = self.who();
            if ok(&last) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{}: /who never satisfied the test; last: {last}", self.name);
    }

    /// `/who`, then `/help` as a marker: the cluster's answer comes from
    /// Redis, after `/help`'s; a local one and its note come before it.
    fn who(&mut self) -> String {
        self.send("/who");
        self.send("/help");
        let (mut who, mut note, mut help) = (None, None, false);
        let deadline = Instant::now() + WAIT;
        while who.is_none() || !help {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .next_within(left)
                .unwrap_or_else(|| panic!("{}: no answer to /who", self.name));
            if line.starts_with("who: ") {
                who = Some(line);
            } else if line.contains("cluster view is unavailable") {
                note = Some(line);
            } else if line.starts_with("commands: ") {
                help = true;
            }
        }
        let who = who.unwrap_or_default();
        match note {
            Some(note) => format!("{who} ({note})"),
            None => who,
        }
    }
}

/// Waits until every node's Redis link is up: each user's `/who` is the
/// cluster's (not the local fallback).
fn cluster_up(users: &mut [&mut User]) {
    for user in users {
        user.who_until(200, |who| !who.contains("unavailable"));
    }
}

/// `sender` says numbered lines starting with `tag` until every receiver
/// has seen one (bounded): the signal that messages flow between their
/// nodes again after a subscription was (re)made.
fn converge(sender: &mut User, receivers: &mut [&mut User], tag: &str) {
    for receiver in receivers.iter_mut() {
        let mut arrived = false;
        for n in 0..100 {
            sender.send(&format!("{tag} {n}"));
            if receiver
                .expect_within(&format!("{tag} "), Duration::from_millis(200))
                .is_some()
            {
                arrived = true;
                break;
            }
        }
        assert!(
            arrived,
            "{tag}: nothing from {} reached {}",
            sender.name, receiver.name
        );
    }
}

#[test]
fn line_and_json_users_on_three_nodes_chat_in_shared_rooms() {
    let _heavy = heavy();
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    let servers = nodes(&redis, &[]);
    let mut alice = User::line(&servers[0], "alice");
    let mut bob = User::json(&servers[1], "bob");
    let mut carol = User::line(&servers[2], "carol");
    cluster_up(&mut [&mut alice, &mut carol]);
    converge(&mut alice, &mut [&mut bob, &mut carol], "sync");

    bob.send(&json!({"type": "chat", "message": "hello from json"}).to_string());
    alice.expect("bob: hello from json");
    carol.expect("bob: hello from json");
    carol.send("/me waves");
    alice.expect("* carol waves");
    let action: Value = serde_json::from_str(&bob.expect("\"action\"")).unwrap();
    assert_eq!(action["username"], "carol");
    assert_eq!(action["message"], "waves");

    // A new room, entered on two nodes: its join and its chat cross over.
    carol.send("/join games");
    carol.expect("welcome to games, carol");
    alice.expect("carol left lobby");
    alice.send("/join Games");
    // Node0 had no games room: it is spelled as alice spelled it there.
    alice.expect("welcome to Games, alice");
    converge(&mut alice, &mut [&mut carol], "games-sync");
    carol.send("gg");
    alice.expect("carol: gg");
    // Bob, in the lobby, hears nothing of the games room.
    bob.send(&json!({"type": "chat", "message": "anyone?"}).to_string());
    assert!(
        alice
            .expect_within("anyone?", Duration::from_millis(500))
            .is_none(),
        "a lobby message reached the games room"
    );

    alice.send("/rooms");
    let rooms = alice.expect("rooms: ").to_lowercase();
    assert!(rooms.contains("games (2)"), "{rooms}");
    assert!(rooms.contains("lobby (1)"), "{rooms}");
}

#[test]
fn names_are_unique_across_nodes_and_msg_and_who_reach_every_node() {
    let _heavy = heavy();
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    let servers = nodes(&redis, &[]);
    let mut alice = User::line(&servers[0], "alice");
    cluster_up(&mut [&mut alice]);
    let mut probe = User::line(&servers[1], "probe");
    cluster_up(&mut [&mut probe]);

    // Another node's prompt is refused the name, in any case.
    let mut other = User::connect(line_addr(&servers[1]), "other");
    other.expect(PROMPT);
    other.send("ALICE");
    other.expect("error: the name ALICE is taken");
    other.expect(PROMPT);
    other.send("dave");
    other.expect("welcome to lobby, dave");
    // A JSON join on the third node, too.
    let mut json = User::connect(json_addr(&servers[2]), "json");
    json.expect("\"welcome\"");
    json.send(&json!({"type": "join", "room": "lobby", "username": "Alice"}).to_string());
    json.expect("the name Alice is taken");
    // /nick to a name held elsewhere.
    probe.send("/nick dave");
    probe.expect("error: the name dave is taken");

    let who = other.who_until(50, |w| w.contains("alice"));
    assert_eq!(who, "who: alice, dave, probe");

    other.send("/msg alice psst");
    alice.expect("[private] dave: psst");
    alice.send("/msg DAVE back at you");
    other.expect("[private] alice: back at you");
    other.send("/msg nobody hello?");
    other.expect("error: no such user nobody");

    // A rename frees the old name for another node.
    alice.send("/nick alicia");
    alice.expect("alice is now known as alicia");
    other.expect("alice is now known as alicia");
    let mut again = User::connect(line_addr(&servers[2]), "again");
    again.expect(PROMPT);
    again.send("alice");
    again.expect("welcome to lobby, alice");

    // SIGTERM releases the node's claims at once.
    assert_eq!(redis.cli_text(&["GET", "chat:name:alicia"]), "node0");
    servers[0].signal(15);
    let deadline = Instant::now() + WAIT;
    while !redis.cli_text(&["GET", "chat:name:alicia"]).is_empty() {
        assert!(Instant::now() < deadline, "alicia's claim outlived SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ten_thousand_lines_arrive_complete_and_in_order_on_the_other_nodes() {
    let _heavy = heavy();
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    let servers = nodes(&redis, &[]);
    let mut sender = User::line(&servers[0], "sender");
    let mut line_rx = User::line(&servers[1], "liner");
    let mut json_rx = User::json(&servers[2], "jsoner");
    cluster_up(&mut [&mut sender, &mut line_rx]);
    converge(&mut sender, &mut [&mut line_rx, &mut json_rx], "warmup");

    const LINES: usize = 10_000;
    let mut all = String::new();
    for n in 0..LINES {
        all.push_str(&format!("n{n}\n"));
    }
    sender.writer.write_all(all.as_bytes()).unwrap();

    let mut next = 0;
    while next < LINES {
        let line = line_rx
            .next_within(WAIT)
            .unwrap_or_else(|| panic!("liner: stopped after {next} lines"));
        let Some(text) = line.strip_prefix("sender: ") else {
            continue; // warmup lines still coming in
        };
        if text.starts_with("warmup") {
            continue;
        }
        assert_eq!(text, format!("n{next}"), "liner: out of order");
        next += 1;
    }
    let mut next = 0;
    while next < LINES {
        let line = json_rx
            .next_within(WAIT)
            .unwrap_or_else(|| panic!("jsoner: stopped after {next} lines"));
        let v: Value = serde_json::from_str(&line).unwrap();
        let text = v["message"].as_str().unwrap_or("");
        if v["type"] != "chat" || text.starts_with("warmup") {
            continue;
        }
        assert_eq!(text, format!("n{next}"), "jsoner: out of order");
        next += 1;
    }
}

#[test]
fn redis_killed_mid_run_local_chat_goes_on_and_cross_node_chat_resumes() {
    let _heavy = heavy();
    let Some(mut redis) = Redis::start(&[]) else {
        return;
    };
    let servers = nodes(&redis, &[]);
    let mut alice = User::line(&servers[0], "alice");
    let mut erin = User::line(&servers[0], "erin");
    let mut bob = User::line(&servers[1], "bob");
    cluster_up(&mut [&mut alice, &mut bob]);
    converge(&mut alice, &mut [&mut bob], "before");

    redis.kill();
    alice.who_until(100, |w| w.contains("cluster view is unavailable"));
    alice.send("still here");
    erin.expect("alice: still here");
    // A new user is accepted locally while Redis is away.
    let mut late = User::line(&servers[0], "late");
    late.send("hi all");
    alice.expect("late: hi all");

    redis.restart();
    cluster_up(&mut [&mut alice, &mut bob]);
    // Both ways: each node's subscription is made again on its own.
    converge(&mut alice, &mut [&mut bob], "after");
    converge(&mut bob, &mut [&mut alice], "back");
    bob.send("welcome back");
    alice.expect("bob: welcome back");
    // Names were claimed again on return: `late` is held by node0.
    let deadline = Instant::now() + WAIT;
    while redis.cli_text(&["GET", "chat:name:late"]) != "node0" {
        assert!(
            Instant::now() < deadline,
            "late's name was not claimed again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_name_taken_on_both_sides_of_a_split_goes_to_one_and_the_other_is_renamed() {
    let _heavy = heavy();
    let Some(mut redis) = Redis::start(&[]) else {
        return;
    };
    let servers = nodes(&redis, &[]);
    let mut a0 = User::line(&servers[0], "watch0");
    let mut a1 = User::line(&servers[1], "watch1");
    cluster_up(&mut [&mut a0, &mut a1]);
    redis.kill();
    a0.who_until(100, |w| w.contains("unavailable"));
    a1.who_until(100, |w| w.contains("unavailable"));
    let mut first = User::line(&servers[0], "sam");
    let mut second = User::line(&servers[1], "Sam");
    redis.restart();
    // One of the two is told and renamed; the other keeps the name.
    let deadline = Instant::now() + WAIT;
    let renamed = loop {
        assert!(Instant::now() < deadline, "no one was renamed");
        if first
            .expect_within("you are now", Duration::from_millis(100))
            .is_some()
        {
            break &mut first;
        }
        if second
            .expect_within("you are now", Duration::from_millis(100))
            .is_some()
        {
            break &mut second;
        }
    };
    renamed.expect("is now known as");
    let who = a0.who_until(100, |w| w.to_lowercase().contains("sam-2"));
    assert!(
        who.to_lowercase().contains("sam, ") || who.to_lowercase().ends_with("sam"),
        "{who}"
    );
}

#[test]
fn client_kill_type_pubsub_is_survived() {
    let _heavy = heavy();
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    let servers = nodes(&redis, &[]);
    let mut alice = User::line(&servers[0], "alice");
    let mut bob = User::line(&servers[1], "bob");
    let mut carol = User::line(&servers[2], "carol");
    cluster_up(&mut [&mut alice, &mut bob, &mut carol]);
    converge(&mut alice, &mut [&mut bob, &mut carol], "before");
    let killed: usize = redis
        .cli_text(&["CLIENT", "KILL", "TYPE", "pubsub"])
        .parse()
        .unwrap();
    assert_eq!(killed, 3, "one subscriber per node");
    converge(&mut alice, &mut [&mut bob, &mut carol], "after");
    carol.send("still connected");
    bob.expect("carol: still connected");
}

#[test]
fn a_sigkilled_nodes_users_leave_who() {
    let _heavy = heavy();
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    let servers = nodes(&redis, &["--redis-claim-ttl", "2s"]);
    let mut alice = User::line(&servers[0], "alice");
    let _frank = User::line(&servers[2], "frank");
    let _gina = User::json(&servers[2], "gina");
    cluster_up(&mut [&mut alice]);
    alice.who_until(100, |w| w == "who: alice, frank, gina");
    servers[2].signal(9);
    // Gone within the claim's lifetime (2 s) and a refresh: polled.
    alice.who_until(100, |w| w == "who: alice");
    // And their names are free again.
    let mut again = User::connect(line_addr(&servers[1]), "frank");
    again.expect(PROMPT);
    again.send("frank");
    again.expect("welcome to lobby, frank");
}

#[test]
fn redis_cli_sees_the_traffic_and_its_publish_reaches_every_node() {
    let _heavy = heavy();
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    let servers = nodes(&redis, &[]);
    let mut alice = User::line(&servers[0], "alice");
    let mut bob = User::json(&servers[1], "bob");
    cluster_up(&mut [&mut alice]);
    converge(&mut alice, &mut [&mut bob], "sync");

    let mut sub = redis
        .cli_command()
        .args(["SUBSCRIBE", "chat:room:lobby"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-cli");
    let (tx, rx) = mpsc::channel();
    let out = sub.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Subscribed: redis-cli prints the confirmation's count.
    support::wait_for_line(&rx, "chat:room:lobby", WAIT);
    support::wait_for_line(&rx, "1", WAIT);
    alice.send("hello cli");
    let seen = support::wait_for_line(&rx, "hello cli", WAIT);
    let v: Value = serde_json::from_str(&seen).unwrap();
    assert_eq!(
        v,
        json!({"node": "node0", "type": "chat", "room": "lobby", "username": "alice",
               "message": "hello cli"})
    );
    let _ = sub.kill();
    let _ = sub.wait();

    // redis-cli PUBLISH in the documented format, with an escape sequence
    // that must not reach a terminal raw.
    let payload = json!({"type": "chat", "room": "lobby", "username": "outsider",
                         "message": "red \u{1b}[31malert"})
    .to_string();
    let receivers = redis.cli_text(&["PUBLISH", "chat:room:lobby", &payload]);
    assert_eq!(receivers, "2", "the two nodes with lobby members subscribe");
    assert_eq!(alice.expect("outsider: "), "outsider: red  [31malert");
    let v: Value = serde_json::from_str(&bob.expect("outsider")).unwrap();
    assert_eq!(
        v["message"], "red \u{1b}[31malert",
        "JSON users get the exact text"
    );
    // A private message from outside, on a user's channel.
    let private = json!({"type": "private", "from": "ops", "message": "psst"}).to_string();
    assert_eq!(
        redis.cli_text(&["PUBLISH", "chat:user:alice", &private]),
        "1"
    );
    alice.expect("[private] ops: psst");
    // Junk on a channel is dropped, and the node goes on.
    redis.cli(&["PUBLISH", "chat:room:lobby", "not json"]);
    bob.send(&json!({"type": "chat", "message": "fine"}).to_string());
    alice.expect("bob: fine");
    // A message naming one of a node's own users, from elsewhere, is
    // forged (that user speaks through its node): dropped there, and the
    // next message arrives as the first.
    let forged = json!({"type": "chat", "room": "lobby", "username": "alice",
                        "message": "forged as alice"})
    .to_string();
    redis.cli(&["PUBLISH", "chat:room:lobby", &forged]);
    let rename = json!({"type": "renamed", "room": "lobby", "username": "ghost", "new": "alice"})
        .to_string();
    redis.cli(&["PUBLISH", "chat:room:lobby", &rename]);
    bob.send(&json!({"type": "chat", "message": "after the forgery"}).to_string());
    assert_eq!(alice.expect("bob: "), "bob: after the forgery");
}

#[test]
fn a_burst_of_who_costs_redis_one_question() {
    let _heavy = heavy();
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    let servers = nodes(&redis, &[]);
    let mut alice = User::line(&servers[0], "alice");
    let mut bob = User::line(&servers[1], "bob");
    cluster_up(&mut [&mut alice, &mut bob]);
    converge(&mut alice, &mut [&mut bob], "sync");
    let evals = |redis: &Redis| -> u64 {
        let stats = redis.cli_text(&["INFO", "commandstats"]);
        stats
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_eval:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let before = evals(&redis);
    // 49 in one write: one read, one question.
    alice.send("/who\n".repeat(49).trim_end());
    for _ in 0..49 {
        assert_eq!(alice.expect("who: "), "who: alice, bob");
    }
    let asked = evals(&redis) - before;
    assert!(asked <= 2, "49 /who cost Redis {asked} EVALs");
    // A join is seen at once, not a second later.
    let mut carol = User::line(&servers[2], "carol");
    alice.expect("carol joined lobby");
    alice.send("/who");
    assert_eq!(alice.expect("who: "), "who: alice, bob, carol");
    carol.send("hi");
    alice.expect("carol: hi");
}

#[test]
fn a_password_file_logs_in_and_a_wrong_one_is_logged_while_local_chat_goes_on() {
    let _heavy = heavy();
    let Some(redis) = Redis::start(&["--requirepass", "hunter2"]) else {
        return;
    };
    let dir = support::TempDir::new("chat-cluster");
    let good = dir.join("good");
    std::fs::write(&good, "hunter2\n").unwrap();
    let bad = dir.join("bad");
    std::fs::write(&bad, "wrong\n").unwrap();
    let good = good.to_str().unwrap();
    let bad = bad.to_str().unwrap();
    let with_good = node(&redis, "good", &["--redis-password-file", good]);
    let mut with_bad = node(&redis, "bad", &["--redis-password-file", bad]);
    let log = with_bad.stderr_lines();
    support::wait_for_line(&log, "Redis refused the login", WAIT);

    let mut alice = User::line(&with_good, "alice");
    cluster_up(&mut [&mut alice]);
    let mut bob = User::line(&with_bad, "bob");
    let mut carl = User::line(&with_bad, "carl");
    bob.send("local only");
    carl.expect("bob: local only");
    assert_eq!(
        bob.who(),
        "who: bob, carl (this node only: the cluster view is unavailable)"
    );
}

#[test]
fn a_full_publish_queue_drops_the_oldest_and_says_so_without_blocking_users() {
    let _heavy = heavy();
    let Some(mut redis) = Redis::start(&[]) else {
        return;
    };
    let mut server = node(&redis, "node0", &["--redis-queue", "10"]);
    let log = server.stderr_lines();
    let mut alice = User::line(&server, "alice");
    let mut erin = User::line(&server, "erin");
    cluster_up(&mut [&mut alice]);
    redis.kill();
    alice.who_until(100, |w| w.contains("unavailable"));
    for n in 0..50 {
        alice.send(&format!("queued {n}"));
    }
    // Every line reached the local member, at once.
    for n in 0..50 {
        erin.expect(&format!("alice: queued {n}"));
    }
    let warning = support::wait_for_line(&log, "publish queue full", WAIT);
    assert!(warning.contains("dropped"), "{warning}");
}

#[test]
fn a_name_waits_for_redis_at_most_a_second_then_is_accepted_locally() {
    let _heavy = heavy();
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    // A reply timeout longer than the test: the node still thinks Redis is
    // there, and the claim goes unanswered.
    let mut server = node(&redis, "node0", &["--redis-timeout", "60s"]);
    let log = server.stderr_lines();
    let mut alice = User::line(&server, "alice");
    cluster_up(&mut [&mut alice]);
    let pid = redis.pid().to_string();
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status();
    assert!(stopped.unwrap().success());
    let mut late = User::connect(line_addr(&server), "late");
    late.expect(PROMPT);
    late.send("late");
    late.expect("welcome to lobby, late");
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    // The log says which path it took: the wait ran out.
    support::wait_for_line(&log, "no answer from Redis for the name late", WAIT);
    alice.expect("late joined lobby");
}

#[test]
fn websocket_users_claim_names_and_chat_across_nodes() {
    use support::ws::WsClient;
    let _heavy = heavy();
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    let web = node(&redis, "web0", &["--web-addr", "127.0.0.1:0"]);
    let other = node(&redis, "node1", &[]);
    let mut alice = User::line(&other, "alice");
    cluster_up(&mut [&mut alice]);
    let web_addr: SocketAddr = web.listening[2].parse().unwrap();
    let mut page = WsClient::connect(web_addr, "/ws", None).expect("an upgrade");
    assert_eq!(page.next_json()["type"], "welcome");
    // The name another node holds is refused; the message waited for Redis.
    page.send_json(&json!({"type": "join", "room": "lobby", "username": "Alice"}));
    let refused = page.next_json();
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["message"], "the name Alice is taken");
    page.send_json(&json!({"type": "join", "room": "lobby", "username": "wendy"}));
    assert_eq!(page.next_json()["message"], "wendy joined lobby");
    alice.expect("wendy joined lobby");
    page.send_json(&json!({"type": "chat", "message": "from a browser"}));
    alice.expect("wendy: from a browser");
    alice.send("hello browser");
    loop {
        let m = page.next_json();
        if m["type"] == "chat" {
            assert_eq!(m["username"], "alice");
            assert_eq!(m["message"], "hello browser");
            break;
        }
    }
}

#[test]
fn nodes_started_before_redis_serve_locally_and_join_when_it_comes() {
    let _heavy = heavy();
    let Some(mut redis) = Redis::start(&[]) else {
        return;
    };
    redis.kill();
    let mut first = node(&redis, "node0", &[]);
    let log = first.stderr_lines();
    let second = node(&redis, "node1", &[]);
    support::wait_for_line(&log, "cannot connect to Redis", WAIT);
    let mut alice = User::line(&first, "alice");
    let mut erin = User::line(&first, "erin");
    let mut bob = User::line(&second, "bob");
    alice.send("anyone?");
    erin.expect("alice: anyone?");
    assert_eq!(
        alice.who(),
        "who: alice, erin (this node only: the cluster view is unavailable)"
    );
    redis.restart();
    cluster_up(&mut [&mut alice, &mut bob]);
    converge(&mut alice, &mut [&mut bob], "joined");
    assert_eq!(
        bob.who_until(50, |w| w.contains("alice")),
        "who: alice, bob, erin"
    );
}

#[test]
fn lines_the_local_rules_refuse_claim_no_name() {
    let _heavy = heavy();
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    let servers = nodes(&redis, &[]);
    let mut watcher = User::line(&servers[0], "watcher");
    cluster_up(&mut [&mut watcher]);
    let mut squatter = User::connect(json_addr(&servers[0]), "squatter");
    squatter.expect("\"welcome\"");
    // A nick before any name, and a join into a room with a bad name:
    // each refused here, so neither may hold its name in Redis.
    squatter.send(&json!({"type": "nick", "username": "squat1"}).to_string());
    squatter.expect("pick a name first");
    squatter.send(&json!({"type": "join", "room": "bad room!", "username": "squat2"}).to_string());
    squatter.expect("\"error\"");
    // A join that works claims its name (the signal that the node has
    // handled everything before it).
    squatter.send(&json!({"type": "join", "room": "lobby", "username": "fine"}).to_string());
    squatter.expect("fine joined lobby");
    assert_eq!(redis.cli_text(&["GET", "chat:name:fine"]), "node0");
    for name in ["squat1", "squat2"] {
        assert_eq!(
            redis.cli_text(&["EXISTS", &format!("chat:name:{name}")]),
            "0",
            "{name} was claimed"
        );
    }
}

#[test]
fn a_second_node_with_the_same_id_is_reported() {
    let _heavy = heavy();
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    let first = node(&redis, "twin", &[]);
    let mut watcher = User::line(&first, "watcher");
    cluster_up(&mut [&mut watcher]);
    let mut second = node(&redis, "twin", &[]);
    let log = second.stderr_lines();
    support::wait_for_line(&log, "another process runs as node twin", WAIT);
    drop(first);
}
