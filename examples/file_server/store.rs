//! The served directory: which names exist (for `--max-files`), files
//! opened for reading, uploads under temporary names, and the rename that
//! publishes an upload.
//!
//! Every path here is `dir` joined with a name that
//! [`check_name`](crate::protocol::check_name) accepted (one component, not
//! `.` or `..`) or with a temporary name made here, so nothing can reach
//! outside `dir`. Symbolic links are refused when a file is opened
//! (`O_NOFOLLOW`), and so are FIFOs and devices (`O_NONBLOCK`, then a check
//! that the file is a regular one): a FIFO would block the loop in `open`.
//!
//! Disk I/O here is ordinary blocking file I/O, done in the loop's thread
//! in bounded pieces (one 64 KiB chunk per read or write): reads of regular
//! files come from the page cache and do not wait for a network, and epoll
//! cannot wait on a regular file anyway. The one helper thread the
//! developers' guide would allow is not needed at these sizes.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use log::{info, warn};

use crate::protocol::check_name;

/// Temporary names start with this (a `.`, which no served name may), and
/// end in [`TEMP_SUFFIX`].
const TEMP_PREFIX: &str = ".upload.";
const TEMP_SUFFIX: &str = ".part";

/// Whether the process named in a temporary name (`.upload.PID.N.part`)
/// is gone. A name we cannot read is taken as left behind. (A pid reused
/// by an unrelated process keeps a stale file until that one exits.)
fn writer_is_gone(temp: &str) -> bool {
    let pid = temp
        .strip_prefix(TEMP_PREFIX)
        .and_then(|rest| rest.split('.').next())
        .and_then(|pid| pid.parse::<libc::pid_t>().ok());
    match pid {
        // Signal 0 asks whether the process exists, sending nothing.
        // SAFETY: kill with signal 0 has no effect on the target.
        Some(pid) if pid > 0 => {
            let alive = unsafe { libc::kill(pid, 0) } == 0
                || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
            // Our own pid is a previous server's that had it (a container
            // restarted): nothing of ours exists yet when the store opens.
            !alive || pid == std::process::id() as libc::pid_t
        }
        _ => true,
    }
}

/// The directory and what it holds.
pub struct Store {
    dir: PathBuf,
    /// Names of the regular files in `dir` that are valid names.
    names: HashSet<String>,
    /// Uploads in progress to names not in `names`: they count against
    /// `max_files` too, so that parallel uploads cannot pass it.
    new_uploads: usize,
    max_files: usize,
    /// Makes temporary names unique.
    next_temp: u64,
}

/// An upload in progress: its temporary file, and where it goes when
/// complete.
pub struct Upload {
    pub file: File,
    temp: PathBuf,
    pub name: String,
    /// The name did not exist when the upload started.
    new: bool,
}

impl Store {
    /// Opens `dir`: reads the names it holds and removes temporary files
    /// that a server stopped mid-upload left behind.
    pub fn open(dir: &Path, max_files: usize) -> io::Result<Store> {
        let mut names = HashSet::new();
        let entries = fs::read_dir(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        for entry in entries {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX) {
                // Only what a server that has gone left behind: another
                // server may be serving this directory, mid-upload.
                if writer_is_gone(&name) {
                    info!("removing {name}, an upload left unfinished");
                    let _ = fs::remove_file(entry.path());
                } else {
                    info!("leaving {name}: the server writing it is running");
                }
            } else if check_name(&name).is_ok() && entry.file_type()?.is_file() {
                names.insert(name);
            }
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            names,
            new_uploads: 0,
            max_files,
            next_temp: 0,
        })
    }

    /// Opens `name` for reading and says its size.
    pub fn open_file(&self, name: &str) -> Result<(File, u64), String> {
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(self.dir.join(name))
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => "no such file".to_string(),
                _ if e.raw_os_error() == Some(libc::ELOOP) => "no such file".to_string(),
                _ => format!("cannot open: {}", plain(&e)),
            })?;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot open: {}", plain(&e)))?;
        if !meta.is_file() {
            return Err("no such file".to_string());
        }
        Ok((file, meta.len()))
    }

    /// Starts an upload to `name`, under a temporary name.
    pub fn begin_upload(&mut self, name: &str) -> Result<Upload, String> {
        let new = !self.names.contains(name);
        if new && self.names.len() + self.new_uploads >= self.max_files {
            return Err(format!("too many files (at most {})", self.max_files));
        }
        self.next_temp += 1;
        let temp = self.dir.join(format!(
            "{TEMP_PREFIX}{}.{}{TEMP_SUFFIX}",
            std::process::id(),
            self.next_temp
        ));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| format!("cannot store: {}", plain(&e)))?;
        if new {
            self.new_uploads += 1;
        }
        Ok(Upload {
            file,
            temp,
            name: name.to_string(),
            new,
        })
    }

    /// Publishes a complete upload: renamed over `name` in one step, so a
    /// reader sees the old file or the new one, never a mix.
    pub fn finish_upload(&mut self, upload: Upload) -> Result<(), String> {
        if upload.new {
            self.new_uploads -= 1;
        }
        match fs::rename(&upload.temp, self.dir.join(&upload.name)) {
            Ok(()) => {
                self.names.insert(upload.name);
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_file(&upload.temp);
                Err(format!("cannot store: {}", plain(&e)))
            }
        }
    }

    /// Drops an upload that did not complete: no partial file remains.
    pub fn abandon_upload(&mut self, upload: Upload) {
        if upload.new {
            self.new_uploads -= 1;
        }
        drop(upload.file);
        if let Err(e) = fs::remove_file(&upload.temp) {
            warn!("cannot remove {}: {e}", upload.temp.display());
        }
    }

    /// Every served file, `name size`, sorted by name.
    pub fn list(&self) -> Result<Vec<(String, u64)>, String> {
        let entries = fs::read_dir(&self.dir).map_err(|e| format!("cannot list: {}", plain(&e)))?;
        let mut files = Vec::new();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if check_name(&name).is_err() {
                continue;
            }
            // The entry's own metadata: a symbolic link is not followed.
            match entry.metadata() {
                Ok(meta) if meta.is_file() => files.push((name, meta.len())),
                _ => {}
            }
        }
        files.sort();
        Ok(files)
    }
}

/// An I/O error's text without the `(os error N)` suffix, for a reply.
fn plain(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}
