//! The file transfer protocol (`docs/file-transfer.md`), shared by
//! `file_server` and `file_client`: request and reply lines, and what a
//! file name may be.
//!
//! ```text
//! client: GET name\n                 server: OK size\n <size bytes>  |  ERROR message\n
//! client: PUT name size\n <bytes>    server: OK size\n (once stored) |  ERROR message\n
//! client: LIST\n                     server: OK count\n <count lines "name size\n">
//! ```
#![allow(dead_code)]

/// The longest request or reply line, `\n` included: a 255-byte name, a
/// size and the words around them fit with room to spare.
pub const MAX_LINE: usize = 1024;

/// The longest file name, in bytes.
pub const MAX_NAME: usize = 255;

/// A client's request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Get { name: &'a str },
    Put { name: &'a str, size: u64 },
    List,
}

/// Parses one request line (without its `\n`; a `\r` before it is
/// allowed, for `nc` and telnet users). The error is the text of the
/// `ERROR` reply.
pub fn parse_request(line: &[u8]) -> Result<Request<'_>, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|_| "request is not UTF-8".to_string())?;
    let mut words = line.split(' ');
    let request = match (words.next(), words.next(), words.next()) {
        (Some("GET"), Some(name), None) => Request::Get {
            name: check_name(name)?,
        },
        (Some("PUT"), Some(name), Some(size)) => Request::Put {
            name: check_name(name)?,
            size: parse_size(size)?,
        },
        (Some("LIST"), None, None) => Request::List,
        (Some("GET" | "PUT" | "LIST"), ..) => {
            return Err("usage: GET name | PUT name size | LIST".to_string());
        }
        _ => return Err("unknown request (GET, PUT or LIST)".to_string()),
    };
    if words.next().is_some() {
        return Err("usage: GET name | PUT name size | LIST".to_string());
    }
    Ok(request)
}

/// A size: decimal digits only (no sign, no spaces), at most `u64::MAX`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad size '{text}'"));
    }
    text.parse()
        .map_err(|_| format!("size {text} is too large"))
}

/// A file name: one path component of 1 to 255 bytes of UTF-8, without
/// `/`, NUL, control characters or white space, not starting with `.`.
///
/// This is the whole defence against the seed's bug, where
/// `os.path.join(directory, filename)` with `../../etc/passwd` (or an
/// absolute path, which `join` lets replace the directory) reads any file
/// the server can: a name that is a single component and cannot be `.` or
/// `..` cannot leave the directory. (The server also refuses symbolic links,
/// so a link planted in the directory leads nowhere.)
pub fn check_name(name: &str) -> Result<&str, String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("bad name: 1 to {MAX_NAME} bytes"));
    }
    if name.starts_with('.') {
        return Err("bad name: may not start with '.'".to_string());
    }
    if name
        .chars()
        .any(|c| c == '/' || c == '\0' || c.is_control() || c.is_whitespace())
    {
        return Err("bad name: no '/', control characters or spaces".to_string());
    }
    Ok(name)
}

/// A server's reply line: `OK n` or `ERROR message`.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Ok(u64),
    Error(String),
}

/// Parses a reply line (without its `\n`).
pub fn parse_reply(line: &[u8]) -> Result<Reply, String> {
    let line = String::from_utf8_lossy(line);
    if let Some(message) = line.strip_prefix("ERROR ") {
        return Ok(Reply::Error(message.to_string()));
    }
    match line.strip_prefix("OK ") {
        Some(n) => Ok(Reply::Ok(parse_size(n)?)),
        None => Err(format!("unexpected reply: {}", line.escape_debug())),
    }
}

/// The line that ends at the first `\n` of `data` (without the `\n`: the
/// next line starts `len + 1` bytes in); `Ok(None)` if no `\n` has arrived
/// yet, an error past [`MAX_LINE`].
pub fn split_line(data: &[u8]) -> Result<Option<&[u8]>, String> {
    match data.iter().position(|&b| b == b'\n') {
        Some(end) if end < MAX_LINE => Ok(Some(&data[..end])),
        None if data.len() < MAX_LINE => Ok(None),
        _ => Err(format!("line longer than {MAX_LINE} bytes")),
    }
}
