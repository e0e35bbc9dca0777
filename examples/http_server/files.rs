//! The site: mapping a decoded request path to a file under the root, and
//! never outside it; small files kept in memory; content types; ranges.
//!
//! Safety is by construction, in three steps that each close one way out:
//! the path was percent-decoded once and refused if it held `..`, an
//! encoded separator or a NUL (`reactor::http::decode_path`); dot-files are
//! not served; and the file's canonical path (symlinks resolved) must lie
//! under the root's canonical path, so a symlink pointing out is a 403.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use reactor::http;

/// How long a cached file is served before its file is looked at again
/// (as nginx's `open_file_cache_valid`): an edit shows within a second,
/// and a hit costs no system call.
const REVALIDATE: Duration = Duration::from_secs(1);

/// A file held in memory, with what its responses say about it.
#[derive(Debug)]
pub struct CachedFile {
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub modified: SystemTime,
    pub last_modified: String,
    /// The fields of a whole-file answer, made once (see `file_fields`).
    pub fields: String,
    checked: Cell<Instant>,
}

/// What a path names: a file, or a directory to redirect to.
#[derive(Debug)]
pub enum Found {
    File(Resource),
    /// A directory asked for without its trailing slash: the same path
    /// with one is where to go.
    Redirect,
}

/// A file to serve.
#[derive(Debug)]
pub enum Resource {
    /// A file small enough to keep, in memory.
    Cached(Rc<CachedFile>),
    /// A file to stream from disk.
    Disk {
        file: File,
        len: u64,
        content_type: &'static str,
        modified: SystemTime,
        last_modified: String,
    },
}

/// The root and the small-file cache.
#[derive(Debug)]
pub struct Site {
    root: PathBuf,
    cache: HashMap<String, Rc<CachedFile>>,
    cached_bytes: usize,
    /// Files up to this size are kept in memory (0: none).
    pub small_file: usize,
    /// The most bytes the cache holds in all.
    pub cache_limit: usize,
}

impl Site {
    /// A site serving `root`, which must be a directory.
    pub fn new(root: &Path, small_file: usize, cache_limit: usize) -> io::Result<Site> {
        let root = fs::canonicalize(root)
            .map_err(|e| io::Error::new(e.kind(), format!("root {}: {e}", root.display())))?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("root {} is not a directory", root.display()),
            ));
        }
        Ok(Site {
            root,
            cache: HashMap::new(),
            cached_bytes: 0,
            small_file,
            cache_limit,
        })
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Finds what `relative` (a decoded path without its leading `/`) names;
    /// `slash` says whether the request path ended in `/`. Errors are the
    /// status to answer with.
    pub fn open(&mut self, relative: &str, slash: bool) -> Result<Found, u16> {
        // `a` and `a/` are different requests (a redirect, a directory's
        // index), so the slash is part of the cache's key.
        // (Borrowed for the common case, a file: no allocation per hit.)
        let key: Cow<'_, str> = if slash {
            Cow::Owned(format!("{relative}/"))
        } else {
            Cow::Borrowed(relative)
        };
        if let Some(hit) = self.cache.get(key.as_ref()) {
            if hit.checked.get().elapsed() < REVALIDATE {
                return Ok(Found::File(Resource::Cached(Rc::clone(hit))));
            }
            // Looked at again from scratch: gone, changed or moved, it
            // must not stay in the cache.
            self.forget(&key);
        }
        let mut path = self.inside_root(&self.root.join(relative))?;
        let mut meta = fs::metadata(&path).map_err(status_of)?;
        if meta.is_dir() {
            if !slash && !relative.is_empty() {
                return Ok(Found::Redirect);
            }
            path = self.inside_root(&path.join("index.html"))?;
            meta = fs::metadata(&path).map_err(status_of)?;
        } else if slash {
            // A file is not a directory: `/index.html/` names nothing.
            return Err(404);
        }
        if !meta.is_file() {
            return Err(404);
        }
        let mut file = File::open(&path).map_err(status_of)?;
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let content_type = content_type(&path);
        let last_modified = http::format_date(modified);
        let len = meta.len();
        if len as usize <= self.small_file && self.cached_bytes + len as usize <= self.cache_limit {
            let mut body = Vec::with_capacity(len as usize);
            file.read_to_end(&mut body).map_err(status_of)?;
            let cached = Rc::new(CachedFile {
                body,
                content_type,
                modified,
                fields: file_fields(&last_modified),
                last_modified,
                checked: Cell::new(Instant::now()),
            });
            self.cached_bytes += cached.body.len();
            self.cache.insert(key.into_owned(), Rc::clone(&cached));
            return Ok(Found::File(Resource::Cached(cached)));
        }
        Ok(Found::File(Resource::Disk {
            file,
            len,
            content_type,
            modified,
            last_modified,
        }))
    }

    fn forget(&mut self, relative: &str) {
        if let Some(old) = self.cache.remove(relative) {
            self.cached_bytes -= old.body.len();
        }
    }

    /// `path` with every symlink resolved, if that is still under the root
    /// and names no dot-file there (a symlink to `.env` is still `.env`).
    fn inside_root(&self, path: &Path) -> Result<PathBuf, u16> {
        let real = fs::canonicalize(path).map_err(status_of)?;
        let Ok(inside) = real.strip_prefix(&self.root) else {
            log::warn!("refused {}: resolves outside the root", path.display());
            return Err(403);
        };
        let hidden = inside.components().any(|part| {
            let name = part.as_os_str().to_string_lossy();
            name.starts_with('.') && name != ".well-known"
        });
        if hidden {
            log::info!("refused {}: a dot-file", path.display());
            return Err(404);
        }
        Ok(real)
    }
}

/// The fields every file answer carries.
pub fn file_fields(last_modified: &str) -> String {
    format!("Last-Modified: {last_modified}\r\nAccept-Ranges: bytes\r\n")
}

/// The status for a failed file operation. What any client can cause (a
/// name too long, a symlink loop) is its error, not the server's.
fn status_of(error: io::Error) -> u16 {
    match (error.kind(), error.raw_os_error()) {
        (io::ErrorKind::NotFound | io::ErrorKind::NotADirectory, _) => 404,
        (_, Some(libc::ELOOP)) => 404,
        (_, Some(libc::ENAMETOOLONG)) => 414,
        (io::ErrorKind::PermissionDenied, _) => 403,
        _ => {
            log::error!("file error: {error}");
            500
        }
    }
}

/// The media type for a file, from its extension.
pub fn content_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match extension.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" | "md" | "rs" | "toml" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "woff2" => "font/woff2",
        "mp4" => "video/mp4",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        _ => "application/octet-stream",
    }
}

/// What a `Range` field asks of a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAsk {
    /// No usable range: send the whole file (no field, several ranges, or
    /// a syntax we ignore, as RFC 9110 §14.2 allows).
    Whole,
    /// Bytes `start..end` (end exclusive).
    Part { start: u64, end: u64 },
    /// Outside the file: 416.
    Unsatisfiable,
}

/// Reads a `Range` field (`bytes=0-99`, `bytes=100-`, `bytes=-100`).
pub fn range(value: Option<&[u8]>, len: u64) -> RangeAsk {
    // The unit is case-insensitive (RFC 9110 §14.1).
    let Some(spec) = value
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
        .and_then(|v| {
            v.get(..6)
                .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
                .map(|_| &v[6..])
        })
    else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    // Digits only; a number too large for a u64 is as good as the largest
    // (a last position past the end is clamped to it).
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().unwrap_or(u64::MAX))
    };
    match (first, last) {
        ("", suffix) => match number(suffix) {
            Some(0) => RangeAsk::Unsatisfiable,
            Some(n) if len > 0 => RangeAsk::Part {
                start: len.saturating_sub(n),
                end: len,
            },
            Some(_) => RangeAsk::Unsatisfiable,
            None => RangeAsk::Whole,
        },
        (first, last) => {
            let Some(start) = number(first) else {
                return RangeAsk::Whole;
            };
            let end = match last {
                "" => len,
                last => match number(last) {
                    Some(last) if last >= start => last.saturating_add(1).min(len),
                    _ => return RangeAsk::Whole,
                },
            };
            if start >= len {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Part { start, end }
            }
        }
    }
}

/// Whether an `If-Modified-Since` value says the client's copy, last
/// modified at `modified`, is current (compared in whole seconds, the
/// resolution of HTTP dates).
pub fn not_modified(since: Option<&[u8]>, modified: SystemTime) -> bool {
    let Some(since) = since
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(http::parse_date)
    else {
        return false;
    };
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    secs(modified) <= secs(since)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(
            range(Some(b"bytes=0-9"), 100),
            RangeAsk::Part { start: 0, end: 10 }
        );
        assert_eq!(
            range(Some(b"bytes=90-"), 100),
            RangeAsk::Part {
                start: 90,
                end: 100
            }
        );
        assert_eq!(
            range(Some(b"bytes=-10"), 100),
            RangeAsk::Part {
                start: 90,
                end: 100
            }
        );
        assert_eq!(
            range(Some(b"bytes=50-500"), 100),
            RangeAsk::Part {
                start: 50,
                end: 100
            }
        );
        assert_eq!(range(Some(b"bytes=100-"), 100), RangeAsk::Unsatisfiable);
        assert_eq!(range(Some(b"bytes=0-1,5-6"), 100), RangeAsk::Whole);
        assert_eq!(range(Some(b"bytes=9-1"), 100), RangeAsk::Whole);
        assert_eq!(range(Some(b"items=0-1"), 100), RangeAsk::Whole);
        assert_eq!(
            range(Some(b"Bytes=0-1"), 100),
            RangeAsk::Part { start: 0, end: 2 }
        );
        assert_eq!(
            range(Some(b"bytes=0-99999999999999999999"), 100),
            RangeAsk::Part { start: 0, end: 100 }
        );
        assert_eq!(
            range(Some(b"bytes=0-0"), 100),
            RangeAsk::Part { start: 0, end: 1 }
        );
        assert_eq!(range(Some(b"bytes=-0"), 100), RangeAsk::Unsatisfiable);
        assert_eq!(range(None, 100), RangeAsk::Whole);
    }
}
