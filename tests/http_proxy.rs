//! `http_proxy` against an origin that the test runs: hits, misses, what is
//! never stored, collapsed misses, a 100 MiB response streamed through with
//! bounded memory, an origin that is down (502) or stalls (504), CONNECT,
//! hop-by-hop fields and bad requests. Clients are `curl -x` (skipped with
//! a reason when curl is absent, unless `REQUIRE_ALL=1`) and raw sockets.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::Server;

// ---- the test origin -------------------------------------------------------

/// A small threaded HTTP/1.1 origin. Each path's first segment picks what
/// it answers with; it counts the requests for each path.
struct TestOrigin {
    addr: SocketAddr,
    counts: Arc<(Mutex<HashMap<String, usize>>, Condvar)>,
}

impl TestOrigin {
    fn start() -> TestOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new((Mutex::new(HashMap::new()), Condvar::new()));
        let shared = counts.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let counts = shared.clone();
                thread::spawn(move || serve(stream, &counts));
            }
        });
        TestOrigin { addr, counts }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn count(&self, path: &str) -> usize {
        let counts = self.counts.0.lock().unwrap();
        counts.get(path).copied().unwrap_or(0)
    }

    /// Waits (up to 10 s) until `path` has had `n` requests.
    fn wait_for(&self, path: &str, n: usize) {
        let (lock, changed) = &*self.counts;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut counts = lock.lock().unwrap();
        while counts.get(path).copied().unwrap_or(0) < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "origin never got request {n} for {path}");
            counts = changed.wait_timeout(counts, left).unwrap().0;
        }
    }
}

/// The byte at offset `i` of a large body.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

fn serve(mut stream: TcpStream, counts: &(Mutex<HashMap<String, usize>>, Condvar)) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let n = {
        let mut map = counts.0.lock().unwrap();
        let n = map.entry(path.clone()).or_insert(0);
        *n += 1;
        counts.1.notify_all();
        *n
    };
    let kind = path.split('/').nth(1).unwrap_or("");
    let arg = path.rsplit('/').next().unwrap_or("");
    let body = format!("{path} #{n}");
    let fixed = |extra: &str, body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let reply = match kind {
        "cache" => fixed("Cache-Control: max-age=60\r\n", &body),
        "nostore" => fixed("Cache-Control: max-age=60, no-store\r\n", &body),
        "private" => fixed("Cache-Control: private, max-age=60\r\n", &body),
        "cookie" => fixed("Cache-Control: max-age=60\r\nSet-Cookie: a=b\r\n", &body),
        "varystar" => fixed("Cache-Control: max-age=60\r\nVary: *\r\n", &body),
        "plain" => fixed("", &body),
        "headers" => fixed(
            "Cache-Control: no-store\r\nConnection: X-Hop, close\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\n",
            &head,
        ),
        "chunked" => format!(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n5\r\nhello\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        ),
        "slow" => {
            // Head and half the body, a pause, then the rest: clients that
            // come meanwhile are served as it arrives.
            thread::sleep(Duration::from_millis(300));
            let body = format!("{path} #{n} {}", "x".repeat(1000));
            let (first, rest) = body.split_at(body.len() / 2);
            let head = format!(
                "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: {}\r\n\r\n{first}",
                body.len()
            );
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(300));
            let _ = stream.write_all(rest.as_bytes());
            return;
        }
        "big" | "bigslow" => {
            if kind == "bigslow" {
                thread::sleep(Duration::from_millis(300));
            }
            let len: usize = arg.parse().unwrap_or(0);
            let head = format!(
                "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: {len}\r\n\r\n"
            );
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            let block: Vec<u8> = (0..251 * 261).map(pattern).collect();
            let mut sent = 0;
            while sent < len {
                let n = (len - sent).min(block.len());
                if stream.write_all(&block[..n]).is_err() {
                    return;
                }
                sent += n;
            }
            return;
        }
        "eof" => format!("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\r\n{body}"),
        "upload" => {
            let lower = head.to_ascii_lowercase();
            if lower.contains("expect: 100-continue") {
                let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            let received = if lower.contains("transfer-encoding: chunked") {
                read_chunked(&mut reader)
            } else {
                let len = lower
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                body
            };
            let sum: u64 = received.iter().map(|&b| u64::from(b)).sum();
            fixed("", &format!("{} {sum}", received.len()))
        }
        "stall" => {
            // Never answers; holds the connection until the proxy lets go.
            let mut sink = [0u8; 1024];
            while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
            return;
        }
        _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
    };
    let _ = stream.write_all(reply.as_bytes());
    let _ = stream.shutdown(Shutdown::Write);
}

/// A chunked body, read by the test origin.
fn read_chunked(reader: &mut BufReader<TcpStream>) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return body;
        }
        let size =
            usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16).unwrap_or(0);
        if size == 0 {
            let mut end = String::new();
            let _ = reader.read_line(&mut end);
            return body;
        }
        let start = body.len();
        body.resize(start + size, 0);
        let _ = reader.read_exact(&mut body[start..]);
        let mut crlf = [0u8; 2];
        let _ = reader.read_exact(&mut crlf);
    }
}

// ---- clients ---------------------------------------------------------------

fn proxy(args: &[&str]) -> Server {
    let mut all = vec!["--addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    Server::start("http_proxy", &all, 1)
}

/// A response as a client saw it.
#[derive(Debug)]
struct Reply {
    /// Interim and CONNECT answers before the final one.
    interim: Vec<u16>,
    status: u16,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn cache(&self) -> &str {
        self.header("x-cache").unwrap_or("-")
    }
}

/// Splits a response (head and body) as received.
fn parse_reply(bytes: &[u8]) -> Reply {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let fields = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        interim: Vec::new(),
        status,
        fields,
        body: bytes[end + 4..].to_vec(),
    }
}

/// `curl -x PROXY URL` with `extra` arguments: the final response.
fn curl(proxy: SocketAddr, url: &str, extra: &[&str]) -> Reply {
    let output = Command::new("curl")
        .args(["-s", "-S", "-i", "--max-time", "20", "-x"])
        .arg(format!("http://{proxy}"))
        .args(extra)
        .arg(url)
        .output()
        .expect("run curl");
    let mut bytes = output.stdout.as_slice();
    // With -p, curl prints the CONNECT's answer first; interim answers
    // (100 Continue) come before the final one too.
    let mut interim = Vec::new();
    while bytes.starts_with(b"HTTP/1.1 200 Connection Established")
        || bytes.starts_with(b"HTTP/1.1 1")
    {
        let at = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        interim.push(parse_reply(&bytes[..at + 4]).status);
        bytes = &bytes[at + 4..];
    }
    Reply {
        interim,
        ..parse_reply(bytes)
    }
}

/// A raw connection to the proxy with a read timeout.
fn connect(proxy: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(proxy).expect("connect to the proxy");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Reads a response head (a byte at a time: nothing past it is taken).
fn read_head(stream: &mut TcpStream) -> Reply {
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read a head");
        assert!(
            n == 1,
            "closed inside a head: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        bytes.push(byte[0]);
    }
    parse_reply(&bytes)
}

/// Reads one response with a `Content-Length` body from `stream`.
fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut reply = read_head(stream);
    let len: usize = reply
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    stream.read_exact(&mut body).expect("read a body");
    reply.body = body;
    reply
}

fn status_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM line")
}

// ---- tests -----------------------------------------------------------------

#[test]
fn repeated_requests_are_hits_with_an_age() {
    if !support::tool("curl") {
        return;
    }
    let origin = TestOrigin::start();
    let server = proxy(&[]);
    let first = curl(server.addr(), &origin.url("/cache/a"), &[]);
    assert_eq!((first.status, first.cache()), (200, "MISS"));
    assert_eq!(first.text(), "/cache/a #1");
    let again = curl(server.addr(), &origin.url("/cache/a"), &[]);
    assert_eq!((again.status, again.cache()), (200, "HIT"));
    assert_eq!(again.text(), "/cache/a #1", "served without the origin");
    assert!(
        again
            .header("age")
            .is_some_and(|a| a.parse::<u64>().is_ok())
    );
    assert_eq!(origin.count("/cache/a"), 1);

    // A chunked response is stored too, and served with a length.
    let chunked = curl(server.addr(), &origin.url("/chunked/b"), &[]);
    assert_eq!(
        (chunked.cache(), chunked.text().as_str()),
        ("MISS", "hello/chunked/b #1")
    );
    let hit = curl(server.addr(), &origin.url("/chunked/b"), &[]);
    assert_eq!(
        (hit.cache(), hit.text().as_str()),
        ("HIT", "hello/chunked/b #1")
    );
    assert_eq!(hit.header("content-length"), Some("18"));

    // A body delimited by the origin's close reaches curl chunked, and is
    // stored with a length.
    let eof = curl(server.addr(), &origin.url("/eof/e"), &[]);
    assert_eq!((eof.cache(), eof.text().as_str()), ("MISS", "/eof/e #1"));
    assert_eq!(eof.header("transfer-encoding"), Some("chunked"));
    let hit = curl(server.addr(), &origin.url("/eof/e"), &[]);
    assert_eq!(
        (hit.cache(), hit.header("content-length")),
        ("HIT", Some("9"))
    );

    // A stored body larger than the high-water mark goes out in pieces,
    // as the client drains them.
    let big = "/big/1048576";
    let first = curl(server.addr(), &origin.url(big), &[]);
    let hit = curl(server.addr(), &origin.url(big), &[]);
    assert_eq!((first.cache(), hit.cache()), ("MISS", "HIT"));
    assert_eq!(hit.body.len(), 1 << 20);
    assert!(hit.body.iter().enumerate().all(|(i, &b)| b == pattern(i)));
    assert_eq!(origin.count(big), 1);

    // HEAD: no body, the representation's length passed on.
    let head = curl(server.addr(), &origin.url("/plain/h"), &["-I"]);
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("11"))
    );
    assert!(head.body.is_empty());

    // A request with credentials neither reads nor fills the cache.
    for _ in 0..2 {
        let auth = curl(
            server.addr(),
            &origin.url("/cache/auth"),
            &["-H", "Authorization: Basic eDp5"],
        );
        assert_eq!(auth.cache(), "MISS");
    }
    assert_eq!(origin.count("/cache/auth"), 2);

    // Keep-alive and pipelining: two requests on one connection, in order.
    let mut stream = connect(server.addr());
    let get = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", origin.url("/cache/a"));
    let plain = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", origin.url("/plain/p"));
    stream
        .write_all(format!("{get}{plain}{get}").as_bytes())
        .unwrap();
    let replies: Vec<Reply> = (0..3).map(|_| read_reply(&mut stream)).collect();
    let seen: Vec<(&str, String)> = replies.iter().map(|r| (r.cache(), r.text())).collect();
    assert_eq!(
        seen,
        [
            ("HIT", "/cache/a #1".to_string()),
            ("MISS", "/plain/p #1".to_string()),
            ("HIT", "/cache/a #1".to_string())
        ]
    );
}

#[test]
fn uncacheable_responses_are_never_stored() {
    if !support::tool("curl") {
        return;
    }
    let origin = TestOrigin::start();
    let server = proxy(&[]);
    for path in [
        "/nostore/a",
        "/private/a",
        "/cookie/a",
        "/varystar/a",
        "/plain/a",
    ] {
        for n in 1..=2 {
            let reply = curl(server.addr(), &origin.url(path), &[]);
            assert_eq!((reply.status, reply.cache()), (200, "MISS"), "{path}");
            assert_eq!(reply.text(), format!("{path} #{n}"));
        }
        assert_eq!(origin.count(path), 2, "{path}");
    }
    // A client asking not to store bypasses the cache as well.
    curl(
        server.addr(),
        &origin.url("/cache/ns"),
        &["-H", "Cache-Control: no-store"],
    );
    let after = curl(server.addr(), &origin.url("/cache/ns"), &[]);
    assert_eq!(
        (after.cache(), after.text().as_str()),
        ("MISS", "/cache/ns #2")
    );
}

#[test]
fn request_bodies_stream_to_the_origin() {
    if !support::tool("curl") {
        return;
    }
    let origin = TestOrigin::start();
    let server = proxy(&[]);
    let dir = std::env::temp_dir().join(format!("http_proxy_upload_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("body.bin");
    let data: Vec<u8> = (0..3 << 20).map(pattern).collect();
    std::fs::write(&file, &data).unwrap();
    let sum: u64 = data.iter().map(|&b| u64::from(b)).sum();
    let expected = format!("{} {sum}", data.len());
    let at_file = format!("@{}", file.display());
    // curl sends `Expect: 100-continue` before a body this large; the
    // origin's 100 is passed back.
    let sized = curl(
        server.addr(),
        &origin.url("/upload/a"),
        &["--data-binary", &at_file],
    );
    assert_eq!((sized.status, sized.text()), (200, expected.clone()));
    assert_eq!(sized.interim, [100]);
    let chunked = curl(
        server.addr(),
        &origin.url("/upload/b"),
        &[
            "--data-binary",
            &at_file,
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "Expect:",
        ],
    );
    assert_eq!((chunked.status, chunked.text()), (200, expected));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hop_by_hop_fields_are_removed_and_via_added() {
    if !support::tool("curl") {
        return;
    }
    let origin = TestOrigin::start();
    let server = proxy(&[]);
    let reply = curl(
        server.addr(),
        &origin.url("/headers/x"),
        &[
            "-H",
            "Connection: X-Private",
            "-H",
            "X-Private: 1",
            "-H",
            "Proxy-Authorization: Basic eDp5",
            "-H",
            "TE: trailers",
            "-H",
            "X-Kept: yes",
        ],
    );
    assert_eq!(reply.status, 200);
    let seen = reply.text().to_ascii_lowercase();
    for gone in [
        "x-private",
        "proxy-authorization",
        "proxy-connection",
        "\r\nte:",
    ] {
        assert!(!seen.contains(gone), "the origin saw {gone}: {seen}");
    }
    assert!(seen.contains("x-kept: yes"), "{seen}");
    assert!(seen.contains("via: 1.1 reactor-proxy"), "{seen}");
    assert!(
        seen.starts_with("get /headers/x http/1.1"),
        "origin-form target: {seen}"
    );
    assert_eq!(reply.header("x-hop"), None);
    assert_eq!(reply.header("keep-alive"), None);
    assert_eq!(reply.header("via"), Some("1.1 reactor-proxy"));
}

/// `n` clients asking for `path` at once: the first, and once the origin
/// has its request, the others (which come while it is under way, or, if
/// late, after). Their replies, the first one's first.
fn at_once(proxy: &Server, origin: &TestOrigin, path: &str, n: usize) -> Vec<Reply> {
    let addr = proxy.addr();
    let url = origin.url(path);
    let fetch = |url: String| thread::spawn(move || curl(addr, &url, &[]));
    let first = fetch(url.clone());
    origin.wait_for(path, 1);
    let later: Vec<_> = (1..n).map(|_| fetch(url.clone())).collect();
    std::iter::once(first)
        .chain(later)
        .map(|client| client.join().expect("a client thread"))
        .collect()
}

#[test]
fn concurrent_misses_make_one_origin_request() {
    if !support::tool("curl") {
        return;
    }
    let origin = TestOrigin::start();
    // The origin answers slowly: the head and half the body, a pause, the rest.
    let server = proxy(&[]);
    let replies = at_once(&server, &origin, "/slow/c", 6);
    assert_eq!((replies[0].status, replies[0].cache()), (200, "MISS"));
    let expected = replies[0].text();
    assert!(expected.starts_with("/slow/c #1 "));
    for reply in &replies[1..] {
        assert_eq!((reply.status, reply.cache()), (200, "HIT"));
        assert_eq!(reply.text(), expected);
    }
    assert_eq!(
        origin.count("/slow/c"),
        1,
        "one origin request for six clients"
    );

    // Too large for the cache: the first client is streamed to, and those
    // waiting make their own requests.
    let server = proxy(&["--max-object", "64KiB"]);
    for reply in at_once(&server, &origin, "/bigslow/200000", 3) {
        assert_eq!((reply.status, reply.cache()), (200, "MISS"));
        assert_eq!(reply.body.len(), 200_000);
        assert!(reply.body.iter().enumerate().all(|(i, &b)| b == pattern(i)));
    }
    assert_eq!(origin.count("/bigslow/200000"), 3);
}

#[test]
fn a_fetch_goes_on_for_its_waiters_when_its_first_client_leaves() {
    let origin = TestOrigin::start();
    let server = proxy(&[]);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
        origin.url("/slow/left")
    );
    let mut first = connect(server.addr());
    first.write_all(request.as_bytes()).unwrap();
    origin.wait_for("/slow/left", 1);
    let mut others: Vec<TcpStream> = (0..3).map(|_| connect(server.addr())).collect();
    for other in &mut others {
        other.write_all(request.as_bytes()).unwrap();
    }
    // Each has its head: it is attached to the fetch (waiting for it, or
    // reading it as it arrives). The first client leaves before the end.
    let heads: Vec<Reply> = others.iter_mut().map(read_head).collect();
    assert!(heads.iter().all(|h| h.status == 200 && h.cache() == "HIT"));
    drop(first);
    for (other, head) in others.iter_mut().zip(heads) {
        let len: usize = head.header("content-length").unwrap().parse().unwrap();
        let mut body = vec![0; len];
        other.read_exact(&mut body).expect("the whole body");
        assert!(body.starts_with(b"/slow/left #1 "));
    }
    assert_eq!(origin.count("/slow/left"), 1);
}

#[test]
fn a_large_response_streams_through_a_slow_client_in_bounded_memory() {
    let _heavy = support::heavy();
    const LEN: usize = 100 << 20;
    let origin = TestOrigin::start();
    let server = proxy(&[]);
    let before = status_hwm_kib(server.pid());
    let mut stream = connect(server.addr());
    let path = format!("/big/{LEN}");
    let request = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", origin.url(&path));
    stream.write_all(request.as_bytes()).unwrap();
    // A slow client: nothing read until the origin has been writing for a
    // while, then reads in small pieces, pausing now and then.
    origin.wait_for(&path, 1);
    thread::sleep(Duration::from_millis(300));
    let reply = read_head(&mut stream);
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-length"),
        Some(LEN.to_string().as_str())
    );
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = 0;
    let mut peak_rss = 0;
    while got < LEN {
        let n = stream.read(&mut buf).expect("read the body");
        assert!(n > 0, "closed after {got} bytes");
        assert!(
            buf[..n]
                .iter()
                .enumerate()
                .all(|(i, &b)| b == pattern(got + i)),
            "corrupt at {got}"
        );
        let before_mib = got >> 23;
        got += n;
        if got >> 23 != before_mib {
            // Every 8 MiB: a look at the proxy's memory, and a pause.
            peak_rss = peak_rss.max(server.rss_kib());
            thread::sleep(Duration::from_millis(20));
        }
    }
    let after = status_hwm_kib(server.pid());
    eprintln!(
        "proxy VmHWM {before} KiB before, {after} KiB after 100 MiB; VmRSS peak seen {peak_rss} KiB"
    );
    assert!(
        after < before + 32 * 1024,
        "the proxy's peak memory grew by {} KiB while streaming 100 MiB",
        after - before
    );
    // Not cached (over --max-object), so the next request goes to the origin.
    drop(stream);
}

#[test]
fn an_origin_that_is_down_is_502_and_one_that_stalls_is_504() {
    if !support::tool("curl") {
        return;
    }
    let origin = TestOrigin::start();
    let server = proxy(&["--origin-timeout", "1s"]);
    let down = support::unused_addr();
    let reply = curl(server.addr(), &format!("http://{down}/x"), &[]);
    assert_eq!(reply.status, 502, "{}", reply.text());
    let reply = curl(server.addr(), "http://no-such-host.invalid/x", &[]);
    assert_eq!(reply.status, 502, "{}", reply.text());
    let started = Instant::now();
    let reply = curl(server.addr(), &origin.url("/stall/x"), &[]);
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert!(started.elapsed() < Duration::from_secs(15));
    // The proxy is still serving.
    assert_eq!(
        curl(server.addr(), &origin.url("/plain/ok"), &[]).status,
        200
    );
}

#[test]
fn connect_is_refused_unless_its_port_is_allowed() {
    if !support::tool("curl") {
        return;
    }
    let origin = TestOrigin::start();
    let server = proxy(&[]);
    let mut stream = connect(server.addr());
    let connect_line = format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", origin.addr);
    stream.write_all(connect_line.as_bytes()).unwrap();
    let reply = read_reply(&mut stream);
    assert_eq!(reply.status, 405);
    assert!(reply.header("allow").is_some_and(|a| a.contains("GET")));

    let port = origin.addr.port().to_string();
    let server = proxy(&["--allow-connect", &port]);
    let tunneled = curl(server.addr(), &origin.url("/cache/t"), &["-p"]);
    assert_eq!(tunneled.status, 200);
    assert_eq!(tunneled.text(), "/cache/t #1");
    assert_eq!(
        tunneled.header("x-cache"),
        None,
        "a tunnel is not looked into"
    );
    let mut stream = connect(server.addr());
    stream
        .write_all(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
        .unwrap();
    assert_eq!(read_reply(&mut stream).status, 403);
}

#[test]
fn bad_requests_get_400_and_a_close() {
    let server = proxy(&["--header-timeout", "1s"]);
    for request in [
        "GET /not-absolute HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://a/ HTTP/1.1\r\n\r\n",
        "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "GET http://a/ HTTP/1.1\r\nHost : a\r\n\r\n",
    ] {
        let mut stream = connect(server.addr());
        stream.write_all(request.as_bytes()).unwrap();
        let reply = read_reply(&mut stream);
        assert_eq!(reply.status, 400, "{request:?}");
        assert_eq!(reply.header("connection"), Some("close"));
        let mut rest = Vec::new();
        assert_eq!(
            stream.read_to_end(&mut rest).unwrap(),
            0,
            "closed after the answer"
        );
    }
    // A head trickled and never finished: 408 once the header timeout has
    // passed since its first byte, then a close.
    let mut stream = connect(server.addr());
    stream
        .write_all(b"GET http://a/ HTTP/1.1\r\nHost: a\r\n")
        .unwrap();
    let reply = read_reply(&mut stream);
    assert_eq!(reply.status, 408);
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn bad_arguments_exit_2_with_a_reason() {
    let limit = Duration::from_secs(10);
    for args in [
        &["--allow-connect", "443,0"][..],
        &["--cache-size", "lots"],
        &["--origin-timeout", "soon"],
        &["--no-such-flag"],
    ] {
        let (status, _, err) = support::run_example("http_proxy", args, limit);
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.lines().next().is_some_and(|l| l.contains("http_proxy")),
            "{err}"
        );
    }
    let (status, out, _) = support::run_example("http_proxy", &["--help"], limit);
    assert_eq!(status.code(), Some(0));
    assert!(out.contains("--allow-connect PORTS"));
}
