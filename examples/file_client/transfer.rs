//! The client's [`Handler`]: one connection, one request (`GET`, `PUT` or
//! `LIST`), and a check that every byte arrived.
//!
//! A download is written to a temporary file beside its destination and
//! renamed when the last byte is in, so a failed one leaves nothing. An
//! upload is read from disk in 64 KiB chunks and queued from `on_drained`,
//! at most [`WINDOW`] bytes at a time: the server's pace sets ours.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use reactor::service::{CloseReason, ConnId, Connections, Handler, Origin};

use crate::progress::Progress;
use crate::protocol::{Reply, parse_reply, split_line};

/// The most bytes queued for the server at a time.
const WINDOW: usize = 256 * 1024;
/// One read from disk.
const CHUNK: usize = 64 * 1024;
/// The most lines a listing may have (the server's `--max-files` is 10 000
/// by default): a server that announces more is not believed.
const MAX_LISTED: u64 = 1_000_000;

/// What the user asked for, with what was opened before the loop.
pub enum Job {
    Get {
        name: String,
        dest: PathBuf,
        temp: PathBuf,
        file: File,
    },
    Put {
        path: PathBuf,
        name: String,
        file: File,
        size: u64,
    },
    List,
}

/// Where the exchange is.
enum Phase {
    /// Waiting for the `OK`/`ERROR` line (an upload may still be sending).
    Reply,
    /// A download's body: `left` of `size` bytes to come.
    Body {
        size: u64,
        left: u64,
    },
    /// A listing: `left` lines to come.
    Lines {
        left: u64,
    },
    Done,
}

pub struct FileClient {
    job: Job,
    phase: Phase,
    /// An upload: bytes queued so far.
    queued: u64,
    progress: Progress,
    chunk: Vec<u8>,
    /// A listing's lines.
    pub lines: Vec<String>,
    /// What to print on success, or why it failed.
    pub outcome: Option<Result<String, String>>,
}

impl FileClient {
    pub fn new(job: Job, progress: Progress) -> FileClient {
        FileClient {
            job,
            phase: Phase::Reply,
            queued: 0,
            progress,
            chunk: vec![0; CHUNK],
            lines: Vec::new(),
            outcome: None,
        }
    }

    /// Ctrl-C (or SIGTERM): the transfer ends now, as a failure; the
    /// connection is aborted and `on_close` removes a partial download.
    pub fn interrupt(&mut self, conns: &mut Connections<'_>, signal: &str) {
        if self.outcome.is_none() {
            self.progress.finish(false);
            self.outcome = Some(Err(format!("interrupted by {signal}")));
        }
        let open: Vec<ConnId> = conns.ids().collect();
        for id in open {
            let _ = conns.abort(id);
        }
    }

    /// A download that failed leaves no partial file behind.
    pub fn remove_partial(&self) {
        if let Job::Get { temp, .. } = &self.job {
            let _ = fs::remove_file(temp);
        }
    }

    /// Ends the exchange: success or failure is decided, the connection closes.
    fn finish(&mut self, conns: &mut Connections<'_>, id: ConnId, outcome: Result<String, String>) {
        self.phase = Phase::Done;
        self.progress.finish(outcome.is_ok());
        self.outcome = Some(outcome);
        let _ = conns.close(id);
    }

    /// Queues upload bytes up to the window.
    fn pump(&mut self, conns: &mut Connections<'_>, id: ConnId) -> Result<(), String> {
        let Job::Put {
            file, size, path, ..
        } = &mut self.job
        else {
            return Ok(());
        };
        loop {
            let queued_now = conns.output_len(id).unwrap_or(0);
            self.progress
                .set(self.queued.saturating_sub(queued_now as u64));
            if self.queued == *size || queued_now >= WINDOW {
                return Ok(());
            }
            let want = (*size - self.queued).min(CHUNK as u64) as usize;
            match file.read(&mut self.chunk[..want]) {
                Ok(0) => return Err(format!("{} shrank while being sent", path.display())),
                Ok(n) => {
                    self.queued += n as u64;
                    conns
                        .send(id, &self.chunk[..n])
                        .map_err(|e| format!("send: {e}"))?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
    }

    /// The reply line has arrived.
    fn reply(&mut self, conns: &mut Connections<'_>, id: ConnId, reply: Reply) {
        let n = match reply {
            Reply::Error(message) => return self.finish(conns, id, Err(message)),
            Reply::Ok(n) => n,
        };
        match &self.job {
            Job::Get { .. } => {
                self.progress.start(n);
                self.phase = Phase::Body { size: n, left: n };
                self.complete_get(conns, id);
            }
            Job::Put {
                name, path, size, ..
            } => {
                let outcome = if n == *size && self.queued == *size {
                    Ok(format!("put {}: {n} bytes as {name}", path.display()))
                } else {
                    Err(format!("the server stored {n} bytes of {size}"))
                };
                self.finish(conns, id, outcome);
            }
            Job::List if n > MAX_LISTED => {
                let message = format!("the server announces {n} files, more than {MAX_LISTED}");
                self.finish(conns, id, Err(message));
            }
            Job::List => {
                self.phase = Phase::Lines { left: n };
                if n == 0 {
                    self.finish(conns, id, Ok(String::new()));
                }
            }
        }
    }

    /// A download whose last byte is in: the file is checked and renamed.
    fn complete_get(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        let Phase::Body { size, left: 0 } = self.phase else {
            return;
        };
        let Job::Get {
            name,
            dest,
            temp,
            file,
        } = &mut self.job
        else {
            return;
        };
        let outcome = file
            .flush()
            .and_then(|()| file.metadata())
            .map_err(|e| format!("{}: {e}", temp.display()))
            .and_then(|meta| match meta.len() {
                len if len == size => Ok(()),
                len => Err(format!("wrote {len} bytes of {size}")),
            })
            .and_then(|()| {
                fs::rename(&*temp, &*dest).map_err(|e| format!("{}: {e}", dest.display()))
            })
            .map(|()| format!("get {name}: {size} bytes -> {}", dest.display()));
        self.finish(conns, id, outcome);
    }
}

impl Handler for FileClient {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
        let request = match &self.job {
            Job::Get { name, .. } => format!("GET {name}\n"),
            Job::Put { name, size, .. } => {
                self.progress.start(*size);
                format!("PUT {name} {size}\n")
            }
            Job::List => "LIST\n".to_string(),
        };
        let _ = conns.send(id, request.as_bytes());
        if let Err(e) = self.pump(conns, id) {
            let _ = conns.abort(id);
            self.outcome = Some(Err(e));
        }
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let mut used = 0;
        while used < data.len() {
            let rest = &data[used..];
            if let Phase::Body { left, .. } = &mut self.phase {
                let n = (*left).min(rest.len() as u64) as usize;
                let Job::Get { file, temp, .. } = &mut self.job else {
                    unreachable!("a body only comes for GET")
                };
                if let Err(e) = file.write_all(&rest[..n]) {
                    let message = format!("{}: {e}", temp.display());
                    self.finish(conns, id, Err(message));
                    return data.len();
                }
                *left -= n as u64;
                let got = match self.phase {
                    Phase::Body { size, left } => size - left,
                    _ => 0,
                };
                self.progress.set(got);
                used += n;
                self.complete_get(conns, id);
                continue;
            }
            if let Phase::Done = self.phase {
                return data.len(); // anything after the end is ignored
            }
            let line = match split_line(rest) {
                Ok(Some(line)) => line,
                Ok(None) => break, // the rest of the line comes later
                Err(e) => {
                    self.finish(conns, id, Err(e));
                    return data.len();
                }
            };
            used += line.len() + 1;
            match &mut self.phase {
                Phase::Reply => match parse_reply(line) {
                    Ok(reply) => self.reply(conns, id, reply),
                    Err(e) => self.finish(conns, id, Err(e)),
                },
                Phase::Lines { left } => {
                    *left -= 1;
                    let done = *left == 0;
                    self.lines.push(String::from_utf8_lossy(line).into_owned());
                    if done {
                        self.finish(conns, id, Ok(String::new()));
                    }
                }
                Phase::Body { .. } | Phase::Done => unreachable!(),
            }
        }
        used
    }

    fn on_drained(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        if let Err(e) = self.pump(conns, id) {
            self.finish(conns, id, Err(e));
        }
    }

    fn on_close(&mut self, conns: &mut Connections<'_>, _: ConnId, reason: &CloseReason) {
        if self.outcome.is_none() {
            let detail = match self.phase {
                Phase::Body { size, left } => format!(" after {} of {size} bytes", size - left),
                _ => String::new(),
            };
            self.progress.finish(false);
            self.outcome = Some(Err(format!("connection {reason}{detail}")));
        }
        if let Some(Err(_)) = &self.outcome {
            self.remove_partial();
        }
        conns.reactor().stop();
    }
}
