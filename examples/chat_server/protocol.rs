//! The two wire protocols of the chat server: what a user can be told
//! ([`Notice`]), how it is written for a line user or a JSON user
//! ([`render`]), what a JSON user can ask ([`Request`]), and the rule for
//! names. Everything rendered passes the control and bidi character rule of
//! `text.rs`, in each protocol's way.

use reactor::codec::websocket::{self, Opcode};
use serde_json::Value;

use crate::text;

/// Which protocol a connection speaks: decided by the listener it came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// Plain lines, for `nc` and `telnet`.
    Line,
    /// One JSON object per line (NDJSON), the seed's message types.
    Json,
    /// The NDJSON protocol's objects, one per WebSocket text message (no
    /// newline): the browser page's protocol.
    Web,
}

/// Something the server tells a user. One notice, two renderings.
#[derive(Clone, Copy, Debug)]
pub enum Notice<'a> {
    /// Line users, on entering a room.
    Welcome {
        name: &'a str,
        room: &'a str,
    },
    Joined {
        name: &'a str,
        room: &'a str,
    },
    Left {
        name: &'a str,
        room: &'a str,
    },
    Renamed {
        old: &'a str,
        new: &'a str,
    },
    Chat {
        name: &'a str,
        room: &'a str,
        text: &'a str,
    },
    Action {
        name: &'a str,
        room: &'a str,
        text: &'a str,
    },
    Private {
        from: &'a str,
        text: &'a str,
    },
    /// The answer to `/rooms` (`{"type":"rooms"}`): every room with its
    /// number of users, busiest first.
    Rooms(&'a [(&'a str, usize)]),
    /// The answer to `/who` (`{"type":"who"}`): the names in the user's room.
    Who {
        room: &'a str,
        users: &'a [&'a str],
    },
    /// A reply to a line command (`/help`, `/quit`): plain text.
    Info(&'a str),
    Error(&'a str),
    ShuttingDown,
}

/// The prompt a line user gets until it has a name (no newline: the answer
/// goes on the same line).
pub const PROMPT: &[u8] = b"Enter your name: ";

/// The first thing a JSON user gets (the seed's text).
pub const JSON_WELCOME: &str =
    r#"Welcome! Send {"type": "join", "room": "roomname", "username": "your_name"}"#;

pub const HELP: &str =
    "commands: /join ROOM, /rooms, /who, /nick NAME, /msg NAME TEXT, /me ACTION, /help, /quit";

/// Appends `notice`, as `proto` writes it, to `out`: one line, newline
/// included, or for [`Proto::Web`] one WebSocket text frame.
///
/// Every line to a line user is rendered here, through [`LineOut`], so users'
/// text passes the filter of `text.rs` whatever path brought it (line user,
/// JSON user, or any future source): a new source only makes notices.
pub fn render(notice: &Notice<'_>, proto: Proto, out: &mut Vec<u8>) {
    match proto {
        Proto::Line => render_line(notice, &mut LineOut(out)),
        Proto::Json => render_json(notice, out),
        Proto::Web => {
            let start = out.len();
            render_json(notice, out);
            return frame_text(out, start);
        }
    }
    out.push(b'\n');
}

/// Turns the bytes of `out` from `start` on into one WebSocket text frame.
/// The JSON is rendered first because the header holds its length; moving
/// a few hundred bytes along once per broadcast is cheaper than rendering
/// twice.
pub fn frame_text(out: &mut Vec<u8>, start: usize) {
    websocket::insert_header(out, start, Opcode::Text);
}

/// A line being rendered for a line user. Its only way in is [`LineOut::push`],
/// which turns unsafe characters into spaces, so `render_line` cannot put an
/// unfiltered byte on a line user's terminal: the fixed parts of a notice go
/// through the filter too, rather than trusting each new notice to pick the
/// right helper for its user-supplied parts.
struct LineOut<'a>(&'a mut Vec<u8>);

impl LineOut<'_> {
    fn push(&mut self, parts: &[&str]) {
        for part in parts {
            text::push_line_text(self.0, part);
        }
    }
}

fn render_line(notice: &Notice<'_>, out: &mut LineOut<'_>) {
    match *notice {
        Notice::Welcome { name, room } => out.push(&[
            "welcome to ",
            room,
            ", ",
            name,
            " (/help lists the commands)",
        ]),
        Notice::Joined { name, room } => out.push(&[name, " joined ", room]),
        Notice::Left { name, room } => out.push(&[name, " left ", room]),
        Notice::Renamed { old, new } => out.push(&[old, " is now known as ", new]),
        Notice::Chat { name, text, .. } => out.push(&[name, ": ", text]),
        Notice::Action { name, text, .. } => out.push(&["* ", name, " ", text]),
        Notice::Private { from, text } => out.push(&["[private] ", from, ": ", text]),
        Notice::Rooms(rooms) => {
            out.push(&["rooms: "]);
            for (i, (name, users)) in rooms.iter().enumerate() {
                let count = users.to_string();
                let sep = if i == 0 { "" } else { ", " };
                out.push(&[sep, name, " (", &count, ")"]);
            }
        }
        Notice::Who { users, .. } => {
            out.push(&["who: "]);
            for (i, name) in users.iter().enumerate() {
                out.push(&[if i == 0 { "" } else { ", " }, name]);
            }
        }
        Notice::Info(text) => out.push(&[text]),
        Notice::Error(text) => out.push(&["error: ", text]),
        Notice::ShuttingDown => out.push(&["server shutting down"]),
    }
}

fn render_json(notice: &Notice<'_>, out: &mut Vec<u8>) {
    let joined;
    let (kind, fields): (&str, &[(&str, &str)]) = match *notice {
        Notice::Welcome { name, room } | Notice::Joined { name, room } => {
            joined = format!("{name} joined {room}");
            ("notification", &[("message", &joined)])
        }
        Notice::Left { name, room } => {
            joined = format!("{name} left {room}");
            ("notification", &[("message", &joined)])
        }
        Notice::Renamed { old, new } => {
            joined = format!("{old} is now known as {new}");
            ("notification", &[("message", &joined)])
        }
        Notice::Chat { name, room, text } => {
            return object(
                out,
                "chat",
                &[("username", name), ("room", room), ("message", text)],
            );
        }
        Notice::Action { name, room, text } => {
            return object(
                out,
                "action",
                &[("username", name), ("room", room), ("message", text)],
            );
        }
        Notice::Private { from, text } => {
            return object(out, "private", &[("from", from), ("message", text)]);
        }
        Notice::Rooms(rooms) => {
            out.extend_from_slice(b"{\"type\":\"rooms\",\"rooms\":[");
            for (i, (name, users)) in rooms.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"name\":");
                text::push_json_string(out, name);
                out.extend_from_slice(b",\"users\":");
                out.extend_from_slice(users.to_string().as_bytes());
                out.push(b'}');
            }
            out.extend_from_slice(b"]}");
            return;
        }
        Notice::Who { room, users } => {
            out.extend_from_slice(b"{\"type\":\"who\",\"room\":");
            text::push_json_string(out, room);
            out.extend_from_slice(b",\"users\":[");
            for (i, name) in users.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                text::push_json_string(out, name);
            }
            out.extend_from_slice(b"]}");
            return;
        }
        Notice::Info(text) => return object(out, "info", &[("message", text)]),
        Notice::Error(text) => return object(out, "error", &[("message", text)]),
        Notice::ShuttingDown => ("notification", &[("message", "server shutting down")]),
    };
    object(out, kind, fields)
}

/// Writes `{"type":KIND,"k":"v",...}` without building a `Value` (no
/// allocation per message). Every string goes through
/// [`text::push_json_string`]: serde_json's escaping, plus `\uXXXX` for the
/// unsafe characters serde_json leaves raw.
pub fn object(out: &mut Vec<u8>, kind: &str, fields: &[(&str, &str)]) {
    out.extend_from_slice(b"{\"type\":");
    text::push_json_string(out, kind);
    for (key, value) in fields {
        out.push(b',');
        text::push_json_string(out, key);
        out.push(b':');
        text::push_json_string(out, value);
    }
    out.push(b'}');
}

/// What a JSON user asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Join {
        room: String,
        username: String,
    },
    Chat {
        message: String,
    },
    Leave,
    Private {
        to: String,
        message: String,
    },
    Action {
        message: String,
    },
    /// `{"type":"rooms"}`: the room list, as `/rooms`.
    Rooms,
    /// `{"type":"who"}`: who is in my room, as `/who`.
    Who,
    /// `{"type":"nick","username":NEW}`: a new name, as `/nick`.
    Nick {
        username: String,
    },
}

/// Parses one NDJSON line. The error is the message the user gets back.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(mut fields) = value else {
        return Err("expected a JSON object".into());
    };
    let mut take = |key: &str| -> Result<String, String> {
        match fields.remove(key) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(format!("field '{key}' must be a string")),
            None => Err(format!("missing field '{key}'")),
        }
    };
    let kind = take("type")?;
    Ok(match kind.as_str() {
        "join" => Request::Join {
            room: take("room")?,
            username: take("username")?,
        },
        "chat" => Request::Chat {
            message: take("message")?,
        },
        "leave" => Request::Leave,
        "private" => Request::Private {
            to: take("to")?,
            message: take("message")?,
        },
        "action" => Request::Action {
            message: take("message")?,
        },
        "rooms" => Request::Rooms,
        "who" => Request::Who,
        "nick" => Request::Nick {
            username: take("username")?,
        },
        other => return Err(format!("unknown message type '{other}'")),
    })
}

/// User and room names: the rule every example shares (`common::check_name`).
pub use crate::common::check_name;

/// Names are unique without regard to case: this is the key they are
/// compared by.
pub fn fold(name: &str) -> String {
    name.to_lowercase()
}
