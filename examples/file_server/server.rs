//! The file server's [`Handler`]: one state per connection, requests one at
//! a time, files streamed in 64 KiB chunks with backpressure.
//!
//! ```text
//!            GET ok ──► Sending ── all sent ──┐   (reading paused: a
//!   Idle ──  PUT ok ──► Receiving ─ all in ──┤    pipelined request waits)
//!     ▲      PUT refused ─► Discarding ─► ERROR, close
//!     └──────────────────────────────────────┘   LIST: reply at once, Idle
//! ```
//!
//! - **Downloads** are pumped from `on_drained`: at most [`WINDOW`] bytes
//!   are queued for a connection at a time, so a slow reader holds one
//!   window of memory and a fast one is fed as fast as it reads.
//! - **Uploads** are written to disk as they arrive, in `on_data`; a peer
//!   sends only as fast as that goes. They land under a temporary name and
//!   are renamed when the last byte is written; a connection that closes
//!   first leaves nothing behind.
//! - **A refused upload** (too large, too many files, a full disk) is not
//!   answered at once: the rest of the announced bytes are read and thrown
//!   away first (up to `--discard-limit`), then `ERROR` is sent and the
//!   connection closed. Answering while the client is still sending would
//!   close a socket with unread input, and that reset could destroy the
//!   `ERROR` before the client reads it.

use std::fs::File;
use std::io::{Read, Write};

use log::{debug, info, warn};
use reactor::service::{CloseReason, ConnId, Connections, Handler, Origin};

use crate::protocol::{Request, parse_request, split_line};
use crate::store::{Store, Upload};

/// The most file bytes queued for one connection at a time.
const WINDOW: usize = 256 * 1024;
/// One read from disk.
const CHUNK: usize = 64 * 1024;

/// The server's limits.
pub struct Limits {
    pub max_file: u64,
    pub discard_limit: u64,
}

/// What a connection is doing.
#[derive(Default)]
enum Transfer {
    /// Waiting for a request line.
    #[default]
    Idle,
    /// A download: `left` bytes of `file` still to queue.
    Sending { file: File, name: String, left: u64 },
    /// An upload: `left` bytes still to arrive.
    Receiving { upload: Upload, left: u64 },
    /// A refused upload: `left` bytes to read and drop, then `error`.
    Discarding { left: u64, error: String },
}

/// The handler: the directory, the limits, and each connection's transfer.
pub struct FileServer {
    store: Store,
    limits: Limits,
    transfers: Vec<(Option<ConnId>, Transfer)>,
    /// Reused for reads from disk.
    chunk: Vec<u8>,
}

impl FileServer {
    pub fn new(store: Store, limits: Limits) -> FileServer {
        FileServer {
            store,
            limits,
            transfers: Vec::new(),
            chunk: vec![0; CHUNK],
        }
    }

    fn transfer(&mut self, id: ConnId) -> &mut Transfer {
        let index = id.index();
        if self.transfers.len() <= index {
            self.transfers
                .resize_with(index + 1, || (None, Transfer::Idle));
        }
        let slot = &mut self.transfers[index];
        if slot.0 != Some(id) {
            *slot = (Some(id), Transfer::Idle);
        }
        &mut slot.1
    }

    /// `ERROR message`, then a graceful close: the protocol ends a
    /// connection after an error.
    fn refuse(conns: &mut Connections<'_>, id: ConnId, message: &str) {
        info!("{id}: ERROR {message}");
        let _ = conns.send(id, format!("ERROR {message}\n").as_bytes());
        let _ = conns.close(id);
    }

    /// Handles one request line; returns false if the connection is done
    /// (an error was sent).
    fn request(&mut self, conns: &mut Connections<'_>, id: ConnId, line: &[u8]) -> bool {
        let request = match parse_request(line) {
            Ok(request) => request,
            Err(message) => {
                Self::refuse(conns, id, &message);
                return false;
            }
        };
        debug!("{id}: {request:?}");
        match request {
            Request::Get { name } => match self.store.open_file(name) {
                Ok((file, size)) => {
                    info!("{id}: GET {name}: {size} bytes");
                    let _ = conns.send(id, format!("OK {size}\n").as_bytes());
                    *self.transfer(id) = Transfer::Sending {
                        file,
                        name: name.to_string(),
                        left: size,
                    };
                    // A pipelined request waits until this one is sent.
                    let _ = conns.pause_reading(id);
                    self.pump(conns, id);
                }
                Err(message) => {
                    Self::refuse(conns, id, &format!("{name}: {message}"));
                    return false;
                }
            },
            Request::Put { name, size } => {
                let refusal = if size > self.limits.max_file {
                    Some(format!(
                        "{name}: {size} bytes is over the limit of {}",
                        self.limits.max_file
                    ))
                } else {
                    match self.store.begin_upload(name) {
                        Ok(upload) => {
                            info!("{id}: PUT {name}: {size} bytes");
                            *self.transfer(id) = Transfer::Receiving { upload, left: size };
                            self.finish_if_received(conns, id);
                            None
                        }
                        Err(message) => Some(format!("{name}: {message}")),
                    }
                };
                if let Some(message) = refusal {
                    return self.discard_then_refuse(conns, id, size, message);
                }
            }
            Request::List => match self.store.list() {
                Ok(files) => {
                    let mut reply = format!("OK {}\n", files.len());
                    for (name, size) in &files {
                        reply.push_str(&format!("{name} {size}\n"));
                    }
                    let _ = conns.send(id, reply.as_bytes());
                }
                Err(message) => {
                    Self::refuse(conns, id, &message);
                    return false;
                }
            },
        }
        true
    }

    /// A refused upload: read and drop its `size` bytes first if that is
    /// within the discard limit, else answer now.
    fn discard_then_refuse(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        size: u64,
        error: String,
    ) -> bool {
        if size > self.limits.discard_limit {
            Self::refuse(conns, id, &error);
            return false;
        }
        debug!("{id}: discarding {size} bytes before ERROR {error}");
        *self.transfer(id) = Transfer::Discarding { left: size, error };
        self.finish_if_received(conns, id)
    }

    /// Queues file bytes until [`WINDOW`] are queued or the file is sent.
    fn pump(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        let mut chunk = std::mem::take(&mut self.chunk);
        self.pump_with(conns, id, &mut chunk);
        self.chunk = chunk;
    }

    fn pump_with(&mut self, conns: &mut Connections<'_>, id: ConnId, chunk: &mut [u8]) {
        loop {
            let queued = conns.output_len(id).unwrap_or(usize::MAX);
            let Transfer::Sending { file, name, left } = self.transfer(id) else {
                return;
            };
            if *left == 0 {
                debug!("{id}: {name} sent");
                *self.transfer(id) = Transfer::Idle;
                // The next pipelined request, if any, is handed back now.
                let _ = conns.resume_reading(id);
                return;
            }
            if queued >= WINDOW {
                return; // on_drained comes back here
            }
            let want = (*left).min(CHUNK as u64) as usize;
            match file.read(&mut chunk[..want]) {
                Ok(0) => {
                    // The file shrank while being sent: the reply's size is
                    // already out, so the only honest end is to cut the
                    // connection (the client sees a short transfer).
                    warn!("{id}: {name} shrank while being sent: closing");
                    let _ = conns.abort(id);
                    return;
                }
                Ok(n) => {
                    *left -= n as u64;
                    if conns.send(id, &chunk[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("{id}: reading {name}: {e}: closing");
                    let _ = conns.abort(id);
                    return;
                }
            }
        }
    }

    /// Body bytes of an upload (or of a refused one): written (or dropped).
    /// Returns how many of `data` belonged to the body.
    fn body(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let taken = match self.transfer(id) {
            Transfer::Receiving { upload, left } => {
                let n = (*left).min(data.len() as u64) as usize;
                if let Err(e) = upload.file.write_all(&data[..n]) {
                    let error = format!("{}: cannot store: {e}", upload.name);
                    let rest = *left - n as u64;
                    if let Transfer::Receiving { upload, .. } = std::mem::take(self.transfer(id)) {
                        self.store.abandon_upload(upload);
                    }
                    self.discard_then_refuse(conns, id, rest, error);
                    return n;
                }
                *left -= n as u64;
                n
            }
            Transfer::Discarding { left, .. } => {
                let n = (*left).min(data.len() as u64) as usize;
                *left -= n as u64;
                n
            }
            _ => 0,
        };
        self.finish_if_received(conns, id);
        taken
    }

    /// Once an upload's last byte is in: publish it and answer `OK`, or,
    /// for a refused one, answer `ERROR`. Returns false if the connection
    /// is done.
    fn finish_if_received(&mut self, conns: &mut Connections<'_>, id: ConnId) -> bool {
        match self.transfer(id) {
            Transfer::Receiving { left: 0, .. } => {
                let Transfer::Receiving { upload, .. } = std::mem::take(self.transfer(id)) else {
                    unreachable!()
                };
                let name = upload.name.clone();
                let size = upload.file.metadata().map(|m| m.len()).unwrap_or(0);
                match self.store.finish_upload(upload) {
                    Ok(()) => {
                        info!("{id}: stored {name}: {size} bytes");
                        let _ = conns.send(id, format!("OK {size}\n").as_bytes());
                        true
                    }
                    Err(message) => {
                        Self::refuse(conns, id, &format!("{name}: {message}"));
                        false
                    }
                }
            }
            Transfer::Discarding { left: 0, .. } => {
                let Transfer::Discarding { error, .. } = std::mem::take(self.transfer(id)) else {
                    unreachable!()
                };
                Self::refuse(conns, id, &error);
                false
            }
            _ => true,
        }
    }
}

impl Handler for FileServer {
    fn on_open(&mut self, _: &mut Connections<'_>, id: ConnId, _: Origin) {
        *self.transfer(id) = Transfer::Idle;
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let mut used = 0;
        while used < data.len() && conns.is_open(id) {
            match self.transfer(id) {
                Transfer::Idle => {}
                // Paused: the rest waits for the download to finish.
                Transfer::Sending { .. } => break,
                Transfer::Receiving { .. } | Transfer::Discarding { .. } => {
                    used += self.body(conns, id, &data[used..]);
                    continue;
                }
            }
            match split_line(&data[used..]) {
                Ok(Some(line)) => {
                    used += line.len() + 1;
                    if !self.request(conns, id, line) {
                        return data.len();
                    }
                }
                // A partial line: kept for the next call (at most MAX_LINE).
                Ok(None) => break,
                Err(message) => {
                    Self::refuse(conns, id, &message);
                    return data.len();
                }
            }
        }
        used
    }

    fn on_drained(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        self.pump(conns, id);
    }

    fn on_close(&mut self, _: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        match std::mem::take(self.transfer(id)) {
            Transfer::Receiving { upload, left } => {
                // Removed first, then said: whoever reads the log line can
                // rely on the file being gone.
                let name = upload.name.clone();
                self.store.abandon_upload(upload);
                warn!(
                    "{id}: upload of {name} interrupted ({left} bytes missing, {reason}): removed"
                );
            }
            Transfer::Sending { name, left, .. } if left > 0 => {
                info!("{id}: download of {name} interrupted ({reason})");
            }
            _ => debug!("{id}: closed ({reason})"),
        }
        self.transfers[id.index()].0 = None;
    }
}
