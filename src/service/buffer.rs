//! Output buffers: [`OutputQueue`], a connection's queued bytes as a list of
//! chunks, and [`BufferPool`], where emptied chunks wait to be reused.
//!
//! Why chunks and not one growing `Vec<u8>`: appending to a contiguous buffer
//! copies the whole buffer each time it grows, and taking bytes off its front
//! moves the rest down. A queue of fixed-size chunks appends in place and
//! drops written chunks whole, and several chunks go out in one `writev`.
//! A chunk is either owned bytes (copied in by `send`) or a shared,
//! reference-counted slice (`send_shared`), so one broadcast message can sit
//! in a thousand queues without a thousand copies.
//!
//! Why a pool: a connection holds a queue only while it has output. When the
//! queue empties, its chunk and the queue itself go back to the pool, so an
//! idle connection holds no buffer memory, and steady traffic (an echo
//! answered in every turn) takes buffers from the pool and gives them back
//! without calling the allocator.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

/// The size of a pooled buffer.
pub(crate) const CHUNK: usize = 16 * 1024;

/// The size of a small pooled buffer: an empty queue starts in one, so a
/// connection sent a short message (an echo, a chat line, a notice to a
/// thousand room members) holds 1 KiB while it waits, not 16.
pub(crate) const SMALL_CHUNK: usize = 1024;

/// Most slices handed to one `writev` (the kernel allows 1024).
const MAX_SLICES: usize = 64;

/// One piece of queued output.
#[derive(Debug)]
pub(crate) enum Chunk {
    Owned(Vec<u8>),
    Shared(Rc<[u8]>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(s) => s,
        }
    }
}

/// A connection's queued output.
#[derive(Debug, Default)]
pub(crate) struct OutputQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    head: usize,
    /// Bytes queued and not yet written.
    len: usize,
}

impl OutputQueue {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `data` in, filling the last owned chunk before taking another.
    pub(crate) fn push_bytes(&mut self, mut data: &[u8], pool: &mut BufferPool) {
        self.len += data.len();
        if let Some(Chunk::Owned(last)) = self.chunks.back_mut() {
            let room = last.capacity() - last.len();
            let take = room.min(data.len());
            last.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        if data.is_empty() {
            return;
        }
        let chunk = if data.len() >= CHUNK {
            // A large message gets one exactly sized chunk rather than a
            // string of pooled ones.
            data.to_vec()
        } else {
            let mut chunk = if self.chunks.is_empty() && data.len() <= SMALL_CHUNK {
                pool.take_small()
            } else {
                pool.take()
            };
            chunk.extend_from_slice(data);
            chunk
        };
        self.chunks.push_back(Chunk::Owned(chunk));
    }

    /// Queues a shared chunk without copying it.
    pub(crate) fn push_shared(&mut self, data: Rc<[u8]>) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        self.chunks.push_back(Chunk::Shared(data));
    }

    /// Writes up to `limit` bytes with one `write` (one chunk) or one
    /// `writev` (several). Returns the bytes written and the bytes offered,
    /// so the caller can tell a short write.
    pub(crate) fn write_to<W: Write>(
        &self,
        out: &mut W,
        limit: usize,
    ) -> io::Result<(usize, usize)> {
        let mut chunks = self.chunks.iter();
        let Some(first) = chunks.next() else {
            return Ok((0, 0));
        };
        let first = &first.bytes()[self.head..];
        if self.chunks.len() == 1 || first.len() >= limit {
            let slice = &first[..first.len().min(limit)];
            return Ok((out.write(slice)?, slice.len()));
        }
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        slices[0] = IoSlice::new(first);
        let mut offered = first.len();
        let mut count = 1;
        for chunk in chunks {
            if count == MAX_SLICES || offered >= limit {
                break;
            }
            let bytes = chunk.bytes();
            let bytes = &bytes[..bytes.len().min(limit - offered)];
            slices[count] = IoSlice::new(bytes);
            offered += bytes.len();
            count += 1;
        }
        Ok((out.write_vectored(&slices[..count])?, offered))
    }

    /// Drops `n` written bytes off the front, returning emptied chunks to the
    /// pool.
    pub(crate) fn consume(&mut self, mut n: usize, pool: &mut BufferPool) {
        debug_assert!(n <= self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.bytes().len() - self.head;
            if n < left {
                self.head += n;
                return;
            }
            n -= left;
            self.head = 0;
            if let Some(Chunk::Owned(buffer)) = self.chunks.pop_front() {
                pool.give(buffer);
            }
        }
    }

    /// Drops everything queued.
    pub(crate) fn clear(&mut self, pool: &mut BufferPool) {
        for chunk in self.chunks.drain(..) {
            if let Chunk::Owned(buffer) = chunk {
                pool.give(buffer);
            }
        }
        self.head = 0;
        self.len = 0;
    }
}

/// Emptied buffers and output queues, kept for reuse up to a limit.
#[derive(Debug)]
pub(crate) struct BufferPool {
    buffers: Vec<Vec<u8>>,
    small: Vec<Vec<u8>>,
    // Boxed on purpose: a connection holds its queue as an 8-byte
    // `Option<Box<_>>`, and pooling the boxes saves their allocation too.
    #[allow(clippy::vec_box)]
    queues: Vec<Box<OutputQueue>>,
    limit: usize,
}

impl BufferPool {
    pub(crate) fn new(limit: usize) -> BufferPool {
        BufferPool {
            buffers: Vec::new(),
            small: Vec::new(),
            queues: Vec::new(),
            limit,
        }
    }

    /// An empty buffer with room for [`CHUNK`] bytes.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.buffers
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(CHUNK))
    }

    /// An empty buffer with room for [`SMALL_CHUNK`] bytes.
    pub(crate) fn take_small(&mut self) -> Vec<u8> {
        self.small
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(SMALL_CHUNK))
    }

    /// Takes a buffer back; only the two standard sizes are kept.
    pub(crate) fn give(&mut self, mut buffer: Vec<u8>) {
        let class = match buffer.capacity() {
            CHUNK => &mut self.buffers,
            SMALL_CHUNK => &mut self.small,
            _ => return,
        };
        if class.len() < self.limit {
            buffer.clear();
            class.push(buffer);
        }
    }

    /// An empty output queue (which keeps the capacity of its chunk list).
    pub(crate) fn take_queue(&mut self) -> Box<OutputQueue> {
        self.queues.pop().unwrap_or_default()
    }

    /// Takes an emptied queue back.
    pub(crate) fn give_queue(&mut self, mut queue: Box<OutputQueue>) {
        queue.clear(self);
        if self.queues.len() < self.limit {
            self.queues.push(queue);
        }
    }

    /// Bytes held by the pool's buffers, for introspection.
    pub(crate) fn pooled_bytes(&self) -> usize {
        self.buffers.len() * CHUNK + self.small.len() * SMALL_CHUNK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `cap` bytes per call, like a socket with a
    /// nearly full send buffer.
    struct Trickle {
        cap: usize,
        got: Vec<u8>,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            let n = buf.len().min(self.cap);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.cap - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
                if n == self.cap {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn mixed_chunks_come_out_in_order_through_partial_writes() {
        let mut pool = BufferPool::new(4);
        let mut queue = OutputQueue::default();
        let mut expected = Vec::new();
        for i in 0..50u8 {
            let owned: Vec<u8> = (0..(i as usize * 997) % 40_000)
                .map(|j| (j as u8) ^ i)
                .collect();
            queue.push_bytes(&owned, &mut pool);
            expected.extend_from_slice(&owned);
            let shared: Rc<[u8]> = Rc::from(vec![i; i as usize]);
            queue.push_shared(shared);
            expected.extend(std::iter::repeat_n(i, i as usize));
        }
        assert_eq!(queue.len(), expected.len());
        let mut out = Trickle {
            cap: 7_777,
            got: Vec::new(),
            calls: 0,
        };
        while !queue.is_empty() {
            let (n, offered) = queue.write_to(&mut out, 64 * 1024).unwrap();
            assert!(n <= offered && offered <= 64 * 1024);
            queue.consume(n, &mut pool);
        }
        assert_eq!(out.got, expected);
        assert!(pool.buffers.len() <= 4, "the pool keeps at most its limit");
    }

    #[test]
    fn small_messages_share_one_chunk_and_one_write() {
        let mut pool = BufferPool::new(4);
        let mut queue = OutputQueue::default();
        for _ in 0..100 {
            queue.push_bytes(b"0123456789", &mut pool);
        }
        assert_eq!(
            queue.chunks.len(),
            1,
            "1000 bytes fit the small first chunk"
        );
        queue.push_bytes(&[b'!'; 100], &mut pool);
        assert_eq!(queue.chunks.len(), 2, "the overflow starts a large chunk");
        let mut out = Trickle {
            cap: usize::MAX,
            got: Vec::new(),
            calls: 0,
        };
        let (n, _) = queue.write_to(&mut out, usize::MAX).unwrap();
        assert_eq!((n, out.calls), (1100, 1), "one writev for both");
        queue.consume(n, &mut pool);
        assert_eq!(
            (pool.small.len(), pool.buffers.len()),
            (1, 1),
            "both sizes pooled"
        );
    }
}
