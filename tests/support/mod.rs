//! Helpers shared by the integration tests: finding and spawning the example
//! binaries, reading a process's memory from `/proc`, a small deterministic
//! random generator, and a many-client echo checker driven by `mio::Poll`.
//!
//! Every wait here is bounded: reads have timeouts, process exits are waited
//! for through a channel with a deadline, and the echo checker has a
//! deadline of its own.
#![allow(dead_code)]

pub mod browser;
pub mod chat;
pub mod http_client;

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Heavy tests take this lock so that, on a 2-core machine, they run one at
/// a time within a test binary (cargo runs test binaries one after another).
pub fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The path of an example binary. `cargo test` builds the examples next to
/// the test executables' directory: `target/<profile>/deps/<test>` for the
/// test, `target/<profile>/examples/<name>` for the example (this holds with
/// `CARGO_TARGET_DIR` set, too).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} not found: run the tests with `cargo test`, which builds the examples",
        path.display()
    );
    path
}

/// A running example server. Killed when dropped.
pub struct Server {
    pub child: Child,
    /// Every `listening on ...` address it printed, in order.
    pub listening: Vec<String>,
    stderr: Option<ChildStderr>,
    /// What it prints to stdout after its `listening on` lines.
    stdout: mpsc::Receiver<String>,
}

impl Server {
    /// Spawns `name` with `args` and waits (up to 20 s) until it has printed
    /// `expect_listeners` lines `listening on ADDR`.
    pub fn start(name: &str, args: &[&str], expect_listeners: usize) -> Server {
        Server::start_with(name, args, expect_listeners, |_| {})
    }

    /// [`Server::start`], letting `configure` adjust the command first (a
    /// `pre_exec` hook that lowers a resource limit, say).
    pub fn start_with(
        name: &str,
        args: &[&str],
        expect_listeners: usize,
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        let mut command = Command::new(example(name));
        configure(&mut command);
        let mut child = command
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("TEST_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut listening = Vec::new();
        while listening.len() < expect_listeners {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    // `listening on ADDR`, maybe followed by a note such
                    // as `(TLS)`.
                    if let Some(rest) = line.strip_prefix("listening on ") {
                        let addr = rest.split_whitespace().next().unwrap_or(rest);
                        listening.push(addr.to_string());
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                    panic!("{name} did not print 'listening on' in time; stderr:\n{err}");
                }
            }
        }
        let stderr = child.stderr.take();
        Server {
            child,
            listening,
            stderr,
            stdout: rx,
        }
    }

    /// The next line the server prints on stdout, waiting up to `limit`.
    pub fn stdout_line(&self, limit: Duration) -> Option<String> {
        self.stdout.recv_timeout(limit).ok()
    }

    /// The first listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.listening[0].parse().expect("a socket address")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the server, in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// Sends a signal (SIGTERM = 15, SIGINT = 2) to the server.
    pub fn signal(&self, signal: i32) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// The server's stderr, line by line, read on a thread of its own. Takes
    /// the pipe: [`Server::wait`] then returns no stderr text.
    pub fn stderr_lines(&mut self) -> mpsc::Receiver<String> {
        let stderr = self.stderr.take().expect("stderr not taken yet");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    }

    /// Waits (bounded) for the server to exit and returns its status and
    /// everything it wrote to stderr.
    pub fn wait(mut self, limit: Duration) -> (ExitStatus, String) {
        let mut stderr = self.stderr.take();
        let reader = thread::spawn(move || {
            let mut text = String::new();
            if let Some(e) = stderr.as_mut() {
                let _ = e.read_to_string(&mut text);
            }
            text
        });
        let status = wait_with_deadline(&mut self.child, limit);
        let text = reader.join().unwrap_or_default();
        (status, text)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for a child to exit, killing it (and failing the test) after `limit`.
pub fn wait_with_deadline(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {limit:?}", child.id());
        }
        // Polling a child's exit: there is no readiness signal to wait on
        // without a SIGCHLD handler, so check every few milliseconds.
        thread::sleep(Duration::from_millis(5));
    }
}

/// Runs an example to completion (bounded) and returns status, stdout, stderr.
pub fn run_example(name: &str, args: &[&str], limit: Duration) -> (ExitStatus, String, String) {
    let mut command = Command::new(example(name));
    command.args(args).env("RUST_LOG", "warn");
    run_command(command, limit)
}

/// Runs a command to completion (bounded, stdin closed) and returns
/// status, stdout, stderr.
pub fn run_command(mut command: Command, limit: Duration) -> (ExitStatus, String, String) {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    collect(child, limit)
}

/// Waits (bounded) for a child spawned with piped stdout and stderr to
/// exit, reading both pipes meanwhile (on threads, so that a child with a
/// lot to say never blocks on a full pipe), and returns status, stdout,
/// stderr.
pub fn collect(mut child: Child, limit: Duration) -> (ExitStatus, String, String) {
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_with_deadline(&mut child, limit);
    (
        status,
        out_reader.join().unwrap(),
        err_reader.join().unwrap(),
    )
}

/// Resident memory (VmRSS) of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// An address nothing listens on (a port that was free a moment ago), for
/// testing refused connects.
pub fn unused_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
}

/// A blocking client connection with generous timeouts, so a broken server
/// fails the test instead of hanging it.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// Sends `data`, reads back exactly as many bytes, and returns them.
pub fn echo_once(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    stream.write_all(data).unwrap();
    let mut back = vec![0; data.len()];
    stream.read_exact(&mut back).unwrap();
    back
}

/// Reads until end of stream (bounded by the read timeout).
pub fn read_to_end(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all)?;
    Ok(all)
}

/// True if the peer closes the connection (EOF or reset) before `limit`.
pub fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// A small deterministic generator (xorshift64*): reproducible test data
/// without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `low..=high`.
    pub fn range(&mut self, low: usize, high: usize) -> usize {
        low + (self.next_u64() % (high - low + 1) as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// Drives many echo clients at once over non-blocking sockets: each sends
/// its payload in random-sized chunks (1 byte to 64 KiB) and checks every
/// byte that comes back against what it sent. Returns an error describing
/// the first mismatch, early close or the deadline passing.
pub fn run_echo_clients(
    addr: SocketAddr,
    payloads: &[Vec<u8>],
    seed: u64,
    limit: Duration,
) -> Result<(), String> {
    use mio::net::TcpStream as MioStream;
    use mio::{Events, Interest, Poll, Token};

    struct Client {
        stream: MioStream,
        sent: usize,
        checked: usize,
        done: bool,
    }

    let mut rng = Rng::new(seed);
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut clients: HashMap<usize, Client> = HashMap::new();
    for (i, _) in payloads.iter().enumerate() {
        let mut stream =
            MioStream::connect(addr).map_err(|e| format!("client {i}: connect: {e}"))?;
        poll.registry()
            .register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| e.to_string())?;
        clients.insert(
            i,
            Client {
                stream,
                sent: 0,
                checked: 0,
                done: false,
            },
        );
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + limit;
    let mut remaining = payloads.len();
    while remaining > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let stuck: Vec<String> = clients
                .iter()
                .filter(|(_, c)| !c.done)
                .take(5)
                .map(|(i, c)| format!("client {i}: sent {} checked {}", c.sent, c.checked))
                .collect();
            return Err(format!(
                "deadline passed with {remaining} clients unfinished: {stuck:?}"
            ));
        }
        poll.poll(&mut events, Some(left))
            .map_err(|e| e.to_string())?;
        for event in events.iter() {
            let i = event.token().0;
            let payload = &payloads[i];
            let client = clients.get_mut(&i).expect("client");
            if client.done {
                continue;
            }
            // Write random-sized chunks until the socket is full.
            while client.sent < payload.len() {
                let chunk = rng.range(1, 64 * 1024).min(payload.len() - client.sent);
                match client
                    .stream
                    .write(&payload[client.sent..client.sent + chunk])
                {
                    Ok(n) => client.sent += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::NotConnected => break,
                    Err(e) => return Err(format!("client {i}: write: {e}")),
                }
            }
            // Read until WouldBlock, checking every byte.
            loop {
                match client.stream.read(&mut buf) {
                    Ok(0) => {
                        return Err(format!(
                            "client {i}: server closed after {} of {} bytes",
                            client.checked,
                            payload.len()
                        ));
                    }
                    Ok(n) => {
                        let expected = payload.get(client.checked..client.checked + n);
                        if expected != Some(&buf[..n]) {
                            return Err(format!("client {i}: mismatch at byte {}", client.checked));
                        }
                        client.checked += n;
                        if client.checked == payload.len() {
                            client.done = true;
                            remaining -= 1;
                            let _ = client.stream.shutdown(Shutdown::Both);
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::NotConnected => break,
                    Err(e) => return Err(format!("client {i}: read: {e}")),
                }
            }
        }
    }
    Ok(())
}

/// A memory field of `/proc/PID/status` (`VmRSS`, `VmHWM`: the peak), in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} line"))
}

/// Whether a tool the test needs is installed. Without it the test is
/// skipped with a printed reason, unless `REQUIRE_ALL=1` (as in CI), where
/// its absence fails the test.
pub fn tool(name: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("REQUIRE_ALL").as_deref() != Ok("1"),
            "{name} is required (REQUIRE_ALL=1) but not installed"
        );
        eprintln!("skipped: {name} is not installed");
    }
    found
}

/// A fresh directory under the system's temporary directory, removed (with
/// everything in it) when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `$TMPDIR/reactor-test-LABEL-PID-N`, empty.
    pub fn new(label: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("reactor-test-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits up to `limit` for a line containing `needle` among `lines` (a
/// program's stderr, from [`Server::stderr_lines`]), and returns it.
/// Panics if none comes in time.
#[track_caller]
pub fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(_) => panic!("no line with {needle:?} within {limit:?}"),
        }
    }
}

/// Writes `data` to `stream` without reading anything back, until the
/// writes stall: no room appeared in the socket for half a second, so
/// every buffer on the way is full and the server has stopped reading us.
/// Calls `sample` after each write (to track a server's memory). Returns
/// how many bytes were written; the stream's write timeout is left at
/// half a second.
#[track_caller]
pub fn write_until_stall(stream: &mut TcpStream, data: &[u8], mut sample: impl FnMut()) -> usize {
    stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut sent = 0;
    let start = Instant::now();
    while sent < data.len() {
        match stream.write(&data[sent..(sent + 64 * 1024).min(data.len())]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => break,
            Err(e) => panic!("write: {e}"),
        }
        sample();
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "writing took too long"
        );
    }
    sent
}
pub mod kv;
pub mod ws;

/// Raises this process's soft limit on open descriptors to `wanted` (or
/// the hard limit, if lower), for tests that hold a thousand connections.
/// Servers spawned afterwards inherit it. Returns the limit now in force.
pub fn raise_fd_limit(wanted: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    assert!(
        limit.rlim_cur >= wanted,
        "the hard descriptor limit {} is below the {wanted} this test needs",
        limit.rlim_max
    );
    limit.rlim_cur
}

pub mod redis;
