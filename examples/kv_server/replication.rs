//! Replication, a protocol of our own over RESP (described in `docs/kv.md`):
//!
//! ```text
//! replica -> primary   KVSYNC <replid> <offset> <port>
//! primary -> replica   +FULL <replid> <offset>      then $<len> <snapshot>
//!                   or +CONTINUE <replid>           then the missed stream
//!                      then every write, as RESP commands, for ever
//! replica -> primary   KVACK <offset>               every second and after
//!                                                   every batch it applies
//! ```
//!
//! The offset counts the bytes of the write stream. A replica that comes
//! back continues from its offset if the primary's bounded backlog still
//! holds it (and the primary's id, or its previous id after a promotion,
//! is the one it followed); otherwise it gets a full copy. The replica's
//! link is an outgoing connection of the same service, on the same loop.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use log::{info, warn};
use reactor::codec::resp::{Limits, Value, ValueDecoder, encode, parse_i64};
use reactor::service::{CloseReason, ConnId, Connections};

use crate::backlog::Backlog;
use crate::db;
use crate::server::{Client, Flow, Kv, Role};
use crate::snapshot;

/// Where the link to the primary stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected; the next attempt is due at `Upstream::next_attempt`.
    Down,
    /// Connecting, or waiting for `+FULL` / `+CONTINUE`.
    Handshake,
    /// Waiting for the snapshot of a full copy.
    Snapshot { replid: String, offset: u64 },
    /// Receiving the stream.
    Online,
}

/// The primary a replica follows.
#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub link: Option<ConnId>,
    pub state: LinkState,
    backoff: Duration,
    next_attempt: Instant,
    last_ack: Instant,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A new replication id: 40 hex digits, random (from the standard
/// library's randomly keyed hasher).
pub fn new_replid() -> String {
    (0..3)
        .map(|i| {
            let mut h = RandomState::new().build_hasher();
            h.write_u64(i);
            h.write_u128(db::unix_ms() as u128);
            format!("{:016x}", h.finish())
        })
        .collect::<String>()[..40]
        .to_string()
}

/// `HOST PORT` of `REPLICAOF`: an IP address or `localhost` (resolving a
/// name would block the loop).
fn parse_addr(host: &[u8], port: &[u8]) -> Option<SocketAddr> {
    let host = std::str::from_utf8(host).ok()?;
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse().ok()?
    };
    let port = u16::try_from(parse_i64(port)?).ok()?;
    Some(SocketAddr::new(ip, port))
}

impl Kv {
    /// Starts following `addr` (from `--replica-of` or `REPLICAOF`).
    pub fn follow(&mut self, conns: &mut Connections<'_>, addr: SocketAddr) {
        if let Some(old) = self.upstream.take() {
            if let Some(link) = old.link {
                let _ = conns.abort(link);
            }
        }
        // No chained replication: our own replicas must find the new primary.
        for r in self.replica_ids(conns) {
            let _ = conns.abort(r);
        }
        if self.backlog.is_none() {
            self.backlog = Some(Backlog::new(self.settings.repl_backlog, self.offset));
        }
        let now = Instant::now();
        self.upstream = Some(Upstream {
            addr,
            link: None,
            state: LinkState::Down,
            backoff: FIRST_BACKOFF,
            next_attempt: now,
            last_ack: now,
        });
        info!("replicating from {addr}");
        self.connect_upstream(conns);
    }

    fn connect_upstream(&mut self, conns: &mut Connections<'_>) {
        let Some(up) = self.upstream.as_mut() else {
            return;
        };
        match conns.connect(up.addr) {
            Ok(link) => {
                up.link = Some(link);
                up.state = LinkState::Handshake;
            }
            Err(e) => {
                warn!("cannot connect to primary {}: {e}", up.addr);
                up.next_attempt = Instant::now() + up.backoff;
                up.backoff = (up.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// The link is connected: ask for the stream from where we are.
    pub fn link_opened(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        if self.upstream.as_ref().and_then(|u| u.link) != Some(id) {
            let _ = conns.abort(id);
            return;
        }
        let mut hello = Vec::new();
        if let Some(pass) = &self.settings.primary_auth {
            encode::command(&mut hello, &[&b"AUTH"[..], pass]);
        }
        encode::command(
            &mut hello,
            &[
                "KVSYNC",
                &self.replid,
                &self.offset.to_string(),
                &self.settings.port.to_string(),
            ],
        );
        let _ = conns.send(id, &hello);
    }

    /// The link closed (or never connected): retry with backoff.
    pub fn link_closed(&mut self, _: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        let Some(up) = self.upstream.as_mut() else {
            return;
        };
        if up.link != Some(id) {
            return;
        }
        warn!(
            "link to primary {} lost ({reason}); retrying in {:?}",
            up.addr, up.backoff
        );
        up.link = None;
        up.state = LinkState::Down;
        up.next_attempt = Instant::now() + up.backoff;
        up.backoff = (up.backoff * 2).min(MAX_BACKOFF);
    }

    /// Bytes from the primary: the handshake, the snapshot, then the stream.
    pub fn link_data(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        client: &mut Client,
        data: &[u8],
    ) -> (usize, Flow) {
        let link_limits = Limits {
            max_bulk: usize::MAX / 4,
            ..self.settings.limits
        };
        let mut pos = 0;
        loop {
            let Some(up) = self.upstream.as_mut().filter(|u| u.link == Some(id)) else {
                return (data.len(), Flow::Close);
            };
            match up.state.clone() {
                LinkState::Down => return (data.len(), Flow::Close),
                LinkState::Handshake | LinkState::Snapshot { .. } => {
                    let decoded = ValueDecoder::new(link_limits).decode(&data[pos..]);
                    let (value, used) = match decoded {
                        Ok(Some(v)) => v,
                        Ok(None) => return (pos, Flow::Continue),
                        Err(e) => {
                            warn!("primary sent bad data: {e}");
                            return (data.len(), Flow::Close);
                        }
                    };
                    pos += used;
                    if let Err(e) = self.handshake_step(value) {
                        warn!("replication handshake with {}: {e}", self.upstream_addr());
                        return (data.len(), Flow::Close);
                    }
                }
                LinkState::Online => {
                    let (used, flow) = self.run_commands(conns, id, client, &data[pos..]);
                    pos += used;
                    self.send_ack(conns);
                    return (pos, flow);
                }
            }
        }
    }

    fn upstream_addr(&self) -> String {
        self.upstream
            .as_ref()
            .map_or_else(String::new, |u| u.addr.to_string())
    }

    fn handshake_step(&mut self, value: Value) -> Result<(), String> {
        let cap = self.settings.repl_backlog;
        let Some(up) = self.upstream.as_mut() else {
            return Ok(());
        };
        match (&up.state, value) {
            // The answer to our `AUTH` (`--primary-auth`).
            (LinkState::Handshake, Value::Simple(line)) if line == "OK" => {}
            (LinkState::Handshake, Value::Simple(line)) => {
                let words: Vec<&str> = line.split(' ').collect();
                match words.as_slice() {
                    ["FULL", replid, offset] => {
                        let offset = offset.parse().map_err(|_| "bad offset")?;
                        up.state = LinkState::Snapshot {
                            replid: replid.to_string(),
                            offset,
                        };
                    }
                    ["CONTINUE", replid] => {
                        info!("resynchronised from offset {} (partial)", self.offset);
                        up.state = LinkState::Online;
                        up.backoff = FIRST_BACKOFF;
                        self.replid = replid.to_string();
                    }
                    _ => return Err(format!("unexpected reply {line:?}")),
                }
            }
            (LinkState::Snapshot { replid, offset }, Value::Bulk(bytes)) => {
                let (replid, offset) = (replid.clone(), *offset);
                up.state = LinkState::Online;
                up.backoff = FIRST_BACKOFF;
                let db = snapshot::decode(&bytes, db::unix_ms())?;
                info!(
                    "full copy from the primary: {} keys at offset {offset}",
                    db.len()
                );
                self.db = db;
                self.replid = replid;
                self.offset = offset;
                self.backlog = Some(Backlog::new(cap, offset));
            }
            (_, Value::Error(e)) => return Err(e),
            (_, other) => return Err(format!("unexpected reply {other:?}")),
        }
        Ok(())
    }

    /// A command from the primary's stream was applied: count its bytes,
    /// and keep them in our own backlog, so that after a promotion the
    /// other replicas can continue from us.
    pub fn applied_from_primary(&mut self, bytes: &[u8]) {
        self.offset += bytes.len() as u64;
        if let Some(b) = self.backlog.as_mut() {
            b.append(bytes);
        }
    }

    fn send_ack(&mut self, conns: &mut Connections<'_>) {
        let Some(up) = self.upstream.as_mut() else {
            return;
        };
        let (Some(link), LinkState::Online) = (up.link, &up.state) else {
            return;
        };
        up.last_ack = Instant::now();
        let mut ack = Vec::new();
        encode::command(&mut ack, &["KVACK", &self.offset.to_string()]);
        let _ = conns.send(link, &ack);
    }

    /// `KVSYNC replid offset port`: a replica attaches.
    pub fn kvsync(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        client: &mut Client,
        args: &[&[u8]],
    ) {
        if self.is_replica() {
            encode::error(
                self.out_buffer(),
                "ERR this node is a replica: chained replication is not supported",
            );
            return;
        }
        self.flush_stream(conns);
        let backlog = self
            .backlog
            .get_or_insert_with(|| Backlog::new(self.settings.repl_backlog, self.offset));
        let want = String::from_utf8_lossy(args[1]);
        let from = parse_i64(args[2]).and_then(|o| u64::try_from(o).ok());
        let port = parse_i64(args[3])
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(0);
        let known = want == self.replid
            || (want == self.replid2 && from.is_some_and(|o| o <= self.offset2));
        let missed = from.filter(|_| known).and_then(|o| backlog.since(o));
        client.role = Role::Replica { ack: 0, port };
        let mut reply = Vec::new();
        match missed {
            Some(missed) => {
                self.sync_partial_ok += 1;
                info!(
                    "replica {id} (port {port}) continues from offset {} ({} bytes)",
                    from.unwrap_or(0),
                    missed.len()
                );
                encode::simple(&mut reply, &format!("CONTINUE {}", self.replid));
                reply.extend_from_slice(&missed);
            }
            None => {
                self.sync_full += 1;
                let copy = snapshot::encode(&self.db, db::unix_ms());
                info!(
                    "replica {id} (port {port}): full copy, {} keys, {} bytes, offset {}",
                    self.db.len(),
                    copy.len(),
                    self.offset
                );
                encode::simple(&mut reply, &format!("FULL {} {}", self.replid, self.offset));
                encode::bulk(&mut reply, &copy);
            }
        }
        let _ = conns.send(id, &reply);
    }

    /// `KVACK offset` from a replica.
    pub fn kvack(
        &mut self,
        conns: &mut Connections<'_>,
        _: ConnId,
        client: &mut Client,
        args: &[&[u8]],
    ) {
        // The `WAIT`s this satisfies are answered when `on_data` has put
        // the client back in the table, where `acked` counts it.
        let _ = conns;
        if let (Role::Replica { ack, .. }, Some(n)) = (&mut client.role, parse_i64(args[1])) {
            *ack = (*ack).max(n.max(0) as u64);
        }
    }

    /// `REPLICAOF NO ONE` or `REPLICAOF HOST PORT`.
    pub fn replicaof(&mut self, conns: &mut Connections<'_>, args: &[&[u8]]) {
        if args[1].eq_ignore_ascii_case(b"no") && args[2].eq_ignore_ascii_case(b"one") {
            if let Some(up) = self.upstream.take() {
                if let Some(link) = up.link {
                    let _ = conns.abort(link);
                }
                // Our history up to here is still good for the other replicas
                // of our old primary: they may continue from it.
                self.replid2 = std::mem::replace(&mut self.replid, new_replid());
                self.offset2 = self.offset;
                info!("promoted to primary at offset {}", self.offset);
            }
            return encode::simple(self.out_buffer(), "OK");
        }
        let Some(addr) = parse_addr(args[1], args[2]) else {
            return encode::error(
                self.out_buffer(),
                "ERR Invalid master address (an IP address or localhost, and a port)",
            );
        };
        if self.upstream.as_ref().is_some_and(|u| u.addr == addr) {
            return encode::simple(
                self.out_buffer(),
                "OK Already connected to specified master",
            );
        }
        self.follow(conns, addr);
        encode::simple(self.out_buffer(), "OK");
    }

    /// The periodic work of the replication: reconnect when due, and ack
    /// once a second.
    pub fn replication_tick(&mut self, conns: &mut Connections<'_>) {
        let now = Instant::now();
        let Some(up) = self.upstream.as_ref() else {
            return;
        };
        if up.link.is_none() && now >= up.next_attempt {
            self.connect_upstream(conns);
        } else if up.state == LinkState::Online && now >= up.last_ack + Duration::from_secs(1) {
            self.send_ack(conns);
        }
    }
}
