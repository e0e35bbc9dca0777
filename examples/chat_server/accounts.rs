//! Accounts for the secure chat: a file of `name:hash` lines, argon2id
//! hashes, and the one helper thread that checks passwords.
//!
//! Checking an argon2id hash is deliberately slow (tens of milliseconds in
//! a release build, more in a debug one): on the loop it would stall every
//! user for that long. So it runs on one helper thread, the one thread this
//! server has besides the loop; the result comes back through the
//! service's `ServiceHandle`, as a job the loop runs between events. The
//! queue to the thread is bounded: when it is full, a login waits in the
//! chat's own queue (at most one per connection) rather than block.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::mpsc::{self, SyncSender, TrySendError};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use log::warn;
use reactor::service::{ConnId, ServiceHandle};

use crate::chat::Chat;
use crate::protocol::{check_name, fold};

/// Logins waiting for the helper thread at once; more wait in the chat.
const QUEUE: usize = 16;

/// The registered names and their hashes.
pub struct Accounts {
    /// Folded name to the PHC string of its argon2id hash.
    hashes: HashMap<String, String>,
}

impl Accounts {
    /// Reads a users file: `name:hash` lines; blank lines and `#` comments
    /// are skipped. Every hash must be an argon2id PHC string: a file that
    /// holds a plaintext password, or any other hash, is refused whole.
    pub fn load(path: &Path) -> io::Result<Accounts> {
        let text = fs::read_to_string(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let mut hashes = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}:{}: {why}", path.display(), number + 1),
                )
            };
            let (name, hash) = line.split_once(':').ok_or_else(|| bad("not name:hash"))?;
            check_name(name, "name").map_err(|e| bad(&e))?;
            let parsed = PasswordHash::new(hash).map_err(|_| bad("not an argon2id hash"))?;
            // A whole hash: the algorithm, and a salt and a digest to check
            // against (a truncated line would refuse every password).
            if parsed.algorithm.as_str() != "argon2id"
                || parsed.salt.is_none()
                || parsed.hash.is_none()
            {
                return Err(bad("not an argon2id hash"));
            }
            if hashes.insert(fold(name), hash.to_string()).is_some() {
                return Err(bad(&format!(
                    "{name} is registered twice (names ignore case)"
                )));
            }
        }
        Ok(Accounts { hashes })
    }

    /// The hash of a registered name, if it is one.
    pub fn hash_of(&self, name: &str) -> Option<&str> {
        self.hashes.get(&fold(name)).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }
}

/// The `name:hash` line for a users file: argon2id with the crate's default
/// parameters and a random salt.
pub fn hash_line(name: &str, password: &str) -> Result<String, String> {
    check_name(name, "name")?;
    let salt = SaltString::generate(&mut OsRng);
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| format!("hashing failed: {e}"))?;
    Ok(format!("{name}:{hash}"))
}

/// One password to check.
pub struct Check {
    pub id: ConnId,
    pub name: Box<str>,
    pub password: String,
    pub hash: String,
}

/// The helper thread, and logins waiting for room in its queue.
pub struct Verifier {
    jobs: SyncSender<Check>,
    waiting: VecDeque<Check>,
}

impl Verifier {
    /// Starts the helper thread. Results come back as jobs on the loop,
    /// through `chat` (the service's handle).
    pub fn start(chat: ServiceHandle<Chat>) -> io::Result<Verifier> {
        let (jobs, queue) = mpsc::sync_channel::<Check>(QUEUE);
        std::thread::Builder::new()
            .name("password-check".into())
            .spawn(move || {
                for check in queue {
                    let ok = PasswordHash::new(&check.hash).is_ok_and(|hash| {
                        Argon2::default()
                            .verify_password(check.password.as_bytes(), &hash)
                            .is_ok()
                    });
                    let (id, name) = (check.id, check.name);
                    // The reactor is gone: nobody is waiting any more.
                    if chat
                        .call(move |chat, conns| chat.password_checked(conns, id, &name, ok))
                        .is_err()
                    {
                        break;
                    }
                }
            })?;
        Ok(Verifier {
            jobs,
            waiting: VecDeque::new(),
        })
    }

    /// Hands a check to the thread, or queues it if the thread is busy.
    pub fn submit(&mut self, check: Check) {
        if !self.waiting.is_empty() {
            self.waiting.push_back(check);
            return;
        }
        match self.jobs.try_send(check) {
            Ok(()) => {}
            Err(TrySendError::Full(check)) => self.waiting.push_back(check),
            Err(TrySendError::Disconnected(_)) => warn!("the password checker has stopped"),
        }
    }

    /// A result came back: room for the next waiting check.
    pub fn next(&mut self) {
        while let Some(check) = self.waiting.pop_front() {
            match self.jobs.try_send(check) {
                Ok(()) => {}
                Err(TrySendError::Full(check)) => {
                    self.waiting.push_front(check);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }

    /// Forgets a waiting check of a connection that closed.
    pub fn forget(&mut self, id: ConnId) {
        self.waiting.retain(|check| check.id != id);
    }
}

/// Reads a password from standard input: a line, without its newline. On a
/// terminal, twice and without echo (they must match); from a pipe, once.
pub fn read_password_twice() -> io::Result<String> {
    use std::io::IsTerminal;
    if !io::stdin().is_terminal() {
        return read_line();
    }
    let first = read_hidden("Password: ")?;
    let second = read_hidden("Again: ")?;
    if first != second {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the two passwords differ",
        ));
    }
    Ok(first)
}

fn read_line() -> io::Result<String> {
    let mut line = String::new();
    io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an empty password",
        ));
    }
    Ok(password)
}

/// A line from the terminal with echo off (restored even if reading fails).
fn read_hidden(prompt: &str) -> io::Result<String> {
    use std::io::Write;
    eprint!("{prompt}");
    io::stderr().flush()?;
    let _echo = crate::common::EchoOff::new()?;
    let line = read_line();
    eprintln!();
    line
}
