//! The one rule for users' text on its way to a terminal, and the two ways
//! it is applied: a line user gets every unsafe character as a space
//! ([`push_line_text`]); a JSON user gets it as a `\uXXXX` escape
//! ([`push_json_string`]), which decodes to the exact text yet never puts the
//! raw character on the wire.
//!
//! Kept apart from `protocol.rs` (and free of the chat's types) so that
//! `tests/chat_text.rs` can include it and check the rule directly.

/// True for a character that must not reach a terminal as it was sent:
///
/// - every Unicode control character (`char::is_control`: C0, DEL and C1).
///   C0 would forge lines or start escape sequences; C1 controls are escape
///   sequences of their own to a terminal (U+009B is CSI, U+009D OSC, U+0085
///   NEL a newline);
/// - the bidirectional embedding, override and isolate characters, U+202A to
///   U+202E and U+2066 to U+2069, which can make a line read in another order
///   than it was written (the "Trojan Source" trick).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// False only if `text` holds no unsafe character: the fast paths' test.
///
/// Why that holds: every unsafe character's UTF-8 encoding begins with one
/// of these bytes. C0 and DEL are the bytes themselves (`< 0x20`, `0x7F`);
/// U+0080 to U+00BF, C1 included, begin with 0xC2; U+2000 to U+2FFF, the
/// bidi characters included, begin with 0xE2. A string's bytes are its
/// characters' bytes in a row, so a string without those bytes holds no
/// unsafe character. (`tests/chat_text.rs` checks the claim for every
/// `char`.) The test may say true for safe text (`é` is C3, but `°` is C2 and
/// `€` E2): that only costs the careful path.
pub fn may_hold_unsafe(text: &str) -> bool {
    text.bytes()
        .any(|b| b < 0x20 || b == 0x7F || b == 0xC2 || b == 0xE2)
}

/// Appends `text` for a line user: every unsafe character becomes one space,
/// everything else is kept as it is (so the line has as many characters as
/// the text).
pub fn push_line_text(out: &mut Vec<u8>, text: &str) {
    if may_hold_unsafe(text) {
        push_line_text_by_char(out, text);
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

/// The careful path of [`push_line_text`], character by character; public so
/// that the tests can check that both paths give the same line.
pub fn push_line_text_by_char(out: &mut Vec<u8>, text: &str) {
    // Runs of safe characters are copied whole.
    let mut run = 0;
    for (at, c) in text.char_indices() {
        if is_unsafe_char(c) {
            out.extend_from_slice(&text.as_bytes()[run..at]);
            out.push(b' ');
            run = at + c.len_utf8();
        }
    }
    out.extend_from_slice(&text.as_bytes()[run..]);
}

/// Appends `text` as a JSON string (quotes included) whose bytes hold no
/// unsafe character, while a JSON parser reads back exactly `text`.
///
/// JSON is data, so a JSON user gets the exact text (a program may want the
/// newlines of a multi-line message), but the NDJSON listener is also read
/// with `nc` on a terminal: serde_json escapes only C0, `"` and `\`, and
/// would write DEL, C1 and the bidi characters raw.
pub fn push_json_string(out: &mut Vec<u8>, text: &str) {
    if !may_hold_unsafe(text) {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
        return;
    }
    // RFC 8259 requires escaping `"`, `\` and U+0000 to U+001F; the unsafe
    // characters include the last, and all of them may be escaped.
    out.push(b'"');
    let mut run = 0;
    for (at, c) in text.char_indices() {
        let escape_as = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            c if is_unsafe_char(c) => None,
            _ => continue,
        };
        out.extend_from_slice(&text.as_bytes()[run..at]);
        run = at + c.len_utf8();
        match escape_as {
            Some(escape) => out.extend_from_slice(escape.as_bytes()),
            None => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    push_unicode_escape(out, *unit);
                }
            }
        }
    }
    out.extend_from_slice(&text.as_bytes()[run..]);
    out.push(b'"');
}

/// `\u` and four lowercase hex digits, as serde_json writes them.
fn push_unicode_escape(out: &mut Vec<u8>, unit: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\u");
    for shift in [12, 8, 4, 0] {
        out.push(HEX[usize::from((unit >> shift) & 0xF)]);
    }
}

/// Users' text on its way to the server's log: shown with every unsafe
/// character as a `\u{XXXX}` escape, since the log is read on a terminal
/// too (`RUST_LOG=debug` logs every message).
pub struct Loggable<'a>(pub &'a str);

impl std::fmt::Display for Loggable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !may_hold_unsafe(self.0) {
            return f.write_str(self.0);
        }
        for c in self.0.chars() {
            if is_unsafe_char(c) {
                write!(f, "\\u{{{:04x}}}", c as u32)?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}
