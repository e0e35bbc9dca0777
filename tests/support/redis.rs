//! A real `redis-server` for the cluster and client tests: started on a
//! chosen or free port with persistence off, killable and restartable on
//! the same port, and `redis-cli` against it.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` process, killed when dropped.
pub struct Redis {
    child: Option<Child>,
    pub addr: SocketAddr,
    args: Vec<String>,
}

impl Redis {
    /// `redis-server` on a free port, or `None` (the test is skipped, with
    /// the reason printed) when it or `redis-cli` is not installed and
    /// `REQUIRE_ALL` is not set.
    pub fn start(args: &[&str]) -> Option<Redis> {
        if !super::tool("redis-server") || !super::tool("redis-cli") {
            return None;
        }
        let mut redis = Redis {
            child: None,
            addr: super::unused_addr(),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        redis.restart();
        Some(redis)
    }

    /// Starts it again on the same port (after [`kill`](Redis::kill)), and
    /// waits until it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is running");
        let port = self.addr.port().to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server is running").id()
    }

    /// SIGKILL, and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `redis-cli -p PORT ARGS...` (with `-a PASSWORD` first if given),
    /// waited for (bounded).
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut command = self.cli_command();
        command.args(args);
        let (status, stdout, stderr) = super::run_command(command, Duration::from_secs(10));
        Output {
            status,
            stdout: stdout.into_bytes(),
            stderr: stderr.into_bytes(),
        }
    }

    /// `redis-cli`'s answer, trimmed.
    pub fn cli_text(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A `redis-cli -h 127.0.0.1 -p PORT` command, to add arguments to.
    pub fn cli_command(&self) -> Command {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.addr.port().to_string()]);
        command
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
