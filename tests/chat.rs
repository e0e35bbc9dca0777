//! `examples/chat_server` and `examples/chat_client`, driven over loopback
//! as users would: line clients, JSON clients, floods, slow readers, bad
//! input, and the client through a pipe and a pseudo-terminal.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::chat::{Json, Line, note};
use support::{Server, connect, heavy, run_example};

fn start(extra: &[&str]) -> Server {
    let mut args = vec!["--addr", "127.0.0.1:0", "--json-addr", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Server::start("chat_server", &args, 2)
}

fn line_addr(server: &Server) -> SocketAddr {
    server.listening[0].parse().unwrap()
}

fn json_addr(server: &Server) -> SocketAddr {
    server.listening[1].parse().unwrap()
}

#[test]
fn three_line_users_chat_join_rooms_and_whisper() {
    let server = start(&[]);
    let addr = line_addr(&server);
    let mut alice = Line::join(addr, "alice");
    let mut bob = Line::join(addr, "bob");
    alice.expect("bob joined lobby");
    let mut carol = Line::join(addr, "carol");
    alice.expect("carol joined lobby");
    bob.expect("carol joined lobby");

    // A duplicate name is refused (case-insensitively), and the prompt comes back.
    let mut impostor = Line::connect(addr);
    impostor.send("Alice");
    impostor.expect("error: the name Alice is taken");
    impostor.expect_prompt();
    drop(impostor);

    // Broadcast reaches the others, not the sender.
    alice.send("hello, everyone");
    bob.expect("alice: hello, everyone");
    carol.expect("alice: hello, everyone");
    alice.send("/who");
    alice.expect("who: alice, bob, carol");

    // /join: both rooms are told.
    bob.send("/join games");
    bob.expect("welcome to games, bob (/help lists the commands)");
    alice.expect("bob left lobby");
    carol.expect("bob left lobby");
    bob.send("/rooms");
    bob.expect("rooms: lobby (2), games (1)");
    carol.send("/join games");
    carol.expect("welcome to games, carol (/help lists the commands)");
    alice.expect("carol left lobby");
    bob.expect("carol joined games");
    carol.send("gg");
    bob.expect("carol: gg");

    // /msg crosses rooms; /me is an action; /nick is announced to the room.
    alice.send("/msg bob psst");
    bob.expect("[private] alice: psst");
    bob.send("/me waves");
    carol.expect("* bob waves");
    carol.send("/nick caroline");
    carol.expect("carol is now known as caroline");
    bob.expect("carol is now known as caroline");
    bob.send("/who");
    bob.expect("who: bob, caroline");
    bob.send("/msg carol still there?");
    bob.expect("error: no such user carol");

    // /help, unknown commands, /quit.
    alice.send("/help");
    assert!(alice.line().starts_with("commands: /join ROOM"));
    alice.send("/dance");
    assert!(alice.line().starts_with("error: unknown command /dance"));
    bob.send("/quit");
    bob.expect("bye");
    assert!(bob.closed());
    carol.expect("bob left games");
}

#[test]
fn json_users_follow_the_seeds_protocol() {
    let server = start(&[]);
    let mut dan = Json::connect(json_addr(&server));
    dan.send(json!({"type": "chat", "message": "too early"}));
    assert!(dan.expect_error().contains("join"));
    dan.send(json!({"type": "join", "room": "dev", "username": "dan"}));
    dan.expect(note("dan joined dev")); // the joiner included, as in the seed

    let mut eve = Json::connect(json_addr(&server));
    eve.send(json!({"type": "join", "room": "dev", "username": "eve"}));
    eve.expect(note("eve joined dev"));
    dan.expect(note("eve joined dev"));

    eve.send(json!({"type": "chat", "message": "hi dan"}));
    dan.expect(json!({"type": "chat", "username": "eve", "room": "dev", "message": "hi dan"}));
    eve.send(json!({"type": "private", "to": "DAN", "message": "secret"}));
    dan.expect(json!({"type": "private", "from": "eve", "message": "secret"}));

    // Leaving: everyone, the leaver included, is told; the name is kept.
    eve.send(json!({"type": "leave"}));
    eve.expect(note("eve left dev"));
    dan.expect(note("eve left dev"));
    eve.send(json!({"type": "chat", "message": "anyone?"}));
    assert!(eve.expect_error().contains("join"));
    eve.send(json!({"type": "join", "room": "dev", "username": "mallory"}));
    assert!(eve.expect_error().contains("different username"));
    eve.send(json!({"type": "join", "room": "dev", "username": "eve"}));
    eve.expect(note("eve joined dev"));
    dan.expect(note("eve joined dev"));

    // Bad requests get errors, the connection stays.
    eve.send_raw(b"this is not json\n");
    assert!(eve.expect_error().starts_with("invalid JSON"));
    eve.send(json!({"type": "join", "room": 5, "username": "eve"}));
    assert_eq!(eve.expect_error(), "field 'room' must be a string");
    eve.send(json!({"type": "join", "username": "eve"}));
    assert_eq!(eve.expect_error(), "missing field 'room'");
    eve.send(json!({"type": "dance"}));
    assert_eq!(eve.expect_error(), "unknown message type 'dance'");
    eve.send(json!(["type", "chat"]));
    assert_eq!(eve.expect_error(), "expected a JSON object");
    eve.send(json!({"message": "no type"}));
    assert_eq!(eve.expect_error(), "missing field 'type'");
    eve.send(json!({"type": "join", "room": "bad room!", "username": "eve"}));
    assert!(eve.expect_error().contains("invalid room name"));
    eve.send(json!({"type": "chat", "message": "still here"}));
    dan.expect(json!({"type": "chat", "username": "eve", "room": "dev", "message": "still here"}));
}

#[test]
fn line_and_json_users_share_a_room_and_a_namespace() {
    let server = start(&[]);
    let mut alice = Line::join(line_addr(&server), "alice");
    let mut jay = Json::connect(json_addr(&server));
    jay.send(json!({"type": "join", "room": "lobby", "username": "alice"}));
    assert!(jay.expect_error().contains("taken"));
    jay.send(json!({"type": "join", "room": "lobby", "username": "jay"}));
    jay.expect(note("jay joined lobby"));
    alice.expect("jay joined lobby");

    alice.send("hello jay");
    jay.expect(
        json!({"type": "chat", "username": "alice", "room": "lobby", "message": "hello jay"}),
    );
    jay.send(json!({"type": "chat", "message": "hello\nalice"}));
    alice.expect("jay: hello alice"); // a newline cannot forge a second line
    alice.send("/me smiles");
    jay.expect(
        json!({"type": "action", "username": "alice", "room": "lobby", "message": "smiles"}),
    );
    alice.send("/msg jay just us");
    jay.expect(json!({"type": "private", "from": "alice", "message": "just us"}));
    jay.send(json!({"type": "private", "to": "alice", "message": "ok"}));
    alice.expect("[private] jay: ok");
    alice.send("/nick al");
    alice.expect("alice is now known as al");
    jay.expect(note("alice is now known as al"));
    alice.send("/who");
    alice.expect("who: al, jay");
    drop(jay);
    alice.expect("jay left lobby");
}

/// Every C1 control, U+0080 to U+009F: none is ASCII, which is how they
/// slipped past the line filter's old fast path.
fn c1_controls() -> Vec<char> {
    (0x80..=0x9F).filter_map(char::from_u32).collect()
}

/// The bidirectional embedding, override and isolate characters.
fn bidi_controls() -> Vec<char> {
    (0x202A..=0x202E)
        .chain(0x2066..=0x2069)
        .filter_map(char::from_u32)
        .collect()
}

/// `<c>` for each character: each one's fate shows at its own place.
fn bracketed(chars: &[char]) -> String {
    chars.iter().map(|c| format!("<{c}>")).collect()
}

/// What a line user should get for `bracketed(chars)`.
fn bracketed_spaces(chars: &[char]) -> String {
    "< >".repeat(chars.len())
}

#[test]
fn every_c1_control_and_bidi_character_reaches_a_line_user_as_a_space() {
    let server = start(&[]);
    let addr = line_addr(&server);
    let mut alice = Line::join(addr, "alice");
    let mut bob = Line::join(addr, "bob");
    alice.expect("bob joined lobby");
    let c1 = c1_controls();
    let bidi = bidi_controls();
    let both = [c1.as_slice(), bidi.as_slice()].concat();

    // Each set alone (no ASCII control beside them), then a message, an
    // action and a private message: every way text reaches a line user.
    bob.send(&bracketed(&c1));
    alice.expect(&format!("bob: {}", bracketed_spaces(&c1)));
    bob.send(&bracketed(&bidi));
    alice.expect(&format!("bob: {}", bracketed_spaces(&bidi)));
    bob.send(&format!("/me {}", bracketed(&both)));
    alice.expect(&format!("* bob {}", bracketed_spaces(&both)));
    bob.send(&format!("/msg alice {}", bracketed(&both)));
    alice.expect(&format!("[private] bob: {}", bracketed_spaces(&both)));
    // With an ESC beside them (which took the old careful path), the same.
    bob.send(&format!("\x1b[2J{}", bracketed(&both)));
    alice.expect(&format!("bob:  [2J{}", bracketed_spaces(&both)));
    // The sender's own input, echoed in an error, is filtered too.
    bob.send(&format!("/msg x{} hi", bracketed(&both)));
    bob.expect(&format!("error: no such user x{}", bracketed_spaces(&both)));
}

#[test]
fn a_json_u009b_reaches_a_line_user_as_a_space() {
    let server = start(&[]);
    let mut alice = Line::join(line_addr(&server), "alice");
    let mut jay = Json::connect(json_addr(&server));
    jay.send(json!({"type": "join", "room": "lobby", "username": "jay"}));
    jay.expect(note("jay joined lobby"));
    alice.expect("jay joined lobby");

    // Written as a JSON escape, the way a JSON client would send it.
    jay.send_raw(b"{\"type\":\"chat\",\"message\":\"\\u009b31mred\"}\n");
    alice.expect("jay:  31mred");
    jay.send_raw(b"{\"type\":\"action\",\"message\":\"\\u009b2J\"}\n");
    alice.expect("* jay  2J");
    let both = [c1_controls(), bidi_controls()].concat();
    jay.send(json!({"type": "private", "to": "alice", "message": bracketed(&both)}));
    alice.expect(&format!("[private] jay: {}", bracketed_spaces(&both)));
}

#[test]
fn json_users_get_c1_and_bidi_characters_escaped_never_raw() {
    let server = start(&[]);
    let mut dan = Json::connect(json_addr(&server));
    dan.send(json!({"type": "join", "room": "dev", "username": "dan"}));
    dan.expect(note("dan joined dev"));
    let mut eve = Json::connect(json_addr(&server));
    eve.send(json!({"type": "join", "room": "dev", "username": "eve"}));
    eve.expect(note("eve joined dev"));
    dan.expect(note("eve joined dev"));

    // JSON is data: the exact text arrives (newlines too), but as escapes,
    // so a terminal showing the raw stream (nc) is safe. serde_json alone
    // escapes C0 but writes DEL, C1 and the bidi characters raw.
    let chars = [vec!['\u{7F}'], c1_controls(), bidi_controls()].concat();
    let sent = format!("{}\nline two", bracketed(&chars));
    eve.send(json!({"type": "chat", "message": sent}));
    let wire = dan.raw_line();
    for c in &chars {
        assert!(
            !wire.contains(*c),
            "U+{:04X} raw in {wire:?}",
            u32::from(*c)
        );
    }
    assert!(
        wire.contains(r"<\u009b>") && wire.contains(r"<\u202e>"),
        "{wire}"
    );
    let got: Value = serde_json::from_str(&wire).unwrap();
    assert_eq!(
        got,
        json!({"type": "chat", "username": "eve", "room": "dev", "message": sent})
    );
}

#[test]
fn ten_thousand_lines_arrive_complete_and_in_order() {
    let _heavy = heavy();
    let server = start(&[]);
    let addr = line_addr(&server);
    let mut sender = Line::join(addr, "sender");
    let mut readers: Vec<Line> = ["r1", "r2"]
        .iter()
        .map(|name| {
            let mut reader = Line::join(addr, name);
            // Everyone already present is told of the newcomer.
            reader
                .reader
                .get_mut()
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            reader
        })
        .collect();
    sender.expect("r1 joined lobby");
    sender.expect("r2 joined lobby");
    readers[0].expect("r2 joined lobby");

    let mut all = String::new();
    for i in 0..10_000 {
        all.push_str(&format!("line {i}\n"));
    }
    let mut writer = sender.writer.try_clone().unwrap();
    let send = std::thread::spawn(move || writer.write_all(all.as_bytes()).unwrap());
    for reader in &mut readers {
        for i in 0..10_000 {
            assert_eq!(reader.line(), format!("sender: line {i}"));
        }
    }
    send.join().unwrap();
}

#[test]
fn a_reader_that_never_reads_is_dropped_and_nobody_else_loses_a_line() {
    let _heavy = heavy();
    let server = start(&["--output-limit", "1MiB"]);
    let addr = line_addr(&server);
    let baseline = server.rss_kib();
    let mut slow = Line::join(addr, "slow");
    // The slow reader's socket takes little, so the server's queue fills.
    socket2::SockRef::from(slow.reader.get_ref())
        .set_recv_buffer_size(4096)
        .unwrap();
    let mut fast = Line::join(addr, "fast");
    let mut sender = Line::join(addr, "sender");
    fast.expect("sender joined lobby");

    // 20 MiB in 1 KiB lines. The sender keeps at most a window of 512 lines
    // ahead of the reading client (so that client never lags by the output
    // limit); the client that never reads falls behind without bound.
    const LINES: usize = 20 * 1024;
    const WINDOW: usize = 512;
    let payload = "x".repeat(1000);
    let mut writer = sender.writer.try_clone().unwrap();
    let body = payload.clone();
    let (read_tx, read_rx) = std::sync::mpsc::channel::<usize>();
    let send = std::thread::spawn(move || {
        let mut batch = String::new();
        for start in (0..LINES).step_by(WINDOW) {
            if start >= 2 * WINDOW {
                // Wait until the reader is within one window of us.
                while read_rx.recv_timeout(Duration::from_secs(60)).unwrap() + 2 * WINDOW
                    < start + WINDOW
                {}
            }
            batch.clear();
            for i in start..(start + WINDOW).min(LINES) {
                batch.push_str(&format!("{i:05} {body}\n"));
            }
            writer.write_all(batch.as_bytes()).unwrap();
        }
    });
    let mut peak = baseline;
    let mut slow_left = false;
    for i in 0..LINES {
        let mut line = fast.line();
        if line == "slow left lobby" {
            slow_left = true;
            line = fast.line();
        }
        assert_eq!(line, format!("sender: {i:05} {payload}"));
        if (i + 1) % WINDOW == 0 {
            let _ = read_tx.send(i + 1);
            peak = peak.max(server.rss_kib());
        }
    }
    send.join().unwrap();
    if !slow_left {
        fast.expect("slow left lobby");
    }
    // The slow reader got part of the stream, then the connection was closed.
    assert!(slow.closed());
    let growth = peak.saturating_sub(baseline);
    eprintln!("server RSS {baseline} KiB, peak {peak} KiB during a 20 MiB fan-out");
    assert!(growth < 32 * 1024, "server RSS grew by {growth} KiB");
    // Still serving.
    sender.send("done");
    fast.expect("sender: done");
}

#[test]
fn bad_input_gets_an_error_and_disturbs_nobody() {
    let server = start(&[]);
    let addr = line_addr(&server);
    let mut alice = Line::join(addr, "alice");
    let mut bob = Line::join(addr, "bob");
    alice.expect("bob joined lobby");

    // A line over 4096 bytes: one error, skipped up to its newline.
    bob.send(&"y".repeat(10_000));
    bob.expect("error: line longer than 4096 bytes");
    // Invalid UTF-8.
    bob.send_bytes(b"caf\xe9\n");
    bob.expect("error: invalid UTF-8: lines must be UTF-8 text");
    // CRLF is accepted.
    bob.send_bytes(b"windows line\r\n");
    alice.expect("bob: windows line");

    // A bad name at the prompt, too long or with spaces.
    let mut nameless = Line::connect(addr);
    nameless.send("no spaces allowed");
    assert!(nameless.line().starts_with("error: invalid name"));
    nameless.expect_prompt();
    nameless.send(&"n".repeat(33));
    assert!(nameless.line().starts_with("error: invalid name"));
    nameless.expect_prompt();

    // A thousand clients that connect and vanish without a word.
    for _ in 0..1000 {
        drop(TcpStream::connect(addr).unwrap());
    }
    // Some that vanish mid-line, or right after naming themselves.
    for i in 0..50 {
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(format!("ghost{i}\nhalf a li").as_bytes());
    }
    // Bob speaks; Alice gets it, and nothing but the ghosts' comings and
    // goings in between.
    bob.send("still fine?");
    loop {
        let line = alice.line();
        if line == "bob: still fine?" {
            break;
        }
        assert!(
            line.starts_with("ghost")
                && (line.ends_with(" joined lobby") || line.ends_with(" left lobby")),
            "unexpected line {line:?}"
        );
    }
}

#[test]
fn the_server_keeps_serving_after_a_crowd_vanishes() {
    let server = start(&[]);
    let addr = line_addr(&server);
    for _ in 0..1000 {
        drop(TcpStream::connect(addr).unwrap());
    }
    let mut alice = Line::join(addr, "alice");
    let mut bob = Line::join(addr, "bob");
    alice.expect("bob joined lobby");
    bob.send("after the crowd");
    alice.expect("bob: after the crowd");
}

#[test]
fn limits_on_clients_and_rooms_are_enforced_with_a_reason() {
    let server = start(&["--max-clients", "2", "--max-rooms", "2"]);
    let mut alice = Line::join(line_addr(&server), "alice");
    let mut jay = Json::connect(json_addr(&server));
    // A third client on either listener is refused in its own protocol.
    let mut third = connect(line_addr(&server));
    let mut reply = String::new();
    third.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "error: server full\n");
    let mut third_json = connect(json_addr(&server));
    let mut reply = String::new();
    third_json.read_to_string(&mut reply).unwrap();
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply, json!({"type": "error", "message": "server full"}));

    // Rooms: the lobby plus one more.
    alice.send("/join one");
    alice.expect("welcome to one, alice (/help lists the commands)");
    jay.send(json!({"type": "join", "room": "two", "username": "jay"}));
    assert!(jay.expect_error().contains("too many rooms"));
    // A failed first join leaves the name free.
    alice.send("/nick jay");
    alice.expect("alice is now known as jay");
}

#[test]
fn idle_clients_are_disconnected_when_asked() {
    let server = start(&["--idle-timeout", "200ms"]);
    let mut idle = Line::join(line_addr(&server), "idle");
    assert!(idle.closed());
}

#[test]
fn sigterm_tells_every_client_then_exits_zero() {
    let server = start(&[]);
    let mut alice = Line::join(line_addr(&server), "alice");
    let mut prompt_only = Line::connect(line_addr(&server));
    let mut jay = Json::connect(json_addr(&server));
    server.signal(15);
    alice.expect("server shutting down");
    prompt_only.expect("server shutting down");
    jay.expect(note("server shutting down"));
    assert!(alice.closed() && prompt_only.closed());
    let (status, stderr) = server.wait(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
}

#[test]
fn chat_client_through_a_pipe_sends_exits_and_restores_stdin() {
    let server = start(&[]);
    let addr = server.listening[0].clone();
    let mut watcher = Line::join(line_addr(&server), "watcher");

    let (reader, mut writer) = std::io::pipe().unwrap();
    let ours = reader.try_clone().unwrap(); // the same open pipe: shared flags
    let mut child = Command::new(support::example("chat_client"))
        .args(["--addr", &addr])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::from(reader))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writer
        .write_all(b"alice\nhello from a pipe\n/quit\n")
        .unwrap();
    drop(writer);
    watcher.expect("alice joined lobby");
    watcher.expect("alice: hello from a pipe");
    let status = support::wait_with_deadline(&mut child, Duration::from_secs(10));
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "{out}");
    assert!(out.contains("welcome to lobby, alice"), "{out}");
    assert!(out.ends_with("bye\n"), "{out:?}");
    // SAFETY: F_GETFL on a descriptor we own.
    let flags = unsafe { libc::fcntl(ours.as_raw_fd(), libc::F_GETFL) };
    assert_eq!(flags & libc::O_NONBLOCK, 0, "stdin left non-blocking");
    watcher.expect("alice left lobby");
}

#[test]
fn chat_client_reads_stdin_from_a_regular_file() {
    let server = start(&[]);
    let addr = server.listening[0].clone();
    let mut watcher = Line::join(line_addr(&server), "watcher");
    let path = std::env::temp_dir().join(format!("reactor-chat-input-{}", std::process::id()));
    std::fs::write(&path, "hello from a file\nno newline at the end").unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let child = Command::new(support::example("chat_client"))
        .args(["--addr", &addr, "--name", "filer"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::from(file))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    watcher.expect("filer joined lobby");
    watcher.expect("filer: hello from a file");
    watcher.expect("filer: no newline at the end");
    // End of the file: the client closes its side, the server the session.
    watcher.expect("filer left lobby");
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        !out.contains("Enter your name"),
        "--name answers the prompt: {out}"
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn chat_client_works_interactively_under_a_pseudo_terminal() {
    let server = start(&[]);
    let addr = server.listening[0].clone();
    let client = support::example("chat_client");
    // `script` runs the client with a pseudo-terminal as stdin and stdout,
    // and types what we write into it.
    let command = format!("{} --addr {addr}", client.display());
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs the client in a pty");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"erin\n/who\n/quit\n")
        .unwrap();
    let status = support::wait_with_deadline(&mut child, Duration::from_secs(10));
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "{out}");
    // A terminal turns "\n" into "\r\n": proof the client ran on a tty.
    assert!(
        out.contains("welcome to lobby, erin (/help lists the commands)\r\n"),
        "{out:?}"
    );
    assert!(out.contains("who: erin\r\n"), "{out:?}");
    assert!(out.contains("bye\r\n"), "{out:?}");
}

#[test]
fn chat_client_reports_a_refused_connection() {
    let free = support::unused_addr().to_string();
    let (status, _, stderr) =
        run_example("chat_client", &["--addr", &free], Duration::from_secs(10));
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("refused"), "{stderr}");
}

#[test]
fn an_idle_client_costs_a_few_hundred_bytes() {
    let _heavy = heavy();
    const N: usize = 1000;
    let server = start(&["--max-rooms", "200"]);
    let addr = json_addr(&server);
    // JSON clients in rooms of ten, each waiting for its own join notice: a
    // line crowd would all start in the lobby, and a thousand joins to one
    // room is a storm of notices whose transient buffers would swamp the
    // figure being measured.
    let mut warm = Json::connect(addr);
    warm.send(json!({"type": "join", "room": "warm", "username": "warm"}));
    warm.next();
    let before = server.rss_kib();
    let crowd: Vec<Json> = (0..N)
        .map(|i| {
            let mut client = Json::connect(addr);
            client.send(json!({"type": "join", "room": format!("room{}", i / 10), "username": format!("user{i}")}));
            assert_eq!(client.next()["message"], format!("user{i} joined room{}", i / 10));
            client
        })
        .collect();
    let after = server.rss_kib();
    let per_client = (after.saturating_sub(before) * 1024) as usize / N;
    eprintln!("idle chat client: {per_client} bytes each ({before} KiB -> {after} KiB)");
    assert!(per_client <= 1024, "{per_client} bytes per idle client");
    drop(crowd);
}

/// A client that sends a byte at a time and never finishes its line.
struct Trickler {
    stream: TcpStream,
    got: Vec<u8>,
    closed: bool,
}

impl Trickler {
    fn connect(addr: SocketAddr, first: &[u8]) -> Trickler {
        let mut stream = connect(addr);
        stream.write_all(first).unwrap();
        stream.set_nonblocking(true).unwrap();
        Trickler {
            stream,
            got: Vec::new(),
            closed: false,
        }
    }

    /// One more byte of a line that never ends, then whatever has come.
    fn tick(&mut self) {
        if self.closed {
            return;
        }
        let _ = self.stream.write(b"z");
        let mut buf = [0; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.closed = true;
                    return;
                }
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => panic!("a trickler's read failed with {e} (a reset, not a close?)"),
            }
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.got).into_owned()
    }
}

/// Regression (defects issue, 4): with `--idle-timeout 2s`, clients that sent
/// a byte every half second and never finished a line stayed connected for
/// ever (any byte counted as activity), which is all slowloris needs. Now a
/// line, or the name, must be finished within `--line-timeout` of its first
/// byte (of connecting, for the name): past it, one error and a clean close.
#[test]
fn lines_that_never_finish_are_cut_off_while_the_chat_goes_on() {
    let _heavy = heavy();
    let server = start(&["--line-timeout", "1s", "--idle-timeout", "2s"]);
    let (addr, jaddr) = (line_addr(&server), json_addr(&server));
    let mut alice = Line::join(addr, "alice");
    let mut bob = Line::join(addr, "bob");
    alice.expect("bob joined lobby");
    alice.send("/join talk");
    alice.expect("welcome to talk, alice (/help lists the commands)");
    bob.expect("alice left lobby");
    bob.send("/join talk");
    bob.expect("welcome to talk, bob (/help lists the commands)");
    alice.expect("bob joined talk");

    // Named users halfway through a line, users halfway through their name,
    // and a JSON user halfway through an object.
    let mut named: Vec<Trickler> = (0..10)
        .map(|i| Trickler::connect(addr, format!("slow{i}\nunfinished ").as_bytes()))
        .collect();
    let mut nameless: Vec<Trickler> = (0..5).map(|_| Trickler::connect(addr, b"nam")).collect();
    let mut json = Trickler::connect(jaddr, br#"{"type":"message","text":"#);

    let mut said = 0;
    for _ in 0..150 {
        for t in named.iter_mut().chain(&mut nameless).chain([&mut json]) {
            t.tick();
        }
        // The chat goes on meanwhile, and nothing of it is lost.
        alice.send(&format!("message {said}"));
        bob.expect(&format!("alice: message {said}"));
        said += 1;
        let all_closed = named
            .iter()
            .chain(&nameless)
            .chain([&json])
            .all(|t| t.closed);
        if all_closed {
            break;
        }
        // Pacing the trickle (one byte per 100 ms, well within the 2 s idle
        // timeout), not synchronisation.
        std::thread::sleep(Duration::from_millis(100));
    }
    for t in &named {
        assert!(
            t.closed,
            "a named trickler is still connected: {:?}",
            t.text()
        );
        assert!(
            t.text()
                .ends_with("error: line not finished within 1s: disconnecting\n"),
            "{:?}",
            t.text()
        );
    }
    for t in &nameless {
        assert!(
            t.closed,
            "a nameless trickler is still connected: {:?}",
            t.text()
        );
        assert_eq!(
            t.text(),
            "Enter your name: error: no name given within 1s: disconnecting\n"
        );
    }
    assert!(json.closed, "the JSON trickler is still connected");
    let last: Value = serde_json::from_str(json.text().lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "error", "{}", json.text());
    assert!(said >= 10, "only {said} messages went by");
    // The two who finish their lines are still here.
    alice.send("still here");
    bob.expect("alice: still here");
}
