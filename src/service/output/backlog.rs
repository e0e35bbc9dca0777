//! The backlog: what a connection keeps across turns when its socket did not
//! take everything (or was not writable when it was sent to), and the pool
//! its buffers come from and go back to.
//!
//! An [`OutputQueue`] is a queue of chunks: appending never copies what is
//! already queued, and written chunks are dropped whole. An empty queue
//! starts in a 1 KiB buffer; longer output goes into 16 KiB chunks. A chunk
//! is either bytes of the connection's own or a slice of a frozen turn
//! buffer shared with other receivers of a broadcast. Emptied chunks and
//! queues go back to a [`BufferPool`], so an idle connection holds no buffer
//! memory. This file knows nothing of connections or sockets: it is handed
//! a writer.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

use super::MAX_SLICES;

/// The size of a pooled buffer.
pub(crate) const CHUNK: usize = 16 * 1024;

/// The size of a small pooled buffer: an empty queue starts in one, so a
/// connection sent a short message (an echo, a chat line, a notice to a
/// thousand room members) holds 1 KiB while it waits, not 16.
pub(crate) const SMALL_CHUNK: usize = 1024;

/// One piece of a backlog.
#[derive(Debug)]
pub(crate) enum Chunk {
    /// Bytes of this connection's own.
    Owned(Vec<u8>),
    /// `start..end` of a frozen turn buffer shared with other connections
    /// (a broadcast several receivers could not take at once). `pins` is
    /// the whole frozen buffer's length if this chunk is the one that
    /// counts it against the queue (the first of a run of chunks of the same
    /// buffer), else 0.
    Shared {
        frozen: Rc<[u8]>,
        start: u32,
        end: u32,
        pins: u32,
    },
}

impl Chunk {
    #[inline]
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(bytes) => bytes,
            Chunk::Shared {
                frozen, start, end, ..
            } => &frozen[*start as usize..*end as usize],
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
    /// Bytes of the frozen turn buffers this queue keeps alive, whole: a
    /// slice of a frozen copy holds all of it in memory, so a slow receiver
    /// of one broadcast byte may pin a turn's worth of other connections'
    /// replies.
    pinned: usize,
    /// Bytes of those buffers that are this queue's own output (its shared
    /// slices, not yet written). What it pins beyond them is what
    /// [`footprint`](Self::footprint) adds.
    shared: usize,
}

impl OutputQueue {
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memory this queue answers for: its bytes, and what the frozen
    /// turn buffers it refers to hold beyond them (other receivers' output).
    /// A member of one busy room needs most of each frozen copy and pins
    /// little more; a slow receiver of one byte next to a large private
    /// reply pins the reply.
    #[inline]
    pub(crate) fn footprint(&self) -> usize {
        self.len + self.pinned.saturating_sub(self.shared)
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

    /// Queues a slice of a frozen turn buffer without copying it, merging it
    /// with the previous slice of the same buffer when they touch.
    pub(crate) fn push_shared(&mut self, frozen: &Rc<[u8]>, start: u32, end: u32) {
        self.len += (end - start) as usize;
        self.shared += (end - start) as usize;
        let mut pins = frozen.len() as u32;
        if let Some(Chunk::Shared {
            frozen: last,
            end: last_end,
            ..
        }) = self.chunks.back_mut()
        {
            if Rc::ptr_eq(last, frozen) {
                if *last_end == start {
                    *last_end = end;
                    return;
                }
                // The run's first chunk counts this buffer already.
                pins = 0;
            }
        }
        self.pinned += pins as usize;
        self.chunks.push_back(Chunk::Shared {
            frozen: Rc::clone(frozen),
            start,
            end,
            pins,
        });
    }

    /// Writes up to `limit` bytes with one `write` (one chunk) or one
    /// `writev` (several). Returns the bytes written and the bytes offered,
    /// so the caller can tell a short write.
    #[inline]
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
    #[inline]
    pub(crate) fn consume(&mut self, mut n: usize, pool: &mut BufferPool) {
        debug_assert!(n <= self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.bytes().len() - self.head;
            let shared = matches!(front, Chunk::Shared { .. });
            if n < left {
                self.head += n;
                if shared {
                    self.shared -= n;
                }
                return;
            }
            if shared {
                self.shared -= left;
            }
            n -= left;
            self.head = 0;
            match self.chunks.pop_front() {
                Some(Chunk::Owned(buffer)) => pool.give(buffer),
                Some(Chunk::Shared { frozen, pins, .. }) => self.unpin(&frozen, pins),
                None => {}
            }
        }
    }

    /// A chunk that counted a frozen buffer is gone: the next chunk counts
    /// it if it refers to the same buffer, else the queue no longer pins it.
    fn unpin(&mut self, frozen: &Rc<[u8]>, pins: u32) {
        if pins == 0 {
            return;
        }
        match self.chunks.front_mut() {
            Some(Chunk::Shared {
                frozen: next,
                pins: next_pins,
                ..
            }) if Rc::ptr_eq(next, frozen) => *next_pins = pins,
            _ => self.pinned -= pins as usize,
        }
    }

    /// Where the frozen turn buffer behind the first chunk starts, if the
    /// first chunk is a shared slice (for tests of the sharing).
    #[cfg(test)]
    pub(crate) fn first_shared_base(&self) -> Option<*const u8> {
        match self.chunks.front()? {
            Chunk::Shared { frozen, .. } => Some(frozen.as_ptr()),
            Chunk::Owned(_) => None,
        }
    }

    /// Drops everything queued.
    pub(crate) fn clear(&mut self, pool: &mut BufferPool) {
        while let Some(chunk) = self.chunks.pop_front() {
            if let Chunk::Owned(buffer) = chunk {
                pool.give(buffer);
            }
        }
        self.head = 0;
        self.len = 0;
        self.pinned = 0;
        self.shared = 0;
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
    #[inline]
    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.buffers
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(CHUNK))
    }

    /// An empty buffer with room for [`SMALL_CHUNK`] bytes.
    #[inline]
    pub(crate) fn take_small(&mut self) -> Vec<u8> {
        self.small
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(SMALL_CHUNK))
    }

    /// Takes a buffer back; only the two standard sizes are kept.
    #[inline]
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
    #[inline]
    pub(crate) fn take_queue(&mut self) -> Box<OutputQueue> {
        self.queues.pop().unwrap_or_default()
    }

    /// Takes an emptied queue back.
    #[inline]
    pub(crate) fn give_queue(&mut self, mut queue: Box<OutputQueue>) {
        if !queue.chunks.is_empty() {
            queue.clear(self);
        }
        queue.head = 0;
        queue.len = 0;
        queue.pinned = 0;
        queue.shared = 0;
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
    use super::super::Trickle;
    use super::*;

    #[test]
    fn chunks_of_every_size_come_out_in_order_through_partial_writes() {
        let mut pool = BufferPool::new(4);
        let mut queue = OutputQueue::default();
        let mut expected = Vec::new();
        for i in 0..50u8 {
            let owned: Vec<u8> = (0..(i as usize * 997) % 40_000)
                .map(|j| (j as u8) ^ i)
                .collect();
            queue.push_bytes(&owned, &mut pool);
            expected.extend_from_slice(&owned);
            let marker = vec![i; i as usize];
            queue.push_bytes(&marker, &mut pool);
            expected.extend_from_slice(&marker);
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
