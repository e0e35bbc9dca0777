//! A raw, edge-triggered epoll echo server with no abstraction at all: one
//! `epoll_wait`, then per ready socket `read` and `write`, and the state of
//! each connection in a table indexed by its descriptor. The floor any
//! reactor's overhead is measured against.
//!
//! usage: epoll_echo [ADDR:PORT]     (default 127.0.0.1:10100)
//!
//! It reads until a read returns less than the buffer (on epoll that proves
//! the socket drained) and writes at once; output the socket does not take
//! waits for EPOLLOUT. Prints `listening on ADDR`.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::IntoRawFd;

const BUF: usize = 64 * 1024;

fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:10100".into())
        .parse()
        .expect("an address like 127.0.0.1:10100");
    let listener = TcpListener::bind(addr).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    println!("listening on {}", listener.local_addr().unwrap());
    std::io::stdout().flush().unwrap();
    let lfd = listener.into_raw_fd();

    // SAFETY: plain syscalls on descriptors this program owns; buffers are
    // valid for the lengths passed.
    unsafe {
        let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        assert!(ep >= 0);
        let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLET) as u32, u64: lfd as u64 };
        assert_eq!(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, lfd, &mut ev), 0);
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        let mut buf = vec![0u8; BUF];
        // Pending output per descriptor (only for writes the socket refused).
        let mut pending: Vec<Vec<u8>> = Vec::new();
        loop {
            let n = libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1);
            if n < 0 {
                continue; // EINTR
            }
            for e in &events[..n as usize] {
                let fd = e.u64 as i32;
                if fd == lfd {
                    loop {
                        let c = libc::accept4(lfd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
                        if c < 0 {
                            break;
                        }
                        let one: libc::c_int = 1;
                        libc::setsockopt(c, libc::IPPROTO_TCP, libc::TCP_NODELAY, (&one as *const libc::c_int).cast(), 4);
                        let mut ev = libc::epoll_event {
                            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
                            u64: c as u64,
                        };
                        libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, c, &mut ev);
                        if pending.len() <= c as usize {
                            pending.resize_with(c as usize + 1, Vec::new);
                        }
                    }
                    continue;
                }
                let flags = e.events;
                let mut closed = false;
                // Output left from before, now that there is room.
                if flags & libc::EPOLLOUT as u32 != 0 && !pending[fd as usize].is_empty() {
                    let out = &mut pending[fd as usize];
                    let w = libc::write(fd, out.as_ptr().cast(), out.len());
                    if w > 0 {
                        out.drain(..w as usize);
                    }
                }
                if flags & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                    loop {
                        // Stop reading while output is stuck (backpressure).
                        if !pending[fd as usize].is_empty() {
                            break;
                        }
                        let r = libc::read(fd, buf.as_mut_ptr().cast(), BUF);
                        if r == 0 {
                            closed = true;
                            break;
                        }
                        if r < 0 {
                            if *libc::__errno_location() != libc::EAGAIN {
                                closed = true;
                            }
                            break;
                        }
                        let r = r as usize;
                        let w = libc::write(fd, buf.as_ptr().cast(), r);
                        let w = if w < 0 { 0 } else { w as usize };
                        if w < r {
                            pending[fd as usize].extend_from_slice(&buf[w..r]);
                        }
                        // A short read means drained, unless the peer's FIN
                        // came with this event: then read on to the 0.
                        if r < BUF && flags & libc::EPOLLRDHUP as u32 == 0 {
                            break;
                        }
                    }
                }
                if closed {
                    pending[fd as usize].clear();
                    libc::close(fd);
                }
            }
        }
    }
}
