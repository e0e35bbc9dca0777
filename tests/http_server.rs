//! `http_server` driven as a user would: raw requests over loopback, read
//! back with the crate's own response framing, plus `curl` and a headless
//! Chromium. Every framing attack of RFC 9112's smuggling list is sent and
//! must be answered 400 (or 501) and a close, with no route reached.

mod support;

use std::fs;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::http_client::HttpClient;
use support::{Rng, Server, tool};

/// A fresh site: `index.html`, `a.txt`, `data.bin` (1 MiB of random
/// bytes), `sub/page.html`, a dot-file, and a symlink that points out of
/// the root at `secret.txt` beside it.
fn site(tag: &str) -> PathBuf {
    let base = std::env::temp_dir().join(format!("reactor-http-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let root = base.join("root");
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("index.html"), "<h1>home</h1>\n").unwrap();
    fs::write(root.join("a.txt"), "alpha\n").unwrap();
    fs::write(root.join("b.txt"), "bravo, a longer one\n").unwrap();
    fs::write(root.join("data.bin"), Rng::new(7).bytes(1 << 20)).unwrap();
    fs::write(root.join("sub/page.html"), "<p>sub</p>\n").unwrap();
    fs::write(root.join(".env"), "PASSWORD=x\n").unwrap();
    fs::write(base.join("secret.txt"), "outside the root\n").unwrap();
    symlink(base.join("secret.txt"), root.join("link-out")).unwrap();
    root
}

fn start(root: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--addr", "127.0.0.1:0", "--root", root.to_str().unwrap()];
    args.extend_from_slice(extra);
    Server::start("http_server", &args, 1)
}

#[test]
fn files_head_and_content_types() {
    let root = site("files");
    let server = start(&root, &[]);
    let mut client = HttpClient::connect(server.addr());
    let home = client.get("/");
    assert_eq!(home.status, 200);
    assert_eq!(home.body, b"<h1>home</h1>\n");
    assert_eq!(
        home.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(home.header("content-length"), Some("14"));
    assert!(home.keep_alive);
    let text = client.get("/a.txt");
    assert_eq!((text.status, text.body.as_slice()), (200, &b"alpha\n"[..]));
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    // HEAD: the same head, no body (the next response on the connection
    // would be misread if a body had been sent).
    client.send(b"HEAD /data.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = client.read_reply(true);
    assert_eq!(head.header("content-length"), Some("1048576"));
    assert_eq!(
        head.header("content-type"),
        Some("application/octet-stream")
    );
    let data = client.get("/data.bin");
    assert_eq!(data.body, fs::read(root.join("data.bin")).unwrap());
    // A directory without its slash is redirected; with it, its index.
    let redirect = client.get("/sub");
    assert_eq!(
        (redirect.status, redirect.header("location")),
        (301, Some("/sub/"))
    );
    assert_eq!(client.get("/sub/").status, 404);
    assert_eq!(client.get("/sub/page.html").body, b"<p>sub</p>\n");
    assert_eq!(client.get("/missing").status, 404);
    // HTTP/1.0 without keep-alive: answered, then closed.
    client.send(b"GET /a.txt HTTP/1.0\r\n\r\n");
    let old = client.read_reply(false);
    assert_eq!((old.status, old.keep_alive), (200, false));
    assert!(client.closed());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let root = site("pipeline");
    let server = start(&root, &[]);
    let mut client = HttpClient::connect(server.addr());
    let mut burst = Vec::new();
    for i in 0..40 {
        let path = if i % 2 == 0 { "/a.txt" } else { "/b.txt" };
        burst.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    // A large file in the middle streams while the rest wait their turn.
    burst.extend_from_slice(
        b"GET /data.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    client.send(&burst);
    for i in 0..40 {
        let want: &[u8] = if i % 2 == 0 {
            b"alpha\n"
        } else {
            b"bravo, a longer one\n"
        };
        assert_eq!(client.read_reply(false).body, want, "response {i}");
    }
    assert_eq!(client.read_reply(false).body.len(), 1 << 20);
    assert_eq!(client.read_reply(false).body, b"alpha\n");
}

/// 3,000 pipelined requests for a 60 KiB file sent in one go (180 MB of
/// answers) by a client that reads only afterwards: the server stops
/// reading requests while answers are queued instead of queueing all of
/// them (which would pass the 64 MiB output limit and cut the client).
#[test]
fn a_pipelining_client_that_does_not_read_is_paced() {
    let root = site("pace");
    let page = Rng::new(3).bytes(60 * 1024);
    fs::write(root.join("page.bin"), &page).unwrap();
    let server = start(&root, &[]);
    let mut client = HttpClient::connect(server.addr());
    let burst = "GET /page.bin HTTP/1.1\r\nHost: t\r\n\r\n".repeat(3000);
    let mut writer = client.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        use std::io::Write;
        writer.write_all(burst.as_bytes()).unwrap();
    });
    let before = server.rss_kib();
    let mut peak = before;
    for i in 0..3000 {
        let reply = client.read_reply(false);
        assert!(reply.status == 200 && reply.body == page, "response {i}");
        if i % 100 == 0 {
            peak = peak.max(server.rss_kib());
        }
    }
    sender.join().unwrap();
    assert!(
        peak < before + 32 * 1024,
        "server grew from {before} KiB to {peak} KiB"
    );
}

#[test]
fn paths_never_escape_the_root() {
    let root = site("traversal");
    let server = start(&root, &[]);
    let cases: &[(&str, u16)] = &[
        ("/../secret.txt", 403),
        ("/sub/../../secret.txt", 403),
        ("/%2e%2e/secret.txt", 403),
        ("/%2E%2E%2Fsecret.txt", 403),
        ("/..%2fsecret.txt", 403),
        ("/..%5csecret.txt", 403),
        ("/..\\secret.txt", 403),
        ("/%252e%252e/secret.txt", 404),
        ("//etc/passwd", 404),
        ("/link-out", 403),
        ("/.env", 404),
        ("/a.txt%00.html", 400),
        ("/%zz", 400),
    ];
    for &(path, status) in cases {
        let mut client = HttpClient::connect(server.addr());
        let reply = client.get(path);
        assert_eq!(reply.status, status, "{path}: {}", reply.text());
        assert!(!reply.text().contains("outside the root"), "{path}");
    }
    // An absolute-form target is a path like any other.
    let mut client = HttpClient::connect(server.addr());
    client.send(b"GET http://t/../secret.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.read_reply(false).status, 403);
}

#[test]
fn conditional_and_range_requests() {
    let root = site("range");
    let server = start(&root, &[]);
    let mut client = HttpClient::connect(server.addr());
    let first = client.get("/data.bin");
    let modified = first
        .header("last-modified")
        .expect("Last-Modified")
        .to_string();
    let request = |extra: &str| format!("GET /data.bin HTTP/1.1\r\nHost: t\r\n{extra}\r\n");
    client.send(request(&format!("If-Modified-Since: {modified}\r\n")).as_bytes());
    let not_modified = client.read_reply(false);
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());
    client.send(request("If-Modified-Since: Thu, 01 Jan 1998 00:00:00 GMT\r\n").as_bytes());
    assert_eq!(client.read_reply(false).status, 200);
    client.send(request("Range: bytes=1000-1999\r\n").as_bytes());
    let part = client.read_reply(false);
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        Some("bytes 1000-1999/1048576")
    );
    assert_eq!(part.body, first.body[1000..2000]);
    client.send(request("Range: bytes=-10\r\n").as_bytes());
    assert_eq!(client.read_reply(false).body, first.body[(1 << 20) - 10..]);
    client.send(request("Range: bytes=2000000-\r\n").as_bytes());
    let outside = client.read_reply(false);
    assert_eq!(
        (outside.status, outside.header("content-range")),
        (416, Some("bytes */1048576"))
    );
    // Several ranges are answered with the whole file.
    client.send(request("Range: bytes=0-1,5-6\r\n").as_bytes());
    assert_eq!(client.read_reply(false).status, 200);
    // If-Range with another date: the whole file.
    client.send(
        request("Range: bytes=0-1\r\nIf-Range: Thu, 01 Jan 1998 00:00:00 GMT\r\n").as_bytes(),
    );
    assert_eq!(client.read_reply(false).status, 200);
}

#[test]
fn echo_answers_json_and_honours_expect_continue() {
    let root = site("echo");
    let server = start(&root, &["--max-body", "64KiB"]);
    let mut client = HttpClient::connect(server.addr());
    client
        .send(b"POST /echo?x=1&x=2&name=a+b HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    let reply = client.read_reply(false);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["body"], "hello");
    assert_eq!(json["query"]["x"], serde_json::json!(["1", "2"]));
    assert_eq!(json["query"]["name"], "a b");
    // Expect: 100-continue: the interim response comes before the body is sent.
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n");
    let interim = client.read_reply(false);
    assert_eq!(interim.status, 100);
    client.send(b"4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n");
    let json: serde_json::Value = serde_json::from_slice(&client.read_reply(false).body).unwrap();
    assert_eq!(json["body"], "abcdefg");
    // Over --max-body: 413 before any body is sent, and a close.
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 70000\r\n\r\n",
    );
    assert_eq!(client.read_reply(false).status, 413);
    assert!(client.closed());
    // A chunked body that grows past the limit: 413 too.
    let mut client = HttpClient::connect(server.addr());
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    client.send(format!("{:x}\r\n{}\r\n", 70_000, "z".repeat(70_000)).as_bytes());
    assert_eq!(client.read_reply(false).status, 413);
}

#[test]
fn statuses_for_methods_and_limits() {
    let root = site("statuses");
    let server = start(&root, &["--max-header", "4KiB", "--max-uri", "1KiB"]);
    let one = |request: &[u8]| {
        let mut client = HttpClient::connect(server.addr());
        client.send(request);
        client.read_reply(false)
    };
    let post = one(b"POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        (post.status, post.header("allow")),
        (405, Some("GET, HEAD"))
    );
    let get_echo = one(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (get_echo.status, get_echo.header("allow")),
        (405, Some("POST"))
    );
    assert_eq!(one(b"BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n").status, 501);
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "x".repeat(2000));
    assert_eq!(one(long.as_bytes()).status, 414);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nCookie: {}\r\n\r\n",
        "c".repeat(5000)
    );
    assert_eq!(one(big.as_bytes()).status, 431);
    let mut many = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..80 {
        many += &format!("X-{i}: 1\r\n");
    }
    assert_eq!(one(format!("{many}\r\n").as_bytes()).status, 431);
    assert_eq!(one(b"GET / HTTP/3.0\r\nHost: t\r\n\r\n").status, 505);
    assert_eq!(
        one(b"GET / HTTP/1.1\r\nHost: t\r\nExpect: tea\r\n\r\n").status,
        417
    );
    assert_eq!(
        one(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc").status,
        400
    );
}

/// Each attack must get 400 (or 501) and a close, and the bytes after it
/// (a request smuggled in its body) must never be answered.
#[test]
fn framing_attacks_are_refused_and_closed() {
    let root = site("smuggling");
    let server = start(&root, &[]);
    let smuggled = "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    let attacks: Vec<(String, u16)> = vec![
        (
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            400,
        ),
        (
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            400,
        ),
        (
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd{smuggled}"
            ),
            400,
        ),
        (
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd{smuggled}"
            ),
            400,
        ),
        (
            format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: +4\r\n\r\nabcd{smuggled}"),
            400,
        ),
        (
            format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4,4\r\n\r\nabcd{smuggled}"),
            400,
        ),
        (
            format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0x4\r\n\r\nabcd{smuggled}"),
            400,
        ),
        (
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999\r\n\r\n{smuggled}"
            ),
            400,
        ),
        (
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            400,
        ),
        (
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            400,
        ),
        (
            format!("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n{smuggled}"),
            501,
        ),
        (
            format!("POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
            400,
        ),
        (
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            400,
        ),
        (
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            400,
        ),
        (format!("GET /a.txt HTTP/1.1\r\n\r\n{smuggled}"), 400),
        (
            format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n{smuggled}"),
            400,
        ),
        (
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0x4\r\nabcd\r\n0\r\n\r\n{smuggled}"
            ),
            400,
        ),
        (
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4 \r\nabcd\r\n0\r\n\r\n{smuggled}"
            ),
            400,
        ),
        (
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nabcd\r\n0\r\n\r\n{smuggled}"
            ),
            400,
        ),
        (
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\nabcd\r\n0\r\n\r\n{smuggled}"
            ),
            400,
        ),
        (
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcdef\r\n0\r\n\r\n{smuggled}"
            ),
            400,
        ),
        // Trailers are field lines: a bare LF there would end the body for
        // a lenient peer and start the smuggled request.
        (
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\n{smuggled}"
            ),
            400,
        ),
        (
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n folded\r\n\r\n{smuggled}"
            ),
            400,
        ),
        (
            format!("GET /a.txt HTTP/1.1\r\nHost: a,b\r\n\r\n{smuggled}"),
            400,
        ),
    ];
    for (attack, status) in &attacks {
        let mut client = HttpClient::connect(server.addr());
        client.send(attack.as_bytes());
        let reply = client.read_reply(false);
        assert_eq!(reply.status, *status, "{attack:?}: {}", reply.text());
        assert!(!reply.keep_alive, "{attack:?}");
        // No route ran: the echo's JSON never came, nor the smuggled file.
        assert!(!reply.text().contains("\"body\""), "{attack:?}");
        assert!(client.closed(), "{attack:?}: more after the refusal");
    }
    // Nothing but refusals was counted: no 200 at all.
    let mut client = HttpClient::connect(server.addr());
    let metrics = client.get("/metrics").text();
    assert!(!metrics.contains("status=\"200\""), "{metrics}");
}

#[test]
fn slow_heads_get_408_and_idle_connections_close() {
    let root = site("slow");
    let server = start(
        &root,
        &["--header-timeout", "1s", "--keepalive-timeout", "1s"],
    );
    // A head that never finishes, trickled a byte at a time: the clock
    // runs from its first byte, so the trickle does not keep it open.
    let mut client = HttpClient::connect(server.addr());
    let started = Instant::now();
    let mut sent = 0;
    let head = b"GET /a.txt HTTP/1.1\r\nHost: t\r\nX-Slow: ";
    client.stream.set_nonblocking(false).unwrap();
    let reply = loop {
        use std::io::Write;
        if sent < head.len() {
            let _ = client.stream.write_all(&head[sent..sent + 1]);
            sent += 1;
        }
        // Wait for the server's answer up to 150 ms at a time (a bounded
        // pace for the trickle, not a synchronisation).
        client
            .stream
            .set_read_timeout(Some(Duration::from_millis(150)))
            .unwrap();
        let mut probe = [0; 1];
        match client.stream.peek(&mut probe) {
            Ok(_) => break client.read_reply(false),
            Err(_) if started.elapsed() < Duration::from_secs(15) => continue,
            Err(e) => panic!("no 408 within 15 s: {e}"),
        }
    };
    client
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(reply.status, 408);
    assert!(client.closed());
    // After an answer, a keep-alive connection left idle is closed.
    let mut idle = HttpClient::connect(server.addr());
    assert_eq!(idle.get("/a.txt").status, 200);
    assert!(idle.closed(), "idle keep-alive connection not closed");
}

#[test]
fn metrics_parse_as_prometheus_text() {
    let root = site("metrics");
    let server = start(&root, &[]);
    let mut client = HttpClient::connect(server.addr());
    for _ in 0..3 {
        assert_eq!(client.get("/a.txt").status, 200);
    }
    assert_eq!(client.get("/nope").status, 404);
    let page = client.get("/metrics");
    assert_eq!(
        page.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let mut samples = std::collections::HashMap::new();
    for line in page.text().lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.insert(name.to_string(), value);
    }
    assert_eq!(samples["http_requests_total{status=\"200\"}"], 3.0);
    assert_eq!(samples["http_requests_total{status=\"404\"}"], 1.0);
    assert_eq!(samples["http_connections_open"], 1.0);
    assert!(samples["http_connections_total"] >= 1.0);
    assert!(samples["http_received_bytes_total"] > 0.0);
    assert!(samples["http_sent_bytes_total"] > 0.0);
    assert!(samples["reactor_loop_turns_total"] > 0.0);
    assert!(samples["reactor_events_total"] > 0.0);
    // Moved, and turned off.
    let moved = start(&root, &["--metrics-path", "/_stats"]);
    assert_eq!(HttpClient::connect(moved.addr()).get("/_stats").status, 200);
    let off = start(&root, &["--no-metrics"]);
    assert_eq!(HttpClient::connect(off.addr()).get("/metrics").status, 404);
}

#[test]
fn a_large_file_streams_with_little_memory() {
    let root = site("stream");
    let big = Rng::new(11).bytes(48 << 20);
    fs::write(root.join("big.bin"), &big).unwrap();
    let server = start(&root, &[]);
    let before = server.rss_kib();
    let mut client = HttpClient::connect(server.addr());
    client.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    // Take the response in 256 KiB reads, sampling the server's memory:
    // a server that loaded the file whole would be 48 MiB larger at once.
    let mut received = Vec::with_capacity(big.len() + 512);
    let mut chunk = vec![0; 256 * 1024];
    let mut peak = before;
    while received.len() < big.len() {
        let n = client.stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed early");
        received.extend_from_slice(&chunk[..n]);
        if received.len() % 8 == 0 {
            peak = peak.max(server.rss_kib());
        }
    }
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    while received.len() < head_end + big.len() {
        let n = client.stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed early");
        received.extend_from_slice(&chunk[..n]);
    }
    assert!(
        received[head_end..] == big[..],
        "the body differs from the file"
    );
    assert!(
        peak < before + 16 * 1024,
        "server grew from {before} KiB to {peak} KiB"
    );
}

#[test]
fn more_connections_than_allowed_get_503() {
    let root = site("full");
    let server = start(&root, &["--max-conns", "2"]);
    let mut a = HttpClient::connect(server.addr());
    let mut b = HttpClient::connect(server.addr());
    assert_eq!(a.get("/a.txt").status, 200);
    assert_eq!(b.get("/a.txt").status, 200);
    let mut c = HttpClient::connect(server.addr());
    let refused = c.read_reply(false);
    assert_eq!(refused.status, 503);
    assert!(c.closed());
}

#[test]
fn curl_downloads_posts_and_heads() {
    if !tool("curl") {
        return;
    }
    let root = site("curl");
    let server = start(&root, &[]);
    let base = format!("http://{}", server.addr());
    let out = root.parent().unwrap().join("download.bin");
    let status = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "-o",
            out.to_str().unwrap(),
            &format!("{base}/data.bin"),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        fs::read(&out).unwrap(),
        fs::read(root.join("data.bin")).unwrap()
    );
    // A 2 MiB POST: curl sends Expect: 100-continue and waits for it.
    let body = root.parent().unwrap().join("post.txt");
    fs::write(&body, "p".repeat(2 << 20)).unwrap();
    let output = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "-v",
            "--data-binary",
            &format!("@{}", body.display()),
            &format!("{base}/echo?who=curl"),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let trace = String::from_utf8_lossy(&output.stderr);
    assert!(trace.contains("Expect: 100-continue"), "{trace}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["body"].as_str().unwrap().len(), 2 << 20);
    assert_eq!(json["query"]["who"], "curl");
    let head = Command::new("curl")
        .args(["-sS", "-I", &format!("{base}/")])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("Content-Length: 14"), "{head}");
    let range = Command::new("curl")
        .args(["-sS", "-r", "0-5", &format!("{base}/a.txt")])
        .output()
        .unwrap();
    assert_eq!(range.stdout, b"alpha\n");
}

/// The bundled page in a real browser: its DOM, and a screenshot.
#[test]
fn chromium_shows_the_bundled_page() {
    if !tool("chromium") {
        return;
    }
    let server = Server::start("http_server", &["--addr", "127.0.0.1:0"], 1);
    let url = format!("http://{}/", server.addr());
    let profile = std::env::temp_dir().join(format!("reactor-chromium-{}", std::process::id()));
    let shot = profile.with_extension("png");
    let _ = fs::remove_file(&shot);
    let chromium = |extra: &[&str]| {
        let mut command = Command::new("chromium");
        command.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.display()),
        ]);
        command.args(extra).arg(&url);
        let (status, out, err) = support::run_command(command, Duration::from_secs(60));
        assert!(status.success(), "chromium failed: {err}");
        out
    };
    let dom = chromium(&["--dump-dom"]);
    assert!(dom.contains("It works."), "{dom}");
    chromium(&[
        "--window-size=1000,700",
        &format!("--screenshot={}", shot.display()),
    ]);
    let png = fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5000,
        "not a PNG"
    );
    // The page asked for its stylesheet too.
    let metrics = HttpClient::connect(server.addr()).get("/metrics").text();
    let served = metrics
        .lines()
        .find_map(|l| l.strip_prefix("http_requests_total{status=\"200\"} "))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    // (The second load may revalidate from the browser's cache: 304s.)
    assert!(served >= 2, "page and stylesheet: {metrics}");
    let _ = fs::remove_dir_all(&profile);
    if let Ok(dir) = std::env::var("SCREENSHOT_DIR") {
        fs::copy(&shot, Path::new(&dir).join("http_server.png")).unwrap();
    }
}

/// `wrk` with 100 connections, plain and pipelined 16 deep (TechEmpower's
/// plaintext shape): every response read, no socket error, no error status.
/// (How fast is for `benches/run.sh`; here only "without errors".)
#[test]
fn wrk_plain_and_pipelined_without_errors() {
    if !tool("wrk") {
        return;
    }
    let _heavy = support::heavy();
    let root = site("wrk");
    let server = start(&root, &[]);
    let url = format!("http://{}/a.txt", server.addr());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/http/pipeline.lua");
    for extra in [&[][..], &["-s", script, "--", "16"][..]] {
        let mut command = Command::new("wrk");
        command.args(["-t1", "-c100", "-d2s", &url]).args(extra);
        let (status, out, err) = support::run_command(command, Duration::from_secs(30));
        assert!(status.success(), "wrk failed: {err}");
        assert!(!out.contains("Socket errors"), "{out}");
        assert!(!out.contains("Non-2xx"), "{out}");
        let requests: u64 = out
            .lines()
            .find_map(|l| {
                l.trim()
                    .split_once(" requests in ")
                    .map(|(n, _)| n.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        assert!(requests > 1000, "{out}");
    }
}

/// Regressions from an outside review: each of these once crashed the
/// server, broke the framing of the next response, or answered wrongly.
#[test]
fn review_regressions_heads_dates_paths_and_ranges() {
    let root = site("review");
    // A 1 TiB sparse file: a HEAD (or a large range) must not read it.
    fs::File::create(root.join("huge.bin"))
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    symlink(root.join(".env"), root.join("dotlink")).unwrap();
    symlink(root.join("loop"), root.join("loop")).unwrap();
    fs::create_dir_all(root.join("a dir")).unwrap();
    fs::write(root.join("a dir/index.html"), "spaced\n").unwrap();
    let server = start(&root, &[]);
    let mut client = HttpClient::connect(server.addr());
    // A multi-byte character where a date's digits go: ignored, not a panic.
    client.send(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: Sun, 06\xc3\xa9ov 1994 08:49:37 GMT\r\n\r\n");
    assert_eq!(client.read_reply(false).status, 200);
    client.send(b"HEAD /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = client.read_reply(true);
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("1099511627776"))
    );
    client.send(b"HEAD /huge.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-\r\n\r\n");
    assert_eq!(client.read_reply(true).status, 206);
    // A refused HEAD has no body either: the next response must parse.
    client.send(b"HEAD /echo HTTP/1.1\r\nHost: t\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.read_reply(true).status, 405);
    assert_eq!(client.read_reply(false).body, b"alpha\n");
    // Ranges: a last position past any u64 is clamped; the unit has no case.
    client.send(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=1-99999999999999999999\r\n\r\n");
    let clamped = client.read_reply(false);
    assert_eq!(
        (clamped.status, clamped.body.as_slice()),
        (206, &b"lpha\n"[..])
    );
    client.send(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nRange: Bytes=0-0\r\n\r\n");
    assert_eq!(client.read_reply(false).body, b"a");
    // Dot-files stay hidden behind a symlink; a loop and a name too long
    // are the client's errors, not the server's.
    assert_eq!(client.get("/dotlink").status, 404);
    assert_eq!(client.get("/loop").status, 404);
    assert_eq!(client.get(&format!("/{}", "n".repeat(300))).status, 414);
    // A directory's redirect keeps the path's encoding and the query, and
    // the small-file cache does not confuse `/sub/` with `/sub`.
    let spaced = client.get("/a%20dir?x=1");
    assert_eq!(
        (spaced.status, spaced.header("location")),
        (301, Some("/a%20dir/?x=1"))
    );
    assert_eq!(client.get("/a%20dir/").body, b"spaced\n");
    assert_eq!(client.get("/sub/page.html").status, 200);
    assert_eq!(client.get("/sub").status, 301);
    assert_eq!(client.get("/a.txt/").status, 404);
    // HTTP/1.0 with keep-alive is told so.
    client.send(b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let old = client.read_reply(false);
    assert_eq!(
        (old.keep_alive, old.header("connection")),
        (true, Some("keep-alive"))
    );
    assert_eq!(
        client.get("/a.txt").status,
        200,
        "the connection stayed open"
    );
}

/// A body whose JSON echo could not be queued is refused before it is
/// built; bodies held at once are bounded; a trickled body gets a 408.
#[test]
fn bodies_are_bounded_in_size_memory_and_rate() {
    let root = site("bodies");
    // 6 MiB of control bytes: up to 36 MiB of JSON, over half the output limit.
    let defaults = start(&root, &[]);
    let mut client = HttpClient::connect(defaults.addr());
    client.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            6 << 20
        )
        .as_bytes(),
    );
    client.send(&vec![1u8; 6 << 20]);
    let refused = client.read_reply(false);
    assert_eq!(refused.status, 413, "{}", refused.text());

    let server = start(
        &root,
        &[
            "--header-timeout",
            "1s",
            "--min-body-rate",
            "1KiB",
            "--max-bodies",
            "1MiB",
        ],
    );

    // Two bodies of 700 KiB under a 1 MiB budget: one is refused with a
    // 503, the other is answered.
    let mut a = HttpClient::connect(server.addr());
    let mut b = HttpClient::connect(server.addr());
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        700 << 10
    );
    for client in [&mut a, &mut b] {
        client.send(head.as_bytes());
        client.send(&vec![b'x'; 600 << 10]);
    }
    let mut statuses = Vec::new();
    for client in [&mut a, &mut b] {
        use std::io::Write;
        // The refused one may already be closed: a failed write is fine.
        let _ = client.stream.write_all(&vec![b'x'; 100 << 10]);
        statuses.push(client.read_reply(false).status);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 503]);

    // A body trickled a byte every 100 ms: 408 once the grace is over.
    let mut slow = HttpClient::connect(server.addr());
    slow.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nx");
    slow.stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    loop {
        use std::io::Write;
        let mut probe = [0; 1];
        if slow.stream.peek(&mut probe).is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no answer to a trickled body"
        );
        let _ = slow.stream.write_all(b"x");
    }
    slow.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(slow.read_reply(false).status, 408);
}

/// A client that pipelines 100 requests for a 100 KiB file and reads them
/// steadily but slowly is not idle, though nothing can be written to it
/// for longer than the keep-alive timeout: a loopback socket's buffer of
/// megabytes becomes writable again only once a third of it is free. The
/// kernel's unsent count falls, and that is activity. (Before, the
/// connection was closed as idle, with a reset that destroyed what the
/// kernel still held.)
#[test]
fn a_slow_steady_reader_is_not_idle() {
    let root = site("steady");
    let file = Rng::new(5).bytes(100 * 1024);
    fs::write(root.join("f.bin"), &file).unwrap();
    let server = start(&root, &["--keepalive-timeout", "1s"]);
    let mut client = HttpClient::connect(server.addr());
    client.send(
        "GET /f.bin HTTP/1.1\r\nHost: t\r\n\r\n"
            .repeat(100)
            .as_bytes(),
    );
    let mut chunk = vec![0; 64 * 1024];
    // 64 KiB every 250 ms (the pace of a slow reader, not a
    // synchronisation), for four timeouts.
    for i in 0..16 {
        std::thread::sleep(Duration::from_millis(250));
        let n = client
            .stream
            .read(&mut chunk)
            .expect("reset while reading steadily");
        assert!(n > 0, "closed while reading steadily, at read {i}");
    }
}
