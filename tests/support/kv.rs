//! For the key-value tests: a blocking RESP client built on the crate's own
//! codec, and the two servers the shared cases run against, `kv_server`
//! and a real `redis-server`, each started on a free port and stopped when
//! dropped.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reactor::codec::resp::{Limits, Value, ValueDecoder, encode};

use super::Server;

/// A blocking RESP client.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = super::connect(addr);
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends one command and reads its reply.
    #[track_caller]
    pub fn call(&mut self, args: &[&str]) -> Value {
        self.send(args);
        self.read()
    }

    pub fn send(&mut self, args: &[&str]) {
        let mut out = Vec::new();
        encode::command(&mut out, args);
        self.stream.write_all(&out).unwrap();
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next reply (bounded by the socket's read timeout).
    #[track_caller]
    pub fn read(&mut self) -> Value {
        self.try_read().expect("a reply")
    }

    /// The next reply, or `None` at end of stream.
    pub fn try_read(&mut self) -> Option<Value> {
        let decoder = ValueDecoder::new(Limits::default());
        loop {
            if let Some((value, used)) = decoder.decode(&self.buf).expect("valid RESP") {
                self.buf.drain(..used);
                return Some(value);
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// An `INFO` field.
    pub fn info_field(&mut self, section: &str, field: &str) -> String {
        let Value::Bulk(text) = self.call(&["INFO", section]) else {
            panic!("INFO is a bulk string")
        };
        String::from_utf8_lossy(&text)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")).map(str::to_string))
            .unwrap_or_default()
    }
}

pub fn bulk(s: &str) -> Value {
    Value::Bulk(s.as_bytes().to_vec())
}

pub fn ok() -> Value {
    Value::Simple("OK".into())
}

/// Waits (polling, at most `limit`) until `check` holds; false if never.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Either server, started on a free port.
pub enum Target {
    Kv(Server),
    Redis(RedisChild, SocketAddr),
}

/// A `redis-server` process, killed when dropped.
pub struct RedisChild(Child);

impl Drop for RedisChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Target {
    /// `kv_server --addr 127.0.0.1:0` with `args`.
    pub fn kv(args: &[&str]) -> Target {
        let mut all = vec!["--addr", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Target::Kv(Server::start("kv_server", &all, 1))
    }

    /// `redis-server` on a free port, persistence off; `None` (skipped) if
    /// it is not installed.
    pub fn redis(args: &[&str]) -> Option<Target> {
        if !super::tool("redis-server") {
            return None;
        }
        let addr = super::unused_addr();
        let port = addr.port().to_string();
        let mut command = Command::new("redis-server");
        command
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().expect("spawn redis-server");
        let up = eventually(Duration::from_secs(10), || TcpStream::connect(addr).is_ok());
        assert!(up, "redis-server did not start on {addr}");
        Some(Target::Redis(RedisChild(child), addr))
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Target::Kv(s) => s.addr(),
            Target::Redis(_, a) => *a,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Target::Kv(_) => "kv_server",
            Target::Redis(..) => "redis-server",
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr())
    }
}

/// Both targets (redis-server only if installed).
pub fn both(args: &[&str]) -> Vec<Target> {
    let mut targets = vec![Target::kv(args)];
    targets.extend(Target::redis(args));
    targets
}
