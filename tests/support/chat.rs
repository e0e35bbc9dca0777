//! The chat server's clients, as tests drive them: a line user (as `nc`
//! would be) and an NDJSON user (as the seed's JSON client).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};

use serde_json::{Value, json};

use super::connect;

pub const PROMPT: &[u8] = b"Enter your name: ";

/// A line-protocol client, as `nc` would be.
pub struct Line {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

impl Line {
    /// Connects and reads the name prompt.
    pub fn connect(addr: SocketAddr) -> Line {
        let stream = connect(addr);
        let mut client = Line {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        };
        client.expect_prompt();
        client
    }

    /// Connects, answers the prompt, and reads the welcome.
    pub fn join(addr: SocketAddr, name: &str) -> Line {
        let mut client = Line::connect(addr);
        client.send(name);
        client.expect(&format!(
            "welcome to lobby, {name} (/help lists the commands)"
        ));
        client
    }

    pub fn expect_prompt(&mut self) {
        let mut prompt = [0; PROMPT.len()];
        self.reader.read_exact(&mut prompt).unwrap();
        assert_eq!(prompt, PROMPT, "{}", String::from_utf8_lossy(&prompt));
    }

    pub fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes());
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// The next line, without its newline; panics at end of stream.
    #[track_caller]
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        assert!(n > 0, "end of stream while expecting a line");
        line.trim_end_matches('\n').to_string()
    }

    #[track_caller]
    pub fn expect(&mut self, expected: &str) {
        assert_eq!(self.line(), expected);
    }

    /// True once the server has closed the connection (reads to the end).
    pub fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(e) => e.kind() == ErrorKind::ConnectionReset,
        }
    }
}

/// An NDJSON client following the seed's protocol.
pub struct Json {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

impl Json {
    pub fn connect(addr: SocketAddr) -> Json {
        let stream = connect(addr);
        let mut client = Json {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        };
        let welcome = client.next();
        assert_eq!(welcome["type"], "welcome");
        client
    }

    pub fn send(&mut self, value: Value) {
        let mut line = value.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes()).unwrap();
    }

    pub fn send_raw(&mut self, raw: &[u8]) {
        self.writer.write_all(raw).unwrap();
    }

    #[track_caller]
    pub fn next(&mut self) -> Value {
        let line = self.raw_line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }

    /// The next line as it came over the wire, newline included.
    #[track_caller]
    pub fn raw_line(&mut self) -> String {
        let mut line = String::new();
        assert!(
            self.reader.read_line(&mut line).unwrap() > 0,
            "end of stream"
        );
        line
    }

    #[track_caller]
    pub fn expect(&mut self, expected: Value) {
        assert_eq!(self.next(), expected);
    }

    #[track_caller]
    pub fn expect_error(&mut self) -> String {
        let v = self.next();
        assert_eq!(v["type"], "error", "{v}");
        v["message"].as_str().unwrap().to_string()
    }
}

pub fn note(message: &str) -> Value {
    json!({"type": "notification", "message": message})
}
