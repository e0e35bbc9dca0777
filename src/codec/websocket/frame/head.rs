//! A frame's header: taken in as its bytes arrive (2 to 14 of them),
//! checked as soon as each part is there (the length before the key, so
//! that an announced 100 MiB is refused from its first bytes), and turned
//! into the frame whose payload follows.

use super::*;

impl Decoder {
    /// Takes header bytes from `input`; once the header is whole, checks
    /// it and starts its frame. Returns the bytes taken.
    pub(super) fn read_head(&mut self, input: &[u8]) -> Result<usize, Error> {
        let mut used = 0;
        loop {
            let needed = self.head_needed();
            if self.head_len == needed {
                break;
            }
            if used == input.len() {
                return Ok(used);
            }
            let n = (needed - self.head_len).min(input.len() - used);
            self.head[self.head_len..self.head_len + n].copy_from_slice(&input[used..used + n]);
            let had = self.head_len;
            self.head_len += n;
            used += n;
            // Fail fast: the first two bytes say most of what can be
            // wrong; the length is checked as soon as it is there, before
            // the key arrives.
            if had < 2 && self.head_len >= 2 {
                self.check_first_bytes()?;
            }
            let length_end = 2 + self.length_bytes();
            if had < length_end && self.head_len >= length_end {
                self.check_length()?;
            }
        }
        self.head_len = 0;
        self.start_frame();
        Ok(used)
    }

    /// How many extended length bytes follow the first two (0, 2 or 8).
    fn length_bytes(&self) -> usize {
        match self.head[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        }
    }

    /// The payload length the header announces (once its length bytes
    /// are in).
    fn frame_len(&self) -> u64 {
        let head = &self.head;
        match head[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([head[2], head[3]])),
            127 => {
                let mut bytes = [0; 8];
                bytes.copy_from_slice(&head[2..10]);
                u64::from_be_bytes(bytes)
            }
            short => u64::from(short),
        }
    }

    /// The announced length: legal, and for a data frame within the limit
    /// together with the message's earlier fragments. Nothing of an
    /// oversized frame is read or stored.
    fn check_length(&self) -> Result<(), Error> {
        let len = self.frame_len();
        if len >> 63 != 0 {
            return Err(HUGE_LENGTH);
        }
        let is_data = self.head[0] & 0x08 == 0;
        if is_data && self.announced + len > self.limits.max_message as u64 {
            return Err(TOO_BIG);
        }
        Ok(())
    }

    /// The header's whole length, once its first two bytes are known.
    fn head_needed(&self) -> usize {
        if self.head_len < 2 {
            return 2;
        }
        let key_bytes = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
        2 + self.length_bytes() + key_bytes
    }

    /// The checks the first two header bytes allow.
    fn check_first_bytes(&self) -> Result<(), Error> {
        let [b0, b1] = [self.head[0], self.head[1]];
        if b0 & 0x70 != 0 {
            return Err(RESERVED_BITS);
        }
        let opcode = Opcode::from_bits(b0 & 0x0f).ok_or(UNKNOWN_OPCODE)?;
        let masked = b1 & 0x80 != 0;
        match self.role {
            Role::Server if !masked => return Err(UNMASKED),
            Role::Client if masked => return Err(MASKED),
            _ => {}
        }
        if opcode.is_control() {
            if b0 & 0x80 == 0 {
                return Err(FRAGMENTED_CONTROL);
            }
            if usize::from(b1 & 0x7f) > MAX_CONTROL {
                return Err(LONG_CONTROL);
            }
        }
        match opcode {
            Opcode::Continuation if self.kind.is_none() => Err(STRAY_CONTINUATION),
            Opcode::Text | Opcode::Binary if self.kind.is_some() => Err(UNFINISHED_MESSAGE),
            _ => Ok(()),
        }
    }

    /// The header is whole and checked: the frame starts.
    fn start_frame(&mut self) {
        let len = self.frame_len();
        let key_at = 2 + self.length_bytes();
        let head = &self.head;
        let key = (head[1] & 0x80 != 0).then(|| {
            [
                head[key_at],
                head[key_at + 1],
                head[key_at + 2],
                head[key_at + 3],
            ]
        });
        // Checked with the first two bytes: the opcode is known.
        let opcode = Opcode::from_bits(head[0] & 0x0f).unwrap_or(Opcode::Continuation);
        match opcode {
            Opcode::Text => self.kind = Some(DataKind::Text),
            Opcode::Binary => self.kind = Some(DataKind::Binary),
            Opcode::Continuation => {}
            Opcode::Close | Opcode::Ping | Opcode::Pong => self.control_len = len as usize,
        }
        if !opcode.is_control() {
            self.announced += len;
        }
        self.frame = Some(Frame {
            fin: head[0] & 0x80 != 0,
            opcode,
            key,
            len,
            done: 0,
        });
    }
}
