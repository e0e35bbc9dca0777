//! Headless Chromium, driven over the DevTools protocol: JSON commands on
//! a WebSocket (our own client, `ws.rs`), one connection per page.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use super::ws::WsClient;

pub struct Browser {
    child: Child,
    devtools: SocketAddr,
    profile: PathBuf,
}

impl Browser {
    /// Starts Chromium headless with its DevTools endpoint on a free port.
    /// `extra` adds flags (`--ignore-certificate-errors` for a test
    /// certificate).
    pub fn start(extra: &[&str]) -> Browser {
        let profile = std::env::temp_dir().join(format!(
            "reactor-cdp-{}-{}",
            std::process::id(),
            super::Rng::new(std::process::id() as u64).next_u64() % 100_000
        ));
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1100,640",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                &format!("--user-data-dir={}", profile.display()),
            ])
            .args(extra)
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chromium");
        // `DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID`
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut seen = String::new();
        let devtools = loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    if let Some(url) = line.split("DevTools listening on ws://").nth(1) {
                        let hostport = url.split('/').next().unwrap();
                        break hostport.parse().expect("a DevTools address");
                    }
                    seen.push_str(&line);
                    seen.push('\n');
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("chromium did not announce DevTools; stderr:\n{seen}");
                }
            }
        };
        // Keep draining stderr so that Chromium never blocks on it.
        thread::spawn(move || while rx.recv().is_ok() {});
        Browser {
            child,
            devtools,
            profile,
        }
    }

    /// Opens a new tab, connects to it, and navigates it to `url` (the
    /// call returns once the new document is committed, so what is
    /// evaluated next runs in it, not in `about:blank`).
    pub fn open(&self, url: &str) -> Page {
        let target = self.http("PUT", "/json/new?about:blank");
        let ws_url = target["webSocketDebuggerUrl"]
            .as_str()
            .unwrap_or_else(|| panic!("no webSocketDebuggerUrl in {target}"));
        let path = ws_url
            .splitn(4, '/')
            .nth(3)
            .map(|p| format!("/{p}"))
            .unwrap();
        let stream = TcpStream::connect(self.devtools).unwrap();
        let ws = WsClient::handshake(stream, &self.devtools.to_string(), &path, None, 64 << 20)
            .unwrap_or_else(|r| panic!("DevTools refused: {}", r.head));
        let mut page = Page { ws, next_id: 0 };
        page.call("Page.enable", json!({}));
        let navigated = page.call("Page.navigate", json!({"url": url}));
        if let Some(error) = navigated.get("errorText") {
            panic!("{url}: {error}");
        }
        page
    }

    /// One request to the DevTools HTTP endpoint; the JSON it answers.
    fn http(&self, method: &str, path: &str) -> Value {
        let mut stream = TcpStream::connect(self.devtools).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.devtools
        )
        .unwrap();
        // Chromium keeps the connection open: read the head, then
        // Content-Length bytes.
        let mut response = Vec::new();
        let mut chunk = [0u8; 4096];
        let body_start = loop {
            let n = stream.read(&mut chunk).expect("a DevTools response");
            assert!(n > 0, "DevTools closed without answering");
            response.extend_from_slice(&chunk[..n]);
            if let Some(i) = response.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&response[..body_start]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("a Content-Length");
        while response.len() < body_start + length {
            let n = stream.read(&mut chunk).expect("the DevTools response body");
            assert!(n > 0, "DevTools closed mid-body");
            response.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&response);
        let body = &text[body_start..];
        serde_json::from_str(body).unwrap_or_else(|e| panic!("DevTools said ({e}): {text}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

pub struct Page {
    ws: WsClient,
    next_id: u64,
}

impl Page {
    /// Sends a DevTools command; returns its `result` (events on the way
    /// are skipped).
    #[track_caller]
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.ws
            .send_json(&json!({"id": id, "method": method, "params": params}));
        loop {
            let message = self.ws.next_json();
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("{method}: {error}");
                }
                return message["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page (awaiting it if it is a promise);
    /// its value.
    #[track_caller]
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Waits, inside the page, until `condition` (a JS expression) is true,
    /// for at most `limit`. The page checks on each DOM change and every
    /// 50 ms: the wait ends as soon as the condition holds.
    #[track_caller]
    pub fn wait_until(&mut self, condition: &str, limit: Duration) -> bool {
        let script = format!(
            "new Promise((resolve) => {{
                const check = () => {{ try {{ return !!({condition}); }} catch (e) {{ return false; }} }};
                if (check()) return resolve(true);
                const observer = new MutationObserver(() => {{ if (check()) done(true); }});
                const timer = setInterval(() => {{ if (check()) done(true); }}, 50);
                const limit = setTimeout(() => done(check()), {ms});
                function done(value) {{ observer.disconnect(); clearInterval(timer); clearTimeout(limit); resolve(value); }}
                observer.observe(document, {{subtree: true, childList: true, characterData: true, attributes: true}});
            }})",
            ms = limit.as_millis()
        );
        self.eval(&script) == Value::Bool(true)
    }

    /// Waits until element `id`'s text holds `needle`, for at most `limit`.
    #[track_caller]
    pub fn wait_for_text(&mut self, id: &str, needle: &str, limit: Duration) -> bool {
        let condition = format!(
            "document.getElementById({}).textContent.includes({})",
            Value::from(id),
            Value::from(needle)
        );
        self.wait_until(&condition, limit)
    }

    /// Types `text` into the input `id` and submits its form, as a user
    /// pressing Enter would.
    pub fn type_and_submit(&mut self, id: &str, text: &str) {
        let script = format!(
            "(() => {{ const input = document.getElementById({id}); input.value = {text};
                input.form.requestSubmit(); return true; }})()",
            id = Value::from(id),
            text = Value::from(text)
        );
        assert_eq!(self.eval(&script), Value::Bool(true));
    }

    /// The text of element `id`.
    pub fn text_of(&mut self, id: &str) -> String {
        let script = format!("document.getElementById({}).textContent", Value::from(id));
        self.eval(&script).as_str().unwrap_or_default().to_string()
    }

    /// A PNG of the page as it is.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let result = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let data = result["data"].as_str().expect("screenshot data");
        base64_decode(data)
    }
}

/// Standard base64 (the screenshot's encoding); panics on bad input.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= (value(c) as u32) << (18 - 6 * i);
        }
        let produced = chunk.len() * 6 / 8;
        out.extend_from_slice(&n.to_be_bytes()[1..1 + produced]);
    }
    out
}
