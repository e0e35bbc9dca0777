//! An echo server for length-prefixed messages: a 4-byte big-endian length,
//! then that many bytes (the seeds' `send_message` / `recv_message`). TCP is
//! a stream, so message boundaries are the protocol's job: the server echoes
//! whole frames, however the bytes were split or merged on the way.
//!
//! Run:   cargo run --example framed_echo_server
//! Talk:  cargo run --example framed_echo_client -- hello "framed world"
//!
//! A header announcing more than `--max-frame` closes the connection before
//! anything is buffered; so does a connection that ends mid-frame. Either
//! gets a log line, and nobody else is disturbed.

mod common;

use std::io;
use std::net::SocketAddr;

use log::{info, warn};
use reactor::Reactor;
use reactor::codec::{FRAME_HEADER, FrameDecoder};
use reactor::service::{Config, ConnId, Connections, Handler, Service};

const USAGE: &str = "\
framed_echo_server: echo length-prefixed messages (4-byte big-endian length, then the bytes)

usage: framed_echo_server [--addr HOST:PORT] [--max-frame SIZE] [--max-conns N]

options:
  --addr HOST:PORT    where to listen (default 127.0.0.1:10002)
  --max-frame SIZE    largest message accepted (default 16MiB)
  --max-conns N       most clients at once (default 10000)
  -h, --help          show this text
";

struct FramedEcho {
    frames: FrameDecoder,
}

impl Handler for FramedEcho {
    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let mut pos = 0;
        while let Some(frame) = self.frames.next_frame(data, &mut pos) {
            match frame {
                Ok(payload) => {
                    // Echo the frame as it came: header and payload, one copy.
                    let start = pos - payload.len() - FRAME_HEADER;
                    if conns.send(id, &data[start..pos]).is_err() {
                        return data.len();
                    }
                }
                Err(e) => {
                    warn!("{id}: {e}: closing");
                    let _ = conns.abort(id);
                    return data.len();
                }
            }
        }
        pos
    }

    fn on_read_closed(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        let pending = conns.input_len(id).unwrap_or(0);
        if pending > 0 {
            warn!(
                "{id}: connection ended in the middle of a frame ({pending} bytes of it received): closing"
            );
        }
        let _ = conns.close(id);
    }
}

fn main() {
    common::init_logging();
    let mut addr = "127.0.0.1:10002".to_string();
    let mut max_frame = FrameDecoder::DEFAULT_MAX;
    let mut max_conns = 10_000;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short};
        match arg {
            Long("addr") => addr = common::value(&mut parser, "addr", common::text),
            Long("max-frame") => {
                max_frame = common::value(&mut parser, "max-frame", common::parse_size)
            }
            Long("max-conns") => max_conns = common::value(&mut parser, "max-conns", common::count),
            Long("help") | Short('h') => common::help(USAGE),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    if max_frame > u32::MAX as usize {
        common::usage_error("--max-frame cannot exceed 4GiB - 1 (the header has 32 bits)");
    }
    let addr = common::resolve_addr(&addr);
    if let Err(e) = run(addr, max_frame, max_conns) {
        common::fail(e);
    }
}

fn run(addr: SocketAddr, max_frame: usize, max_conns: usize) -> io::Result<()> {
    let mut reactor = Reactor::new()?;
    let whole_frame = max_frame + FRAME_HEADER;
    let config = Config::default()
        .max_connections(max_conns.max(1))
        // A frame is handed over whole, so up to one frame may wait
        // unconsumed; and its echo must fit in the output queue.
        .input_limit(whole_frame)
        .output_limit((2 * whole_frame).max(64 << 20));
    let handler = FramedEcho {
        frames: FrameDecoder::new(max_frame),
    };
    let service = Service::new(&mut reactor, handler, config);
    let id = service
        .listen(&mut reactor, addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    let on_signal = service.clone();
    reactor::signal::on_shutdown_signal(&mut reactor, move |reactor, signal| {
        info!("{}: shutting down", signal.name());
        if on_signal
            .shutdown(reactor, std::time::Duration::from_secs(5), |r| r.stop())
            .is_err()
        {
            reactor.stop();
        }
    })?;
    // Announced once a signal can no longer kill us before our handler runs:
    // whoever waits for this line may send SIGTERM at once.
    common::announce(format_args!("listening on {}", service.local_addr(id)?));
    reactor.run()
}
