//! The snapshot: the whole keyspace in one file of our own format, written
//! on `SAVE`, `SHUTDOWN` and SIGTERM, loaded at start, and sent to a
//! replica for a full synchronisation.
//!
//! # Format, version 1 (all integers little-endian)
//!
//! ```text
//! "KVSNAP" (6 bytes)  version: u16 = 1  count: u64
//! count entries:
//!     kind: u8 (0 string, 1 hash, 2 list)
//!     expire_at: u64 (ms since the Unix epoch; 0 = none)
//!     key: u32 length + bytes
//!     string: u32 length + bytes
//!     hash:   u32 fields, then each field and value as u32 length + bytes
//!     list:   u32 elements, then each as u32 length + bytes
//! crc: u32, CRC-32 (IEEE) of every byte before it
//! ```
//!
//! A file is checked whole (length, checksum, magic, version) and parsed
//! into a new keyspace before anything is replaced: a corrupt or unknown
//! file is an error, never half loaded.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::db::{Db, Value};

const MAGIC: &[u8; 6] = b"KVSNAP";
const VERSION: u16 = 1;

/// CRC-32 (IEEE 802.3, as zlib's `crc32`), bit by bit through a table made
/// on first use: a few lines instead of a dependency.
pub fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The keyspace as a snapshot (keys already dead at `now` are left out).
pub fn encode(db: &Db, now: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(db.used + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    let count_at = out.len();
    out.extend_from_slice(&0u64.to_le_bytes());
    let mut count: u64 = 0;
    for (key, entry) in db.iter(now) {
        count += 1;
        let kind = match &entry.value {
            Value::Str(_) => 0u8,
            Value::Hash(_) => 1,
            Value::List(_) => 2,
        };
        out.push(kind);
        out.extend_from_slice(&entry.expire_at.unwrap_or(0).to_le_bytes());
        put_bytes(&mut out, key);
        match &entry.value {
            Value::Str(s) => put_bytes(&mut out, s),
            Value::Hash(h) => {
                out.extend_from_slice(&(h.len() as u32).to_le_bytes());
                for (f, v) in h {
                    put_bytes(&mut out, f);
                    put_bytes(&mut out, v);
                }
            }
            Value::List(l) => {
                out.extend_from_slice(&(l.len() as u32).to_le_bytes());
                for v in l {
                    put_bytes(&mut out, v);
                }
            }
        }
    }
    out[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A cursor over a snapshot's bytes that never reads past the end.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or("truncated")?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
}

/// Parses a snapshot into a new keyspace; keys dead at `now` are skipped.
///
/// # Errors
///
/// A one-line reason: too short, bad checksum, not a snapshot, an unknown
/// version, or a malformed entry.
pub fn decode(data: &[u8], now: u64) -> Result<Db, String> {
    if data.len() < MAGIC.len() + 2 + 8 + 4 {
        return Err("too short to be a snapshot".into());
    }
    let (body, crc) = data.split_at(data.len() - 4);
    if &body[..6] != MAGIC {
        return Err("not a kv_server snapshot (bad magic)".into());
    }
    let version = u16::from_le_bytes([body[6], body[7]]);
    if version != VERSION {
        return Err(format!(
            "unknown snapshot version {version} (this kv_server reads version {VERSION})"
        ));
    }
    if crc32(body) != u32::from_le_bytes(crc.try_into().unwrap_or_default()) {
        return Err("checksum mismatch: the file is corrupt".into());
    }
    let mut r = Reader { data: body, pos: 8 };
    let count = r.u64()?;
    let mut db = Db::new();
    for _ in 0..count {
        let kind = r.u8()?;
        let expire_at = r.u64()?;
        let key = r.bytes()?;
        let value = match kind {
            0 => Value::Str(r.bytes()?),
            1 => {
                let n = r.u32()?;
                let mut h = HashMap::new();
                for _ in 0..n {
                    let f = r.bytes()?;
                    h.insert(f, r.bytes()?);
                }
                Value::Hash(h)
            }
            2 => {
                let n = r.u32()?;
                let mut l = VecDeque::new();
                for _ in 0..n {
                    l.push_back(r.bytes()?);
                }
                Value::List(l)
            }
            other => return Err(format!("unknown value kind {other}")),
        };
        let expire_at = (expire_at != 0).then_some(expire_at);
        if expire_at.is_some_and(|t| t <= now) {
            continue;
        }
        db.set(&key, value, expire_at);
    }
    if r.pos != body.len() {
        return Err("trailing bytes after the last entry".into());
    }
    Ok(db)
}

/// Writes the snapshot to `path` safely: to `path.tmp`, synced, then
/// renamed over `path`, so a crash leaves the old file or the new one,
/// never half of one.
pub fn save(path: &Path, db: &Db, now: u64) -> io::Result<usize> {
    let data = encode(db, now);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&data)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    Ok(data.len())
}

/// Loads `path`, or `Ok(None)` if there is no such file.
///
/// # Errors
///
/// Reading it failed, or it is not a valid snapshot (with the reason).
pub fn load(path: &Path, now: u64) -> io::Result<Option<Db>> {
    let data = match fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    decode(&data, now)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_zlib_s() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn every_type_round_trips_and_any_flipped_byte_is_refused() {
        let mut db = Db::new();
        db.set(b"s", Value::Str(b"v".to_vec()), Some(u64::MAX / 2));
        db.set(
            b"h",
            Value::Hash(HashMap::from([(b"f".to_vec(), b"1".to_vec())])),
            None,
        );
        db.set(b"l", Value::List(VecDeque::from([b"a".to_vec()])), None);
        db.set(b"dead", Value::Str(vec![]), Some(5));
        let bytes = encode(&db, 10);
        let back = decode(&bytes, 10).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back.used, db.used - Db::new_entry_cost(b"dead", true));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(decode(&bad, 10).is_err(), "flipped byte {i} accepted");
        }
        assert!(decode(&bytes[..bytes.len() - 1], 10).is_err());
    }
}
