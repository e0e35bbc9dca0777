//! The file transfer client, on the reactor: `get`, `put` and `list`
//! against `file_server`, with a progress bar on a terminal and plain lines
//! through a pipe. It exits 0 only when the transfer completed and the byte
//! count matches.
//!
//! Run:   cargo run --example file_client -- --addr 127.0.0.1:9000 put Cargo.toml
//!        cargo run --example file_client -- list
//!        cargo run --example file_client -- get Cargo.toml -o /tmp/copy.toml
//!
//! The handler is in `transfer.rs`, the bar in `progress.rs`; the protocol
//! is the server's `protocol.rs`, shared.

#[path = "../common/mod.rs"]
mod common;
mod progress;
#[path = "../file_server/protocol.rs"]
mod protocol;
mod transfer;

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reactor::Reactor;
use reactor::service::{Config, Service};

use progress::Progress;
use transfer::{FileClient, Job};

const USAGE: &str = "\
file_client: download, upload and list files of a file_server

usage: file_client [--addr HOST:PORT] get NAME [-o PATH]
       file_client [--addr HOST:PORT] put PATH [--as NAME]
       file_client [--addr HOST:PORT] list

options:
  --addr HOST:PORT        the server (default 127.0.0.1:9000)
  -o, --output PATH       where a download goes: a file, or a directory to put NAME in
                          (default: NAME, here)
  --as NAME               the name an upload is stored under (default: PATH's file name)
  --timeout DURATION      give up when the server is silent this long (default 60s)
  -h, --help              show this text

On a terminal a progress bar is drawn on stderr. On stdout: 'get NAME: N bytes -> PATH',
'put PATH: N bytes as NAME', or one 'name size' line per file for list. Exit status 0
only when the transfer completed and every byte arrived; 1 on a failure (the reason
on stderr); 2 on bad arguments.
";

enum Command {
    Get {
        name: String,
        output: Option<PathBuf>,
    },
    Put {
        path: PathBuf,
        name: Option<String>,
    },
    List,
}

fn parse_options() -> (SocketAddr, Command, Duration) {
    let mut addr = "127.0.0.1:9000".to_string();
    let mut words: Vec<String> = Vec::new();
    let mut output = None;
    let mut name_as = None;
    let mut timeout = Duration::from_secs(60);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short, Value};
        match arg {
            Long("addr") => addr = common::value(&mut parser, "addr", common::text),
            Long("output") | Short('o') => {
                output = Some(common::value(&mut parser, "output", common::path))
            }
            Long("as") => name_as = Some(common::value(&mut parser, "as", common::text)),
            Long("timeout") => {
                timeout = common::value(&mut parser, "timeout", common::parse_duration)
            }
            Long("help") | Short('h') => common::help(USAGE),
            Value(word) => words.push(word.to_string_lossy().into_owned()),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let command = match words.as_slice() {
        ["get", name] => Command::Get {
            name: checked(name),
            output,
        },
        ["put", path] => Command::Put {
            path: PathBuf::from(path),
            name: name_as.map(|n| checked(&n)),
        },
        ["list"] => Command::List,
        _ => common::usage_error("expected 'get NAME', 'put PATH' or 'list'"),
    };
    if timeout.is_zero() {
        common::usage_error("--timeout must be more than 0");
    }
    (common::resolve_addr(&addr), command, timeout)
}

/// A name the server would accept, or a usage error.
fn checked(name: &str) -> String {
    match protocol::check_name(name) {
        Ok(name) => name.to_string(),
        Err(e) => common::usage_error(format!("'{name}': {e}")),
    }
}

/// Opens what the job needs before the loop starts: the file to upload, or
/// the temporary file a download is written to (beside its destination,
/// so that the final rename stays on one file system).
fn prepare(command: Command) -> io::Result<(Job, String)> {
    Ok(match command {
        Command::Get { name, output } => {
            let dest = match output {
                // `-o DIR`: the file keeps its name, inside DIR.
                Some(dir) if dir.is_dir() => dir.join(&name),
                Some(path) => path,
                None => PathBuf::from(&name),
            };
            let file_name = dest
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| name.clone());
            let temp = dest.with_file_name(format!(".{file_name}.{}.part", std::process::id()));
            let file = File::create(&temp)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", temp.display())))?;
            let label = format!("get {name}");
            (
                Job::Get {
                    name,
                    dest,
                    temp,
                    file,
                },
                label,
            )
        }
        Command::Put { path, name } => {
            let file = File::open(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            let meta = file.metadata()?;
            if !meta.is_file() {
                return Err(io::Error::other(format!(
                    "{}: not a regular file",
                    path.display()
                )));
            }
            let name = match name {
                Some(name) => name,
                None => default_name(&path)?,
            };
            let label = format!("put {name}");
            (
                Job::Put {
                    path,
                    name,
                    file,
                    size: meta.len(),
                },
                label,
            )
        }
        Command::List => (Job::List, "list".to_string()),
    })
}

/// An upload's name by default: the file's own name, if the server would
/// take it.
fn default_name(path: &Path) -> io::Result<String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    protocol::check_name(&name)
        .map(str::to_string)
        .map_err(|e| io::Error::other(format!("{}: {e}; choose one with --as", path.display())))
}

fn main() {
    common::init_logging();
    let (addr, command, timeout) = parse_options();
    match run(addr, command, timeout) {
        Ok(lines) => {
            for line in lines {
                common::announce(line);
            }
        }
        Err(e) => common::fail(e),
    }
}

fn run(addr: SocketAddr, command: Command, timeout: Duration) -> Result<Vec<String>, String> {
    let (job, label) = prepare(command).map_err(|e| e.to_string())?;
    let mut reactor = Reactor::new().map_err(|e| e.to_string())?;
    let config = Config::default()
        .connect_timeout(timeout)
        .idle_timeout(Some(timeout))
        .input_limit(64 * 1024);
    let client = Service::new(
        &mut reactor,
        FileClient::new(job, Progress::new(label)),
        config,
    );
    // Ctrl-C ends the transfer as a failure, inside the loop, so that a
    // partial download is removed rather than left behind.
    let on_signal = client.clone();
    reactor::signal::on_shutdown_signal(&mut reactor, move |reactor, signal| {
        let _ = on_signal.with(reactor, |client, conns| {
            client.interrupt(conns, signal.name())
        });
    })
    .map_err(|e| e.to_string())?;
    if let Err(e) = client.connect(&mut reactor, addr) {
        let _ = client.with(&mut reactor, |client, _| client.remove_partial());
        return Err(format!("cannot connect to {addr}: {e}"));
    }
    reactor.run().map_err(|e| e.to_string())?;
    client
        .with(&mut reactor, |client, _| {
            let lines = std::mem::take(&mut client.lines);
            match client.outcome.take() {
                Some(Ok(done)) if done.is_empty() => Ok(lines),
                Some(Ok(done)) => Ok(vec![done]),
                Some(Err(e)) => Err(format!("{addr}: {e}")),
                None => Err(format!("{addr}: the exchange did not finish")),
            }
        })
        .map_err(|e| e.to_string())?
}
