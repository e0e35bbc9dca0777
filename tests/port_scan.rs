//! `examples/port_scan`, run as a user would, against listeners this test
//! opens on loopback. Each test reserves a block of consecutive ports of
//! its own (bound by this process, listening or not), and scans only that
//! block, so that tests running in parallel never see each other's ports.

#[path = "../examples/port_scan/ports.rs"]
mod ports;
// Only the parser is used here, not the file's loader.
#[allow(dead_code)]
#[path = "../examples/port_scan/services.rs"]
mod services;
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use support::run_example;

/// A block of consecutive loopback ports, all held by this process: the
/// ones in `open` listen, the others are bound without listening, so a
/// connect to them is refused and nobody else can take them meanwhile.
struct Block {
    first: u16,
    len: u16,
    listeners: Vec<TcpListener>,
    _reserved: Vec<Socket>,
}

impl Block {
    /// Finds `len` free consecutive ports (below the ephemeral range, so a
    /// scan of them never meets another test's outgoing connections) and
    /// listens on the offsets in `open`.
    fn reserve(len: u16, open: &[u16]) -> Block {
        let mut seed = std::process::id() as u64 * 7919 + open.len() as u64 * 104_729;
        for _ in 0..200 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let first = 20_000 + (seed >> 33) as u16 % 10_000;
            if let Some(block) = Block::try_at(first, len, open) {
                return block;
            }
        }
        panic!("no block of {len} free ports found");
    }

    fn try_at(first: u16, len: u16, open: &[u16]) -> Option<Block> {
        let mut listeners = Vec::new();
        let mut reserved = Vec::new();
        for offset in 0..len {
            let addr: SocketAddr = ([127, 0, 0, 1], first + offset).into();
            if open.contains(&offset) {
                listeners.push(TcpListener::bind(addr).ok()?);
            } else {
                let socket = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
                socket.bind(&addr.into()).ok()?;
                reserved.push(socket);
            }
        }
        Some(Block {
            first,
            len,
            listeners,
            _reserved: reserved,
        })
    }

    fn range(&self) -> String {
        format!("{}-{}", self.first, self.first + self.len - 1)
    }

    fn port(&self, offset: u16) -> u16 {
        self.first + offset
    }
}

fn scan(args: &[&str]) -> (i32, String, String) {
    let (status, out, err) = run_example("port_scan", args, Duration::from_secs(60));
    (status.code().unwrap_or(-1), out, err)
}

#[test]
fn finds_exactly_the_ports_that_listen() {
    let block = Block::reserve(40, &[0, 7, 8, 39]);
    let range = block.range();
    let (code, out, err) = scan(&["127.0.0.1", "--ports", &range]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    for (line, offset) in lines.iter().zip([0, 7, 8, 39]) {
        let prefix = format!("{}/tcp open ", block.port(offset));
        assert!(line.starts_with(&prefix), "{line:?} is not {prefix:?}...");
    }
    assert!(
        lines[4].starts_with("4 open, 36 closed, 0 filtered: 40 port(s) of 127.0.0.1"),
        "{}",
        lines[4]
    );
    // A comma list of single ports and ranges scans the same ports once.
    let list = format!(
        "{},{}-{},{}",
        block.port(0),
        block.port(0),
        block.port(8),
        block.port(39)
    );
    let (code, out, _) = scan(&["127.0.0.1", "--ports", &list]);
    assert_eq!(code, 0);
    assert!(
        out.contains("4 open, 6 closed, 0 filtered: 10 port(s)"),
        "{out}"
    );
}

/// Accepts one connection on `listener` (the scanner's), says `banner`,
/// and holds it until the scanner hangs up.
fn speak(listener: TcpListener, banner: &'static [u8]) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("the scanner connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let _ = stream.write_all(banner);
        let mut sink = [0u8; 64];
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    })
}

#[test]
fn banners_and_json_describe_each_open_port() {
    let mut block = Block::reserve(6, &[1, 2, 3]);
    let range = block.range();
    let (p1, p2, p3) = (block.port(1), block.port(2), block.port(3));
    let mut listeners = block.listeners.drain(..);
    let talkers = [
        speak(
            listeners.next().unwrap(),
            b"SSH-2.0-TestServer_1.0\r\nmore text\r\n",
        ),
        speak(listeners.next().unwrap(), b""),
        speak(listeners.next().unwrap(), &[b'z'; 2000]),
    ];
    let (code, out, err) = scan(&[
        "127.0.0.1",
        "--ports",
        &range,
        "--banner",
        "--json",
        "--timeout",
        "500ms",
    ]);
    assert_eq!(code, 0, "{err}");
    for talker in talkers {
        talker.join().unwrap();
    }
    let json: serde_json::Value = serde_json::from_str(&out).expect("stdout is JSON");
    let ports = json.as_array().expect("an array");
    assert_eq!(ports.len(), 3, "{out}");
    let banners: Vec<(u64, &str)> = ports
        .iter()
        .map(|p| (p["port"].as_u64().unwrap(), p["banner"].as_str().unwrap()))
        .collect();
    let long = "z".repeat(512);
    assert_eq!(
        banners,
        [
            (p1 as u64, "SSH-2.0-TestServer_1.0"),
            (p2 as u64, ""),
            (p3 as u64, long.as_str())
        ]
    );
    for p in ports {
        assert!(p["service"].is_null() || p["service"].is_string(), "{p}");
    }
    // The summary went to stderr, leaving stdout to the JSON.
    assert!(err.contains("3 open, 3 closed, 0 filtered"), "{err}");
}

#[test]
fn verbose_lists_closed_ports_with_their_timing() {
    let block = Block::reserve(3, &[1]);
    let range = block.range();
    let (code, out, err) = scan(&["127.0.0.1", "--ports", &range, "--verbose"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with(&format!("{}/tcp closed (", block.port(0))),
        "{}",
        lines[0]
    );
    assert!(lines[0].ends_with(" ms)"), "{}", lines[0]);
    assert!(
        lines[1].starts_with(&format!("{}/tcp open ", block.port(1))),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with(&format!("{}/tcp closed (", block.port(2))),
        "{}",
        lines[2]
    );
    assert!(lines[3].contains(" scanned in "), "{}", lines[3]);
}

#[test]
fn bad_arguments_exit_2_and_an_unknown_host_exits_1() {
    for args in [
        &["127.0.0.1", "--ports", "0"][..],
        &["127.0.0.1", "--ports", "10-5"],
        &["127.0.0.1", "--ports", "80,abc"],
        &["127.0.0.1", "--ports", "65536"],
        &["127.0.0.1", "--concurrency", "0"],
        &["--ports", "80"],
        &["127.0.0.1", "--bogus"],
    ] {
        let (code, _, err) = scan(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 2, "one line and a hint: {err}");
    }
    let (code, _, err) = scan(&["no-such-host.invalid", "--ports", "80"]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn port_lists_take_single_ports_ranges_and_commas() {
    let ports =
        |text: &str| ports::PortSet::parse(text).map(|set| set.iter().collect::<Vec<u16>>());
    assert_eq!(ports("22"), Ok(vec![22]));
    assert_eq!(
        ports("22,80,8000-8003"),
        Ok(vec![22, 80, 8000, 8001, 8002, 8003])
    );
    assert!(ports("5-3,1").is_err(), "a range that runs backwards");
    assert_eq!(ports("3, 1,2-3"), Ok(vec![1, 2, 3]), "sorted, each once");
    assert_eq!(ports("1-65535").map(|p| p.len()), Ok(65535));
    for bad in ["", "0", "65536", "a", "1-", "-5", "1,,2", "1-2-3"] {
        assert!(ports(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn service_names_come_from_the_services_file_as_getservbyport_reads_it() {
    let names = services::tcp_services(
        "# comment\nssh\t\t22/tcp\t\t\t# SSH\nhttp 80/tcp www\nwww-alt 80/tcp\ndomain 53/udp\n\nbad x/tcp\n",
    );
    assert_eq!(names.get(&22).map(String::as_str), Some("ssh"));
    assert_eq!(
        names.get(&80).map(String::as_str),
        Some("http"),
        "the first entry wins"
    );
    assert_eq!(names.get(&53), None, "UDP entries are not TCP services");
    assert_eq!(names.len(), 2);
}

#[test]
fn the_scan_runs_on_one_thread() {
    // A silent open port and --banner keep the scan waiting for a banner
    // long enough to look at the scanner's threads.
    let mut block = Block::reserve(1, &[0]);
    let listener = block.listeners.pop().unwrap();
    let range = block.range();
    let child = std::process::Command::new(support::example("port_scan"))
        .args([
            "127.0.0.1",
            "--ports",
            &range,
            "--banner",
            "--timeout",
            "3s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The scanner has connected (and is waiting to hear from us).
    let (_held, _) = listener.accept().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim();
    assert_eq!(threads, "1", "port_scan should scan on one thread");
    let (exit, out, _) = support::collect(child, Duration::from_secs(30));
    assert!(exit.success());
    assert!(
        out.starts_with(&format!("{}/tcp open ", block.port(0))),
        "{out}"
    );
}
