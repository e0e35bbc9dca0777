//! How a `loadgen chat` client speaks to the server: the only thing that
//! differs between the line protocol, NDJSON and JSON over WebSocket. The
//! counting (sequence numbers, order, lines in flight, the report) is
//! `chat.rs`'s and sees only what a [`Wire`] hears.
//!
//! - [`Line`]: chat_server's line protocol. The name answers the prompt, the
//!   first line is the welcome, and a delivery is `sender2: TEXT`.
//! - [`Ndjson`]: its JSON protocol, one object per line ([`JsonChat`]: the
//!   welcome, our `join`, the `notification` of our own join, and deliveries
//!   `{"type":"chat","username":"sender2",...,"message":TEXT}`).
//! - [`WebSocket`]: an HTTP upgrade to `GET /ws`, then the same JSON
//!   conversation, one object per text message. Our frames are masked, as a
//!   client's must be. Beside [`Ndjson`], it shows what the framing costs.

use reactor::codec::LineDecoder;
use reactor::codec::websocket::{self as ws, Decoder, Message, Opcode, Role};
use reactor::http;

/// What a client heard, as far as the load counts it.
pub enum Heard<'a> {
    /// The server has put this client in the room: every line sent from now
    /// on must reach it.
    Joined,
    /// A chat message: who sent it and its text.
    Chat { from: &'a [u8], text: &'a [u8] },
}

/// One client's framing.
pub trait Wire {
    /// Bytes to send as soon as the connection is open (the upgrade
    /// request); nothing by default.
    fn on_open(&mut self, out: &mut Vec<u8>) {
        let _ = out;
    }

    /// Reads what `data` holds: `heard` is called for each message that
    /// counts, and replies (our name, a join, a pong) are appended to `out`.
    /// Returns the bytes consumed, or why the connection must close.
    fn read(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        heard: impl FnMut(Heard<'_>),
    ) -> Result<usize, String>;

    /// Appends one chat message with `text` (ASCII digits, spaces and `x`s:
    /// nothing to escape) to `out`.
    fn write_chat(&mut self, out: &mut Vec<u8>, text: &[u8]);
}

/// The line protocol.
pub struct Line {
    name: String,
    named: bool,
    welcomed: bool,
    lines: LineDecoder,
}

impl Line {
    pub fn new(name: String) -> Line {
        Line {
            name,
            named: false,
            welcomed: false,
            lines: LineDecoder::new(64 * 1024),
        }
    }
}

impl Wire for Line {
    fn read(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        mut heard: impl FnMut(Heard<'_>),
    ) -> Result<usize, String> {
        if !self.named {
            // The first bytes are the prompt (no newline): answer it.
            self.named = true;
            out.extend_from_slice(self.name.as_bytes());
            out.push(b'\n');
            return Ok(data.len());
        }
        let mut pos = 0;
        while let Some(line) = self.lines.next_line(data, &mut pos) {
            let Ok(line) = line else { continue };
            if !self.welcomed {
                self.welcomed = true; // "welcome to lobby, NAME ..."
                heard(Heard::Joined);
                continue;
            }
            // "sender2: TEXT"; notices ("reader5 joined lobby") have no colon.
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                if let Some(text) = line[colon + 1..].strip_prefix(b" ") {
                    heard(Heard::Chat {
                        from: &line[..colon],
                        text,
                    });
                }
            }
        }
        Ok(pos)
    }

    fn write_chat(&mut self, out: &mut Vec<u8>, text: &[u8]) {
        out.extend_from_slice(text);
        out.push(b'\n');
    }
}

/// The JSON conversation of chat_server's NDJSON protocol, whatever
/// carries its objects.
struct JsonChat {
    name: String,
    stage: Stage,
}

/// Where a JSON client is in its conversation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the welcome, to answer it with a join.
    Welcome,
    /// Join sent; waiting for the notification of our own join.
    Joining,
    Joined,
}

impl JsonChat {
    fn new(name: String) -> JsonChat {
        JsonChat {
            name,
            stage: Stage::Welcome,
        }
    }

    /// One object arrived. Returns the reply to send, if any (the join).
    fn object(&mut self, text: &[u8], heard: &mut impl FnMut(Heard<'_>)) -> Option<String> {
        match self.stage {
            Stage::Welcome => {
                // Whatever comes first is the welcome: answer with a join.
                self.stage = Stage::Joining;
                let name = serde_json::Value::from(self.name.as_str());
                Some(format!(
                    r#"{{"type":"join","room":"lobby","username":{name}}}"#
                ))
            }
            Stage::Joining => {
                // Others' joins are announced too: wait for ours.
                let ours = format!("{} joined lobby", self.name);
                let value: serde_json::Value = serde_json::from_slice(text).unwrap_or_default();
                if value["type"] == "notification" && value["message"] == ours.as_str() {
                    self.stage = Stage::Joined;
                    heard(Heard::Joined);
                }
                None
            }
            Stage::Joined => {
                // The hot path, millions a second: the order chat_server
                // writes the fields in is read without a parser; any other
                // order goes through serde_json.
                if let Some((from, text)) = chat_fields(text) {
                    heard(Heard::Chat { from, text });
                } else {
                    let value: serde_json::Value = serde_json::from_slice(text).unwrap_or_default();
                    if let ("chat", Some(from), Some(text)) = (
                        value["type"].as_str().unwrap_or_default(),
                        value["username"].as_str(),
                        value["message"].as_str(),
                    ) {
                        heard(Heard::Chat {
                            from: from.as_bytes(),
                            text: text.as_bytes(),
                        });
                    }
                }
                None
            }
        }
    }
}

/// `{"type":"chat","username":N,"room":R,"message":T}` read as chat_server
/// writes it: N and T, raw (our names and texts have nothing to escape).
fn chat_fields(object: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = object.strip_prefix(br#"{"type":"chat","username":""#)?;
    let (from, rest) = rest.split_at(rest.iter().position(|&b| b == b'"')?);
    let rest = rest.strip_prefix(br#"","room":""#)?;
    let rest = &rest[rest.iter().position(|&b| b == b'"')?..];
    let text = rest
        .strip_prefix(br#"","message":""#)?
        .strip_suffix(br#""}"#)?;
    Some((from, text))
}

/// A chat message's JSON object: the parts, end to end.
fn chat_object(text: &[u8]) -> [&[u8]; 3] {
    [br#"{"type":"chat","message":""#, text, br#""}"#]
}

/// NDJSON: the JSON conversation, one object per line.
pub struct Ndjson {
    lines: LineDecoder,
    chat: JsonChat,
}

impl Ndjson {
    pub fn new(name: String) -> Ndjson {
        Ndjson {
            lines: LineDecoder::new(64 * 1024),
            chat: JsonChat::new(name),
        }
    }
}

impl Wire for Ndjson {
    fn read(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        mut heard: impl FnMut(Heard<'_>),
    ) -> Result<usize, String> {
        let mut pos = 0;
        while let Some(line) = self.lines.next_line(data, &mut pos) {
            let Ok(line) = line else { continue };
            if let Some(reply) = self.chat.object(line, &mut heard) {
                out.extend_from_slice(reply.as_bytes());
                out.push(b'\n');
            }
        }
        Ok(pos)
    }

    fn write_chat(&mut self, out: &mut Vec<u8>, text: &[u8]) {
        for part in chat_object(text) {
            out.extend_from_slice(part);
        }
        out.push(b'\n');
    }
}

/// Where a WebSocket client connects: the request's `Host`, path and
/// `Origin` (none: a non-browser client).
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub path: String,
    pub origin: Option<String>,
}

/// JSON over WebSocket, client side.
pub struct WebSocket {
    decoder: Decoder,
    target: Target,
    key: String,
    /// Whether the 101 has come (until then, the bytes are its head).
    upgraded: bool,
    chat: JsonChat,
}

impl WebSocket {
    pub fn new(name: String, target: Target) -> WebSocket {
        WebSocket {
            decoder: Decoder::new(Role::Client, ws::Limits::default()),
            target,
            key: ws::new_key(),
            upgraded: false,
            chat: JsonChat::new(name),
        }
    }
}

/// Appends one masked text frame whose payload is `parts`, end to end: the
/// payload is written in place after the header, then masked there.
fn push_text(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let len = parts.iter().map(|p| p.len()).sum();
    let key = ws::new_mask();
    ws::write_header(out, Opcode::Text, len, Some(key));
    let start = out.len();
    for part in parts {
        out.extend_from_slice(part);
    }
    ws::mask(&mut out[start..], key);
}

impl Wire for WebSocket {
    fn on_open(&mut self, out: &mut Vec<u8>) {
        let t = &self.target;
        ws::write_request(out, &t.host, &t.path, &self.key, t.origin.as_deref());
    }

    fn read(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        mut heard: impl FnMut(Heard<'_>),
    ) -> Result<usize, String> {
        let mut used = 0;
        if !self.upgraded {
            let mut fields = [http::EMPTY_HEADER; 32];
            let response = http::parse_response(data, &mut fields, &http::Limits::default(), false)
                .map_err(|e| format!("bad upgrade response: {e}"))?;
            let Some(response) = response else {
                return Ok(0); // the head is not all here yet
            };
            ws::check_accept(&response, &self.key).map_err(|e| format!("upgrade refused: {e}"))?;
            used = response.head_len;
            self.upgraded = true;
        }
        loop {
            let (n, message) = match self.decoder.decode(&data[used..]) {
                Ok(decoded) => decoded,
                Err(e) => {
                    ws::write_close(out, e.code, e.reason, Some(ws::new_mask()));
                    return Err(format!("bad frame from the server: {e}"));
                }
            };
            used += n;
            match message {
                None => break,
                Some(Message::Text(text)) => {
                    if let Some(reply) = self.chat.object(text.as_bytes(), &mut heard) {
                        push_text(out, &[reply.as_bytes()]);
                    }
                }
                Some(Message::Ping(payload)) => {
                    ws::write_frame(out, Opcode::Pong, payload, Some(ws::new_mask()));
                }
                Some(Message::Close(code, reason)) => {
                    return Err(format!("the server closed with {code:?} {reason}"));
                }
                Some(Message::Binary(_) | Message::Pong(_)) => {}
            }
        }
        Ok(used)
    }

    fn write_chat(&mut self, out: &mut Vec<u8>, text: &[u8]) {
        push_text(out, &chat_object(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything `wire` hears in `data`, and what it replied.
    fn hear(wire: &mut impl Wire, data: &[u8]) -> (Vec<String>, Vec<u8>, usize) {
        let mut heard = Vec::new();
        let mut out = Vec::new();
        let used = wire
            .read(data, &mut out, |h| {
                heard.push(match h {
                    Heard::Joined => "joined".to_string(),
                    Heard::Chat { from, text } => format!(
                        "{}: {}",
                        String::from_utf8_lossy(from),
                        String::from_utf8_lossy(text)
                    ),
                })
            })
            .unwrap();
        (heard, out, used)
    }

    #[test]
    fn chat_objects_are_read_in_chat_servers_order_and_in_any_other() {
        let ours =
            br#"{"type":"chat","username":"sender3","room":"lobby","message":"0000000041 xx"}"#;
        assert_eq!(
            chat_fields(ours),
            Some((&b"sender3"[..], &b"0000000041 xx"[..]))
        );
        let mut chat = JsonChat::new("reader1".into());
        chat.stage = Stage::Joined;
        let mut heard = Vec::new();
        let other =
            br#"{"message":"0000000007 x","type":"chat","room":"lobby","username":"sender0"}"#;
        assert!(chat_fields(other).is_none());
        chat.object(other, &mut |h| {
            if let Heard::Chat { from, text } = h {
                heard.push((from.to_vec(), text.to_vec()));
            }
        });
        assert_eq!(heard, [(b"sender0".to_vec(), b"0000000007 x".to_vec())]);
    }

    #[test]
    fn ndjson_answers_the_welcome_with_a_join_and_waits_for_its_own() {
        let mut wire = Ndjson::new("reader1".into());
        let (heard, out, used) = hear(
            &mut wire,
            b"{\"type\":\"welcome\",\"message\":\"hi\"}\n{\"ty",
        );
        assert!(heard.is_empty());
        assert_eq!(
            out,
            b"{\"type\":\"join\",\"room\":\"lobby\",\"username\":\"reader1\"}\n"
        );
        assert_eq!(used, 34, "the partial line is left for later");
        let notices = b"{\"type\":\"notification\",\"message\":\"reader0 joined lobby\"}\n\
            {\"type\":\"notification\",\"message\":\"reader1 joined lobby\"}\n\
            {\"type\":\"chat\",\"username\":\"sender0\",\"room\":\"lobby\",\"message\":\"0000000000 x\"}\n";
        let (heard, _, _) = hear(&mut wire, notices);
        assert_eq!(heard, ["joined", "sender0: 0000000000 x"]);
    }

    #[test]
    fn websocket_chat_messages_are_masked_text_frames_of_the_json() {
        let mut wire = WebSocket::new(
            "sender0".into(),
            Target {
                host: "127.0.0.1:1".into(),
                path: "/ws".into(),
                origin: None,
            },
        );
        let mut out = Vec::new();
        wire.write_chat(&mut out, b"0000000005 xx");
        assert_eq!(out[1] & 0x80, 0x80, "masked");
        let mut server = Decoder::new(Role::Server, ws::Limits::default());
        let (used, message) = server.decode(&out).unwrap();
        assert_eq!(used, out.len());
        assert_eq!(
            message,
            Some(Message::Text(
                r#"{"type":"chat","message":"0000000005 xx"}"#
            ))
        );
    }
}
