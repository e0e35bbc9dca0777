//! A blocking HTTP/1.1 client for the tests, reading responses with the
//! crate's own framing (`reactor::http`), so that what the server sends is
//! held to the same rules the server holds its clients to.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use reactor::http::{self, BodyDecoder, Limits};

/// One response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub fields: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub keep_alive: bool,
}

impl Reply {
    /// The first field called `name` (without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A connection to a server, with what it has read and not yet parsed.
pub struct HttpClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl HttpClient {
    /// Connects, with a 10 s read timeout on every read.
    pub fn connect(addr: SocketAddr) -> HttpClient {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        HttpClient {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// `GET path` with a `Host`, and its response.
    pub fn get(&mut self, path: &str) -> Reply {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        self.read_reply(false)
    }

    /// The next response; panics if the connection ends first or a read
    /// times out.
    pub fn read_reply(&mut self, to_head: bool) -> Reply {
        self.try_read_reply(to_head)
            .expect("read a response")
            .expect("a response before the end of the stream")
    }

    /// The next response, or `None` if the server closed before sending a
    /// byte of one.
    pub fn try_read_reply(&mut self, to_head: bool) -> io::Result<Option<Reply>> {
        let (status, fields, framing, keep_alive, head_len) = loop {
            let mut storage = [http::EMPTY_HEADER; 64];
            if let Some(r) =
                http::parse_response(&self.buf, &mut storage, &Limits::default(), to_head)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
            {
                let fields = r
                    .fields
                    .iter()
                    .map(|f| {
                        (
                            f.name.to_string(),
                            String::from_utf8_lossy(f.value).into_owned(),
                        )
                    })
                    .collect::<Vec<_>>();
                break (r.status, fields, r.framing, r.keep_alive, r.head_len);
            }
            if self.fill()? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "head cut short",
                ));
            }
        };
        self.buf.drain(..head_len);
        let mut decoder = BodyDecoder::new(framing, u64::MAX)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let mut body = Vec::new();
        loop {
            let progress = decoder
                .feed(&self.buf, |piece| body.extend_from_slice(piece))
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            self.buf.drain(..progress.consumed);
            if progress.done {
                break;
            }
            if self.fill()? == 0 {
                decoder
                    .finish_at_close()
                    .map_err(|e| io::Error::new(io::ErrorKind::UnexpectedEof, e.to_string()))?;
                break;
            }
        }
        Ok(Some(Reply {
            status,
            fields,
            body,
            keep_alive,
        }))
    }

    /// Whether the server closes the connection with nothing more to say
    /// (within the read timeout).
    pub fn closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        match self.fill() {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
        }
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}
