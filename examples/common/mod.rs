//! Shared by every example program: argument helpers (on `lexopt`), one
//! parser for durations and one for sizes, logging set-up, and shutdown
//! signals as a reactor source.
//!
//! Each example includes this file with `mod common;`; not every example
//! uses every function.
#![allow(dead_code)]

use std::fmt::Display;
use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process;
use std::time::Duration;

use reactor::Reactor;

/// The program's name, for messages.
pub fn program() -> String {
    std::env::args()
        .next()
        .and_then(|path| {
            std::path::Path::new(&path)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "reactor-example".to_string())
}

/// Logs through `env_logger`: `info` unless `RUST_LOG` says otherwise
/// (`RUST_LOG=debug` shows every accept, read, write and close).
pub fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
}

/// A program's `main`: logging set up, the command line read by `parse`
/// (which exits 2 on bad usage), then `run`; a failure is one line on
/// stderr and exit status 1.
pub fn main<O>(parse: impl FnOnce() -> O, run: impl FnOnce(O) -> io::Result<()>) {
    init_logging();
    let options = parse();
    if let Err(e) = run(options) {
        fail(e);
    }
}

/// Bad usage: one line on stderr, a hint, exit status 2.
pub fn usage_error(message: impl Display) -> ! {
    let program = program();
    eprintln!("{program}: {message}");
    eprintln!("try '{program} --help'");
    process::exit(2);
}

/// A failure at run time (bind, connect): one line on stderr, exit status 1.
pub fn fail(message: impl Display) -> ! {
    eprintln!("{}: {message}", program());
    process::exit(1);
}

/// Prints the usage text and exits 0.
pub fn help(usage: &str) -> ! {
    print!("{usage}");
    process::exit(0);
}

/// The next argument, or exit 2 on a malformed one.
pub fn next_arg(parser: &mut lexopt::Parser) -> Option<lexopt::Arg<'_>> {
    parser.next().unwrap_or_else(|e| usage_error(e))
}

/// The value of the option just read, parsed by `parse`; exit 2 if it is
/// missing or does not parse.
pub fn value<T>(
    parser: &mut lexopt::Parser,
    option: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> T {
    let raw = match parser.value() {
        Ok(raw) => raw,
        Err(e) => usage_error(e),
    };
    let text = raw.to_string_lossy();
    parse(&text)
        .unwrap_or_else(|e| usage_error(format!("invalid value '{text}' for --{option}: {e}")))
}

/// An option's value as a string.
pub fn text(s: &str) -> Result<String, String> {
    Ok(s.to_string())
}

/// A file or directory path, as given.
pub fn path(s: &str) -> Result<std::path::PathBuf, String> {
    Ok(std::path::PathBuf::from(s))
}

/// A count: a non-negative whole number.
pub fn count(s: &str) -> Result<usize, String> {
    s.parse::<usize>().map_err(|e| e.to_string())
}

/// Splits `1.5s` into `1.5` and `s`; `expected` says what a good value
/// looks like.
fn number_and_unit<'a>(s: &'a str, expected: &str) -> Result<(f64, &'a str), String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number = number.parse().map_err(|_| format!("expected {expected}"))?;
    Ok((number, unit.trim()))
}

/// A port number.
pub fn port(s: &str) -> Result<u16, String> {
    s.parse::<u16>().map_err(|e| e.to_string())
}

/// A duration such as `30s`, `500ms`, `2m`, `1h`, `250us` or `1.5s`; a bare
/// number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = number_and_unit(s, "a number with a unit, like 30s, 500ms or 2m")?;
    let scale = match unit {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' (use ns, us, ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(number * scale).map_err(|e| e.to_string())
}

/// A duration, or `off` / `0` for none.
pub fn parse_optional_duration(s: &str) -> Result<Option<Duration>, String> {
    if s == "off" || s == "none" {
        return Ok(None);
    }
    let d = parse_duration(s)?;
    Ok((!d.is_zero()).then_some(d))
}

/// A size such as `4MiB`, `64KiB`, `1GiB`, `512` (bytes), `10KB` (10 000).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let (number, unit) = number_and_unit(s, "a size like 4MiB, 64KiB or 1024")?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        other => {
            return Err(format!(
                "unknown unit '{other}' (use B, KiB, MiB, GiB, KB, MB or GB)"
            ));
        }
    };
    let bytes = number * scale;
    if !bytes.is_finite() || bytes < 0.0 || bytes > usize::MAX as f64 || bytes.fract() != 0.0 {
        return Err("not a whole number of bytes".to_string());
    }
    Ok(bytes as usize)
}

/// Resolves `host:port` to one socket address. Resolution may block
/// (`getaddrinfo`), so call this before the loop starts, never inside it.
pub fn resolve(s: &str) -> Result<SocketAddr, String> {
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?;
    addrs.next().ok_or_else(|| "no address found".to_string())
}

/// [`resolve`] for the value of `--addr`, exiting with a usage error that
/// names the option if it does not resolve.
pub fn resolve_addr(addr: &str) -> SocketAddr {
    resolve(addr).unwrap_or_else(|e| usage_error(format!("--addr {addr}: {e}")))
}

/// The command line of a program whose one option is `--addr HOST:PORT`
/// (`default` if not given), besides `--help`: the address, resolved.
pub fn addr_only(usage: &str, default: &str) -> SocketAddr {
    let mut addr = default.to_string();
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short};
        match arg {
            Long("addr") => addr = value(&mut parser, "addr", text),
            Long("help") | Short('h') => help(usage),
            _ => usage_error(arg.unexpected()),
        }
    }
    resolve_addr(&addr)
}

/// Listens on TCP `addr` with `service`, and binds a UDP socket to the port
/// the listener got (which matters when asked for port 0): a server that
/// answers on both, like the seeds' time and calculator servers.
pub fn listen_tcp_and_udp<H: reactor::service::Handler>(
    reactor: &mut Reactor,
    service: &reactor::service::Service<H>,
    addr: SocketAddr,
) -> io::Result<(SocketAddr, mio::net::UdpSocket)> {
    let id = listen(reactor, service, addr)?;
    let tcp_addr = service.local_addr(id)?.inet().unwrap_or(addr);
    let udp = reactor::socket::udp_socket(tcp_addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind UDP {tcp_addr}: {e}")))?;
    Ok((tcp_addr, udp))
}

/// Names of users, rooms and players: 1 to 32 letters, digits, `_`, `-` or
/// `.` (one word on the wire, and safe on a terminal). `what` names the
/// thing in the error.
pub fn check_name(name: &str, what: &str) -> Result<(), String> {
    let count = name.chars().count();
    let allowed = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.');
    if (1..=32).contains(&count) && name.chars().all(allowed) {
        Ok(())
    } else {
        Err(format!(
            "invalid {what} '{name}': use 1 to 32 letters, digits, '_', '-' or '.'"
        ))
    }
}

/// Writes what a non-blocking stdout takes now of `pending`, and removes
/// it; the rest waits for a writable event. A stdout that is gone (`| head`)
/// drops everything: nothing more can be shown.
pub fn flush_stdout(pending: &mut Vec<u8>) {
    let mut stdout = io::stdout().lock();
    while !pending.is_empty() {
        match stdout.write(pending) {
            Ok(0) => break,
            Ok(n) => {
                pending.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                pending.clear();
                break;
            }
        }
    }
    let _ = stdout.flush();
}

/// Prints a line on stdout and flushes it at once (tests and scripts wait
/// for lines such as `listening on ...`).
pub fn announce(line: impl Display) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Terminal echo off while it lives (for typing a password): standard
/// input must be a terminal.
pub struct EchoOff(libc::termios);

impl EchoOff {
    pub fn new() -> io::Result<EchoOff> {
        // SAFETY: tcgetattr fills the termios it is given for descriptor 0,
        // which is a terminal (checked by the caller).
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: as above; `quiet` is a valid termios copied from the
        // terminal's own.
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &quiet) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EchoOff(saved))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new`.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.0) };
    }
}

/// A borrowed descriptor (stdin or stdout) as a mio source.
pub struct Fd(pub std::os::fd::RawFd);

impl mio::event::Source for Fd {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        mio::unix::SourceFd(&self.0).register(registry, token, interests)
    }
    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        mio::unix::SourceFd(&self.0).reregister(registry, token, interests)
    }
    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        mio::unix::SourceFd(&self.0).deregister(registry)
    }
}

/// Puts a descriptor in non-blocking mode and restores its flags when
/// dropped.
pub struct NonBlocking {
    fd: std::os::fd::RawFd,
    original: i32,
}

impl NonBlocking {
    pub fn set(fd: std::os::fd::RawFd) -> io::Result<NonBlocking> {
        // SAFETY: fcntl on a descriptor we were given; F_GETFL has no memory
        // effects.
        let original = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if original < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above; F_SETFL only changes the file status flags.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, original | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NonBlocking { fd, original })
    }
}

impl Drop for NonBlocking {
    fn drop(&mut self) {
        // SAFETY: restores the flags read in `set` on the same descriptor.
        unsafe { libc::fcntl(self.fd, libc::F_SETFL, self.original) };
    }
}

/// Listens on TCP `addr` with `service`; the error names the address.
pub fn listen<H: reactor::service::Handler>(
    reactor: &mut Reactor,
    service: &reactor::service::Service<H>,
    addr: SocketAddr,
) -> io::Result<reactor::service::ListenerId> {
    service
        .listen(reactor, addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// At exit, on stdout for whoever ran it: `VERB N connection(s), IN bytes
/// in, OUT bytes out` (a script can check that every byte arrived).
pub fn announce_totals<H: reactor::service::Handler>(
    service: &reactor::service::Service<H>,
    verb: &str,
) -> io::Result<()> {
    let stats = service.stats()?;
    announce(format_args!(
        "{verb} {} connection(s), {} bytes in, {} bytes out",
        stats.accepted, stats.bytes_in, stats.bytes_out
    ));
    Ok(())
}
