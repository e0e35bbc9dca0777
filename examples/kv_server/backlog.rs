//! The replication backlog: the last bytes of the replication stream, so
//! that a replica that was away briefly gets only what it missed instead of
//! a full copy (Redis's `repl-backlog-size`).

use std::collections::VecDeque;

/// A bounded window of the replication stream, ending at the current
/// offset.
#[derive(Debug)]
pub struct Backlog {
    bytes: VecDeque<u8>,
    capacity: usize,
    /// The stream offset just past the last byte held.
    end: u64,
}

impl Backlog {
    /// An empty backlog of at most `capacity` bytes, ending at `offset`.
    pub fn new(capacity: usize, offset: u64) -> Backlog {
        Backlog {
            bytes: VecDeque::new(),
            capacity,
            end: offset,
        }
    }

    /// Appends stream bytes; the oldest are dropped past the capacity.
    pub fn append(&mut self, data: &[u8]) {
        self.end += data.len() as u64;
        if data.len() >= self.capacity {
            self.bytes.clear();
            self.bytes.extend(&data[data.len() - self.capacity..]);
            return;
        }
        let over = (self.bytes.len() + data.len()).saturating_sub(self.capacity);
        self.bytes.drain(..over);
        self.bytes.extend(data);
    }

    /// The offset of the first byte held.
    pub fn start(&self) -> u64 {
        self.end - self.bytes.len() as u64
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Everything from `offset` to the end, if the backlog still holds it.
    pub fn since(&self, offset: u64) -> Option<Vec<u8>> {
        if offset < self.start() || offset > self.end {
            return None;
        }
        let skip = (offset - self.start()) as usize;
        Some(self.bytes.iter().skip(skip).copied().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::Backlog;

    #[test]
    fn keeps_the_last_bytes_and_says_what_it_no_longer_has() {
        let mut b = Backlog::new(8, 100);
        b.append(b"abcdef");
        assert_eq!(b.since(100).as_deref(), Some(&b"abcdef"[..]));
        b.append(b"ghijkl");
        assert_eq!(b.start(), 104);
        assert_eq!(b.since(104).as_deref(), Some(&b"efghijkl"[..]));
        assert_eq!(b.since(103), None, "dropped");
        assert_eq!(b.since(112).as_deref(), Some(&b""[..]));
        assert_eq!(b.since(113), None, "not yet written");
        b.append(b"0123456789");
        assert_eq!(b.since(114).as_deref(), Some(&b"23456789"[..]));
    }
}
