//! The seeds' DNS lookup utility: every address a name resolves to, with its
//! family and socket type, then the reverse name of the first address.
//!
//! Run:   cargo run --example dns_lookup -- localhost www.python.org
//!
//! This is a one-shot tool, so it may block: `getaddrinfo` and `getnameinfo`
//! are blocking calls, which is exactly why a server resolves names before
//! its loop starts and never inside it.

mod common;

use std::ffi::{CStr, CString};
use std::net::{IpAddr, SocketAddr};

const USAGE: &str = "\
dns_lookup: resolve names with getaddrinfo, and the first address back with getnameinfo

usage: dns_lookup NAME...

Prints one line per address and socket type (IPv4 TCP 127.0.0.1), without
duplicates, then the reverse name of the first address. Exit status 1 if a
name does not resolve.
";

/// One `getaddrinfo` result.
#[derive(PartialEq, Eq)]
struct Entry {
    ip: IpAddr,
    stream: bool,
}

fn main() {
    common::init_logging();
    let mut names = Vec::new();
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short, Value};
        match arg {
            Long("help") | Short('h') => common::help(USAGE),
            Value(name) => names.push(name.to_string_lossy().into_owned()),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    if names.is_empty() {
        common::usage_error("give at least one name to look up");
    }
    let mut failed = 0;
    for name in &names {
        println!("{name}:");
        match lookup(name) {
            Ok(entries) => {
                for entry in &entries {
                    let family = if entry.ip.is_ipv4() { "IPv4" } else { "IPv6" };
                    let kind = if entry.stream { "TCP" } else { "UDP" };
                    println!("  {family} {kind} {}", entry.ip);
                }
                if let Some(first) = entries.first() {
                    match reverse(first.ip) {
                        Ok(host) => println!("  reverse name of {}: {host}", first.ip),
                        Err(e) => println!("  reverse name of {}: none ({e})", first.ip),
                    }
                }
            }
            Err(e) => {
                eprintln!("{}: {name}: {e}", common::program());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        std::process::exit(1);
    }
}

/// `getaddrinfo(name)`, all families, TCP and UDP entries, duplicates
/// dropped, in the resolver's order.
fn lookup(name: &str) -> Result<Vec<Entry>, String> {
    let host = CString::new(name).map_err(|_| "a name cannot contain a NUL byte".to_string())?;
    // SAFETY: `hints` is zeroed as getaddrinfo requires; `list` is freed
    // with freeaddrinfo below, and each ai_addr is read as the type its
    // ai_family says.
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_family = libc::AF_UNSPEC;
        let mut list: *mut libc::addrinfo = std::ptr::null_mut();
        let status = libc::getaddrinfo(host.as_ptr(), std::ptr::null(), &hints, &mut list);
        if status != 0 {
            let message = CStr::from_ptr(libc::gai_strerror(status))
                .to_string_lossy()
                .into_owned();
            return Err(format!("does not resolve ({message})"));
        }
        let mut entries = Vec::new();
        let mut node = list;
        while !node.is_null() {
            let info = &*node;
            node = info.ai_next;
            let stream = match info.ai_socktype {
                libc::SOCK_STREAM => true,
                libc::SOCK_DGRAM => false,
                _ => continue, // raw sockets: not an address to connect to
            };
            let ip = match info.ai_family {
                libc::AF_INET => {
                    let sin = &*(info.ai_addr as *const libc::sockaddr_in);
                    IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes())
                }
                libc::AF_INET6 => {
                    let sin6 = &*(info.ai_addr as *const libc::sockaddr_in6);
                    IpAddr::from(sin6.sin6_addr.s6_addr)
                }
                _ => continue,
            };
            let entry = Entry { ip, stream };
            if !entries.contains(&entry) {
                entries.push(entry);
            }
        }
        libc::freeaddrinfo(list);
        Ok(entries)
    }
}

/// `getnameinfo(ip)` with `NI_NAMEREQD`: the name, or why there is none.
fn reverse(ip: IpAddr) -> Result<String, String> {
    let addr: socket2::SockAddr = SocketAddr::new(ip, 0).into();
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: `addr` is a valid socket address of the length given, and
    // `host` is a writable buffer of the length given.
    let status = unsafe {
        libc::getnameinfo(
            addr.as_ptr().cast(),
            addr.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if status != 0 {
        // SAFETY: gai_strerror returns a static string for any status.
        let message = unsafe { CStr::from_ptr(libc::gai_strerror(status)) };
        return Err(message.to_string_lossy().into_owned());
    }
    // SAFETY: getnameinfo wrote a NUL-terminated string into `host`.
    Ok(unsafe { CStr::from_ptr(host.as_ptr()) }
        .to_string_lossy()
        .into_owned())
}
