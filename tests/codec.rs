//! Property tests for the framing codecs: however a byte stream is cut into
//! reads, decoding it gives the same messages as decoding it whole; decoding
//! never panics and never keeps more than a message's worth of bytes.
//!
//! Cases come from a seeded generator (reproducible; the seed of a failing
//! case is printed), a few thousand per property.

mod support;

use reactor::codec::{FRAME_HEADER, FrameDecoder, LineDecoder, LineTooLong, frame_header};
use support::Rng;

/// Decodes lines from `chunks` the way the connection layer delivers them:
/// leftovers first, then the next read.
fn decode_lines(max: usize, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, LineTooLong>> {
    let mut decoder = LineDecoder::new(max);
    let mut pending = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        let mut pos = 0;
        while let Some(line) = decoder.next_line(&pending, &mut pos) {
            out.push(line.map(<[u8]>::to_vec));
        }
        pending.drain(..pos);
        assert!(
            pending.len() <= max + 1,
            "kept {} bytes with max {max}",
            pending.len()
        );
    }
    out
}

/// Cuts `data` into random pieces (including empty ones).
fn random_split<'a>(rng: &mut Rng, data: &'a [u8]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let len = rng.range(0, (data.len() - at).min(64));
        pieces.push(&data[at..at + len]);
        at += len;
    }
    pieces
}

/// A stream of lines, some empty, some with `\r\n`, some too long, and
/// maybe an unfinished last line.
fn random_lines(rng: &mut Rng, max: usize) -> Vec<u8> {
    let mut data = Vec::new();
    for _ in 0..rng.range(0, 20) {
        let len = rng.range(0, max * 2);
        data.extend((0..len).map(|_| b"ab\r\x00\xffz "[rng.range(0, 6)]));
        data.extend_from_slice(if rng.range(0, 3) == 0 { b"\r\n" } else { b"\n" });
    }
    data.extend((0..rng.range(0, max)).map(|_| b'q'));
    data
}

#[test]
fn any_split_of_a_line_stream_decodes_to_the_same_lines() {
    for seed in 1..3000u64 {
        let mut rng = Rng::new(seed);
        let max = rng.range(1, 40);
        let data = random_lines(&mut rng, max);
        let whole = decode_lines(max, &[&data]);
        let split = decode_lines(max, &random_split(&mut rng, &data));
        assert_eq!(whole, split, "seed {seed}");
        let bytewise: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(
            whole,
            decode_lines(max, &bytewise),
            "seed {seed}, byte by byte"
        );
        // Every line decoded is within the limit.
        for line in whole.iter().flatten() {
            assert!(line.len() <= max, "seed {seed}");
        }
    }
}

/// Decodes frames from `chunks`; stops at the first error.
fn decode_frames(max: usize, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, bool) {
    let decoder = FrameDecoder::new(max);
    let mut pending = Vec::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        let mut pos = 0;
        while let Some(frame) = decoder.next_frame(&pending, &mut pos) {
            match frame {
                Ok(payload) => frames.push(payload.to_vec()),
                Err(_) => return (frames, true),
            }
        }
        pending.drain(..pos);
        assert!(
            pending.len() < FRAME_HEADER + max.max(1),
            "kept more than one frame"
        );
    }
    (frames, false)
}

#[test]
fn any_split_of_a_frame_stream_decodes_to_the_same_frames() {
    for seed in 1..3000u64 {
        let mut rng = Rng::new(seed);
        let max = rng.range(0, 300);
        let mut data = Vec::new();
        let mut sent = Vec::new();
        for _ in 0..rng.range(0, 12) {
            let len = rng.range(0, max);
            let payload = rng.bytes(len);
            data.extend_from_slice(&frame_header(payload.len()).unwrap());
            data.extend_from_slice(&payload);
            sent.push(payload);
        }
        // Sometimes a frame too large, sometimes a truncated one at the end.
        let oversized = rng.range(0, 4) == 0;
        if oversized {
            data.extend_from_slice(&frame_header(max + 1 + rng.range(0, 1 << 20)).unwrap());
        } else if rng.range(0, 2) == 0 {
            data.extend_from_slice(&frame_header(max).unwrap()[..rng.range(0, 3)]);
        }
        let whole = decode_frames(max, &[&data]);
        assert_eq!(whole, (sent.clone(), oversized), "seed {seed}");
        assert_eq!(
            whole,
            decode_frames(max, &random_split(&mut rng, &data)),
            "seed {seed}"
        );
    }
}

#[test]
fn arbitrary_bytes_never_panic_either_decoder() {
    for seed in 1..2000u64 {
        let mut rng = Rng::new(seed);
        let len = rng.range(0, 200);
        let data = rng.bytes(len);
        let _ = decode_lines(rng.range(0, 16), &random_split(&mut rng, &data));
        let _ = decode_frames(rng.range(0, 64), &random_split(&mut rng, &data));
    }
}

#[test]
fn a_four_gibibyte_header_is_refused_without_waiting_for_it() {
    let decoder = FrameDecoder::new(FrameDecoder::DEFAULT_MAX);
    let mut pos = 0;
    let header = [0xff, 0xff, 0xff, 0xff];
    let result = decoder.next_frame(&header, &mut pos);
    assert!(result.is_some_and(|r| r.is_err()));
    assert_eq!(pos, 0);
}

/// Regression (outside review): a maximum of `usize::MAX` overflowed when a
/// partial line ended in `\r`.
#[test]
fn a_line_decoder_without_a_practical_limit_does_not_overflow() {
    let mut lines = reactor::codec::LineDecoder::new(usize::MAX);
    let mut pos = 0;
    assert!(lines.next_line(b"hi\r", &mut pos).is_none());
    let data = b"hi\r\n";
    pos = 0;
    assert_eq!(lines.next_line(data, &mut pos).unwrap().unwrap(), b"hi");
}
