//! The handler: one [`Kv`] holds the keyspace, the clients and the
//! replication state; `on_data` decodes every command in what arrived,
//! runs them in order and sends all their replies in one buffer (one write
//! for a whole pipeline).
//!
//! The connection-level commands live here; the data commands in
//! `commands.rs`; replication in `replication.rs`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use reactor::codec::resp::{Limits, Protocol, RequestDecoder, encode, parse_i64};
use reactor::service::{CloseReason, ConnId, Connections, Handler, Origin};

use crate::backlog::Backlog;
use crate::commands::{self, Command, Ctx, Direct, NOT_INTEGER, SYNTAX, flags};
use crate::db::{self, Db, Policy};
use crate::replication::{Upstream, new_replid};
use crate::snapshot;

/// Settings from the command line (some changeable by `CONFIG SET`).
#[derive(Clone, Debug)]
pub struct Settings {
    pub port: u16,
    pub requirepass: Option<Vec<u8>>,
    pub maxmemory: usize,
    pub policy: Policy,
    pub limits: Limits,
    pub max_clients: usize,
    pub snapshot: Option<PathBuf>,
    pub client_output_limit: usize,
    pub repl_output_limit: usize,
    pub repl_backlog: usize,
    /// The password a replica gives its primary (`--primary-auth`).
    pub primary_auth: Option<Vec<u8>>,
}

/// What a connection is to us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A client.
    Normal,
    /// A replica fed by us: it acknowledged `ack` bytes of the stream.
    Replica { ack: u64, port: u16 },
    /// Our link to our primary.
    PrimaryLink,
}

/// What a client that has not authenticated may send, as Redis allows
/// it: commands of up to 10 arguments of 16 KiB. Without this bound a
/// stranger could make the server hold `--max-bulk` per connection.
const UNAUTHENTICATED: reactor::codec::resp::Limits = reactor::codec::resp::Limits {
    max_bulk: 16 * 1024,
    max_array: 10,
    max_inline: 16 * 1024,
    max_depth: 32,
};

/// One connection's state.
#[derive(Debug)]
pub struct Client {
    pub id: u64,
    pub proto: Protocol,
    pub authed: bool,
    pub name: Option<Vec<u8>>,
    pub decoder: RequestDecoder,
    /// Commands queued by `MULTI`, and whether one was refused.
    pub multi: Option<Vec<Vec<Vec<u8>>>>,
    pub multi_failed: bool,
    /// `WATCH`: the keyspace's write counter when it was called.
    pub watched: Option<u64>,
    pub role: Role,
    /// Blocked in `WAIT`: reading paused, commands after it wait.
    pub blocked: bool,
}

/// A client blocked in `WAIT`.
#[derive(Debug)]
pub struct Waiter {
    pub conn: ConnId,
    pub offset: u64,
    pub replicas: usize,
    pub deadline: Option<Instant>,
}

/// What running one command asks of the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// `QUIT`, a protocol error: send what is queued, then close.
    Close,
    /// `WAIT`: stop reading commands until it is answered.
    Block,
}

/// The server.
pub struct Kv {
    pub db: Db,
    pub settings: Settings,
    table: HashMap<&'static [u8], &'static Command>,
    pub clients: Vec<Option<Client>>,
    next_client_id: u64,
    pub started: Instant,
    pub total_commands: u64,
    pub total_connections: u64,
    /// Replicas served a full copy, and continued from the backlog (INFO's
    /// `sync_full` and `sync_partial_ok`).
    pub sync_full: u64,
    pub sync_partial_ok: u64,
    /// Replies being built for the connection being served.
    out: Vec<u8>,
    /// Keys found expired while running commands.
    pub expired: Vec<Vec<u8>>,
    /// Replication stream not yet handed to the backlog and the replicas.
    pub stream: Vec<u8>,
    /// The replication id and offset (ours when primary, our primary's
    /// when replica), the previous id we can still continue from, and the
    /// backlog (`None` until a replica first attaches).
    pub replid: String,
    pub replid2: String,
    pub offset2: u64,
    pub offset: u64,
    pub backlog: Option<Backlog>,
    pub upstream: Option<Upstream>,
    pub waiters: Vec<Waiter>,
    /// The command being run is the last one of what arrived, with few
    /// replies before it: a large value may go straight to the connection
    /// (see `commands::value_bulk`). A pipeline's replies are gathered
    /// instead: past the service's `TURN_MAX` (256 KiB) they are queued as
    /// one chunk, bypassing the per-turn arena, which many connections'
    /// 16 KiB values would otherwise make grow and shrink every turn.
    direct_ok: bool,
    /// Running an `EXEC`'s queue: a `WAIT` in it answers at once.
    in_exec: bool,
}

impl Kv {
    pub fn new(settings: Settings, db: Db) -> Kv {
        Kv {
            db,
            settings,
            table: commands::table(),
            clients: Vec::new(),
            next_client_id: 1,
            started: Instant::now(),
            total_commands: 0,
            total_connections: 0,
            sync_full: 0,
            sync_partial_ok: 0,
            out: Vec::with_capacity(16 * 1024),
            expired: Vec::new(),
            stream: Vec::new(),
            replid: new_replid(),
            replid2: "0".repeat(40),
            offset2: 0,
            offset: 0,
            backlog: None,
            upstream: None,
            waiters: Vec::new(),
            direct_ok: false,
            in_exec: false,
        }
    }

    fn new_client(&mut self, role: Role) -> Client {
        let authed = self.settings.requirepass.is_none() || role == Role::PrimaryLink;
        let id = self.next_client_id;
        self.next_client_id += 1;
        Client {
            id,
            proto: Protocol::Resp2,
            authed,
            name: None,
            decoder: RequestDecoder::new(if authed {
                self.settings.limits
            } else {
                UNAUTHENTICATED
            }),
            multi: None,
            multi_failed: false,
            watched: None,
            role,
            blocked: false,
        }
    }

    pub fn client(&mut self, id: ConnId) -> Option<&mut Client> {
        self.clients.get_mut(id.index()).and_then(Option::as_mut)
    }

    /// The reply buffer of the connection being served.
    pub fn out_buffer(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    pub fn is_replica(&self) -> bool {
        self.upstream.is_some()
    }

    /// Saves the snapshot, if one is configured; logs the outcome.
    pub fn save(&self) -> Result<(), String> {
        let Some(path) = &self.settings.snapshot else {
            return Err("ERR no --snapshot path is configured".into());
        };
        match snapshot::save(path, &self.db, db::unix_ms()) {
            Ok(bytes) => {
                info!("snapshot saved to {} ({bytes} bytes)", path.display());
                Ok(())
            }
            Err(e) => {
                warn!("snapshot to {} failed: {e}", path.display());
                Err(format!("ERR snapshot failed: {e}"))
            }
        }
    }

    /// Runs the commands in `data` for `client`; returns the bytes used.
    /// Replies are appended to `self.out`.
    pub fn run_commands(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        client: &mut Client,
        data: &[u8],
    ) -> (usize, Flow) {
        let now = db::unix_ms();
        let mut pos = 0;
        let mut args: Vec<&[u8]> = Vec::with_capacity(8);
        while pos < data.len() {
            let len = match client.decoder.decode(&data[pos..]) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => {
                    debug!("{id}: {e}");
                    encode::error(&mut self.out, &format!("ERR {e}"));
                    return (data.len(), Flow::Close);
                }
            };
            args.clear();
            args.extend(client.decoder.args(&data[pos..]));
            let from = pos;
            pos += len;
            self.direct_ok = pos == data.len();
            if args.is_empty() {
                continue;
            }
            let flow = self.dispatch(conns, id, client, &args, now);
            if client.role == Role::PrimaryLink {
                self.applied_from_primary(&data[from..pos]);
                // A replica does not answer its primary; but a write it
                // could not apply means the two now differ, which must not
                // pass in silence.
                if self.out.first() == Some(&b'-') {
                    warn!(
                        "{id}: a write from the primary failed here ({}): this replica differs from it",
                        String::from_utf8_lossy(&self.out).trim_end()
                    );
                }
                self.out.clear();
            } else if self.out.len() + conns.output_len(id).unwrap_or(0)
                > conns.config().get_high_water()
            {
                // Enough replies for a client that may not be reading: the
                // rest of its pipeline waits in the input buffer until its
                // output drains (the service redelivers it then), so one
                // read of `KEYS *` a thousand times cannot build a
                // thousand replies at once.
                return (pos, flow);
            }
            if flow != Flow::Continue {
                return (pos, flow);
            }
        }
        (pos, Flow::Continue)
    }

    /// Checks a command (name, arity, auth, `MULTI` queueing) and runs it.
    fn dispatch(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        client: &mut Client,
        args: &[&[u8]],
        now: u64,
    ) -> Flow {
        self.total_commands += 1;
        let mut lower = [0u8; 24];
        let name = args[0];
        let cmd = if name.len() <= lower.len() {
            let lower = &mut lower[..name.len()];
            lower.copy_from_slice(name);
            lower.make_ascii_lowercase();
            self.table.get(&*lower).copied()
        } else {
            None
        };
        let Some(cmd) = cmd else {
            client.multi_failed |= client.multi.is_some();
            encode::error(&mut self.out, &commands::unknown_command(args));
            return Flow::Continue;
        };
        if !cmd.arity_ok(args.len()) {
            client.multi_failed |= client.multi.is_some();
            encode::error(&mut self.out, &commands::arity_error(cmd.name));
            return Flow::Continue;
        }
        if !client.authed && !cmd.has(flags::NOAUTH) {
            encode::error(&mut self.out, "NOAUTH Authentication required.");
            return Flow::Continue;
        }
        if let Some(queue) = client.multi.as_mut() {
            if cmd.has(flags::NOTX) {
                client.multi_failed = true;
                encode::error(
                    &mut self.out,
                    "ERR Command not allowed inside a transaction",
                );
                return Flow::Continue;
            }
            if !cmd.has(flags::NOQUEUE) {
                queue.push(args.iter().map(|a| a.to_vec()).collect());
                encode::simple(&mut self.out, "QUEUED");
                return Flow::Continue;
            }
        }
        self.execute(conns, id, client, cmd, args, now)
    }

    /// Runs a checked command.
    fn execute(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        client: &mut Client,
        cmd: &'static Command,
        args: &[&[u8]],
        now: u64,
    ) -> Flow {
        let Some(run) = cmd.run else {
            return self.connection_command(conns, id, client, cmd, args, now);
        };
        let write = cmd.has(flags::WRITE);
        if write && self.is_replica() && client.role != Role::PrimaryLink {
            encode::error(
                &mut self.out,
                "READONLY You can't write against a read only replica.",
            );
            return Flow::Continue;
        }
        if cmd.has(flags::DENYOOM) && client.role != Role::PrimaryLink && !self.make_room() {
            encode::error(
                &mut self.out,
                "OOM command not allowed when used memory > 'maxmemory'.",
            );
            return Flow::Continue;
        }
        // Only a primary with a backlog writes the stream; a replica's own
        // lazy deletions are not part of its primary's stream.
        let streaming = self.backlog.is_some() && !self.is_replica();
        let direct = (client.role == Role::Normal && self.direct_ok && self.out.len() < 4096)
            .then_some(Direct { conns, id });
        let mut ctx = Ctx {
            max_string: self.settings.limits.max_bulk,
            db: &mut self.db,
            proto: client.proto,
            now,
            out: &mut self.out,
            expired: &mut self.expired,
            stream: streaming.then_some(&mut self.stream),
            direct,
        };
        run(&mut ctx, args);
        self.flush_expired();
        Flow::Continue
    }

    /// Sends `DEL` for keys expired lazily (on a primary that streams).
    pub fn flush_expired(&mut self) {
        if self.backlog.is_some() && !self.is_replica() {
            for key in self.expired.drain(..) {
                encode::command(&mut self.stream, &[&b"DEL"[..], &key]);
            }
        }
        self.expired.clear();
    }

    /// Under `maxmemory`, or made so by eviction (`allkeys-lru`). False if
    /// a write must be refused.
    fn make_room(&mut self) -> bool {
        let limit = self.settings.maxmemory;
        if limit == 0 || self.db.used <= limit {
            return true;
        }
        match self.settings.policy {
            Policy::NoEviction => false,
            Policy::AllKeysLru => {
                let ok = self.db.evict_to(limit, &mut self.expired);
                self.flush_expired();
                ok
            }
        }
    }

    fn connection_command(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        client: &mut Client,
        cmd: &'static Command,
        args: &[&[u8]],
        now: u64,
    ) -> Flow {
        let proto = client.proto;
        let out = &mut self.out;
        let sub = |i: usize| args.get(i).map(|a| a.to_ascii_lowercase());
        match cmd.name {
            "select" => match parse_i64(args[1]) {
                Some(0) => encode::simple(out, "OK"),
                Some(_) => encode::error(out, "ERR DB index is out of range"),
                None => encode::error(out, NOT_INTEGER),
            },
            "quit" => {
                encode::simple(out, "OK");
                return Flow::Close;
            }
            "hello" => self.hello(client, args),
            "auth" => {
                let (user, pass) = match args.len() {
                    2 => (&b"default"[..], args[1]),
                    3 => (args[1], args[2]),
                    _ => {
                        encode::error(out, SYNTAX);
                        return Flow::Continue;
                    }
                };
                match &self.settings.requirepass {
                    None if args.len() == 2 => encode::error(
                        out,
                        "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                    ),
                    expected => {
                        let ok =
                            user == b"default" && expected.as_deref().is_none_or(|p| p == pass);
                        if ok {
                            client.authed = true;
                            client.decoder.set_limits(self.settings.limits);
                            encode::simple(out, "OK");
                        } else {
                            encode::error(
                                out,
                                "WRONGPASS invalid username-password pair or user is disabled.",
                            );
                        }
                    }
                }
            }
            "multi" => {
                if client.multi.is_some() {
                    encode::error(out, "ERR MULTI calls can not be nested");
                } else {
                    client.multi = Some(Vec::new());
                    client.multi_failed = false;
                    encode::simple(out, "OK");
                }
            }
            "discard" => {
                if client.multi.take().is_some() {
                    client.watched = None;
                    encode::simple(out, "OK");
                } else {
                    encode::error(out, "ERR DISCARD without MULTI");
                }
            }
            "watch" => {
                if client.multi.is_some() {
                    encode::error(out, "ERR WATCH inside MULTI is not allowed");
                } else {
                    client.watched.get_or_insert(self.db.dirty);
                    encode::simple(out, "OK");
                }
            }
            "unwatch" => {
                client.watched = None;
                encode::simple(out, "OK");
            }
            "exec" => return self.exec(conns, id, client, now),
            "client" => match sub(1).as_deref() {
                Some(b"setname") if args.len() == 3 => {
                    if args[2].iter().any(|&b| b <= b' ' || b > b'~') {
                        encode::error(
                            out,
                            "ERR Client names cannot contain spaces, newlines or special characters.",
                        );
                    } else {
                        client.name = (!args[2].is_empty()).then(|| args[2].to_vec());
                        encode::simple(out, "OK");
                    }
                }
                Some(b"getname") => match &client.name {
                    Some(n) => encode::bulk(out, n),
                    None => encode::null(out, proto),
                },
                Some(b"id") => encode::integer(out, client.id as i64),
                Some(b"setinfo") if args.len() == 4 => encode::simple(out, "OK"),
                Some(b"info") => {
                    let text = format!(
                        "id={} name={} resp={}\n",
                        client.id,
                        String::from_utf8_lossy(client.name.as_deref().unwrap_or_default()),
                        if proto == Protocol::Resp3 { 3 } else { 2 }
                    );
                    encode::bulk(out, text.as_bytes());
                }
                _ => encode::error(
                    out,
                    &format!(
                        "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                        commands::printable(args[1])
                    ),
                ),
            },
            "command" => match sub(1).as_deref() {
                None => encode::array_header(out, 0),
                Some(b"count") => encode::integer(out, commands::COMMANDS.len() as i64),
                Some(b"docs") => encode::map_header(out, 0, proto),
                Some(_) => encode::array_header(out, 0),
            },
            "config" => self.config(args, proto),
            "info" => {
                let text = self.info(conns, args.get(1).copied());
                encode::bulk(&mut self.out, text.as_bytes());
            }
            "save" => match self.save() {
                Ok(()) => encode::simple(&mut self.out, "OK"),
                Err(e) => encode::error(&mut self.out, &e),
            },
            "shutdown" => {
                // Redis 7's options: NOSAVE, SAVE, NOW, FORCE, ABORT (the
                // last three change nothing here but ABORT, which has
                // nothing to abort).
                let options: Vec<Vec<u8>> = (1..args.len()).filter_map(&sub).collect();
                if options.iter().any(|o| {
                    !matches!(
                        o.as_slice(),
                        b"nosave" | b"save" | b"now" | b"force" | b"abort"
                    )
                }) {
                    encode::error(&mut self.out, commands::SYNTAX);
                    return Flow::Continue;
                }
                if options.iter().any(|o| o == b"abort") {
                    encode::error(&mut self.out, "ERR No shutdown in progress.");
                    return Flow::Continue;
                }
                let nosave = options.iter().any(|o| o == b"nosave");
                if !nosave && self.settings.snapshot.is_some() {
                    if let Err(e) = self.save() {
                        encode::error(&mut self.out, &e);
                        return Flow::Continue;
                    }
                }
                info!("SHUTDOWN from {id}: stopping");
                conns.reactor().stop();
                return Flow::Close;
            }
            "wait" => return self.wait(conns, id, client, args),
            "replicaof" | "slaveof" => self.replicaof(conns, args),
            "kvsync" => self.kvsync(conns, id, client, args),
            "kvack" => self.kvack(conns, id, client, args),
            other => encode::error(out, &format!("ERR unhandled command '{other}'")),
        }
        Flow::Continue
    }

    fn hello(&mut self, client: &mut Client, args: &[&[u8]]) {
        let out = &mut self.out;
        let mut proto = client.proto;
        if let Some(v) = args.get(1) {
            match parse_i64(v) {
                Some(2) => proto = Protocol::Resp2,
                Some(3) => proto = Protocol::Resp3,
                Some(_) => return encode::error(out, "NOPROTO unsupported protocol version"),
                None => {
                    return encode::error(
                        out,
                        "ERR Protocol version is not an integer or out of range",
                    );
                }
            }
        }
        let mut i = 2;
        let mut name = None;
        while i < args.len() {
            let opt = args[i].to_ascii_lowercase();
            if opt == b"auth" && i + 2 < args.len() {
                let ok = args[i + 1] == b"default"
                    && self
                        .settings
                        .requirepass
                        .as_deref()
                        .is_none_or(|p| p == args[i + 2]);
                if !ok {
                    return encode::error(
                        out,
                        "WRONGPASS invalid username-password pair or user is disabled.",
                    );
                }
                client.authed = true;
                client.decoder.set_limits(self.settings.limits);
                i += 3;
            } else if opt == b"setname" && i + 1 < args.len() {
                name = Some(args[i + 1].to_vec());
                i += 2;
            } else {
                return encode::error(
                    out,
                    &format!(
                        "ERR Syntax error in HELLO option '{}'",
                        commands::printable(args[i])
                    ),
                );
            }
        }
        if !client.authed {
            return encode::error(
                out,
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
            );
        }
        if name.is_some() {
            client.name = name;
        }
        client.proto = proto;
        encode::map_header(out, 7, proto);
        encode::bulk(out, b"server");
        encode::bulk(out, b"redis");
        encode::bulk(out, b"version");
        encode::bulk(out, crate::REDIS_VERSION.as_bytes());
        encode::bulk(out, b"proto");
        encode::integer(out, if proto == Protocol::Resp3 { 3 } else { 2 });
        encode::bulk(out, b"id");
        encode::integer(out, client.id as i64);
        encode::bulk(out, b"mode");
        encode::bulk(out, b"standalone");
        encode::bulk(out, b"role");
        encode::bulk(
            out,
            if self.upstream.is_some() {
                b"replica"
            } else {
                b"master"
            },
        );
        encode::bulk(out, b"modules");
        encode::array_header(out, 0);
    }

    fn exec(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        client: &mut Client,
        now: u64,
    ) -> Flow {
        let Some(queue) = client.multi.take() else {
            encode::error(&mut self.out, "ERR EXEC without MULTI");
            return Flow::Continue;
        };
        let watched = client.watched.take();
        if std::mem::take(&mut client.multi_failed) {
            encode::error(
                &mut self.out,
                "EXECABORT Transaction discarded because of previous errors.",
            );
            return Flow::Continue;
        }
        if watched.is_some_and(|w| w != self.db.dirty) {
            encode::null_array(&mut self.out, client.proto);
            return Flow::Continue;
        }
        // On one thread a transaction is its queue run at once; replicas get
        // it wrapped in MULTI/EXEC so that they apply it as one.
        self.direct_ok = false;
        let mark = self.stream.len();
        encode::command(&mut self.stream, &["MULTI"]);
        let opened = self.stream.len();
        encode::array_header(&mut self.out, queue.len());
        self.in_exec = true;
        for owned in &queue {
            let args: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
            let name = args[0].to_ascii_lowercase();
            if let Some(cmd) = self.table.get(name.as_slice()).copied() {
                self.execute(conns, id, client, cmd, &args, now);
            }
        }
        self.in_exec = false;
        if self.stream.len() == opened {
            self.stream.truncate(mark);
        } else {
            encode::command(&mut self.stream, &["EXEC"]);
        }
        Flow::Continue
    }

    fn config(&mut self, args: &[&[u8]], proto: Protocol) {
        let sub = args[1].to_ascii_lowercase();
        let out = &mut self.out;
        match sub.as_slice() {
            b"get" if args.len() >= 3 => {
                let s = &self.settings;
                let fields: [(&str, String); 8] = [
                    ("maxmemory", s.maxmemory.to_string()),
                    ("maxmemory-policy", s.policy.name().to_string()),
                    ("maxclients", s.max_clients.to_string()),
                    ("port", s.port.to_string()),
                    ("save", String::new()),
                    ("appendonly", "no".into()),
                    ("databases", "1".into()),
                    ("proto-max-bulk-len", s.limits.max_bulk.to_string()),
                ];
                let found: Vec<&(&str, String)> = fields
                    .iter()
                    .filter(|(name, _)| {
                        args[2..]
                            .iter()
                            .any(|p| commands::glob(&p.to_ascii_lowercase(), name.as_bytes()))
                    })
                    .collect();
                encode::map_header(out, found.len(), proto);
                for (name, value) in found {
                    encode::bulk(out, name.as_bytes());
                    encode::bulk(out, value.as_bytes());
                }
            }
            b"set" if args.len() == 4 => {
                let value = String::from_utf8_lossy(args[3]).into_owned();
                match args[2].to_ascii_lowercase().as_slice() {
                    b"maxmemory" => match crate::parse_size(&value) {
                        Ok(n) => {
                            self.settings.maxmemory = n;
                            encode::simple(out, "OK");
                        }
                        Err(e) => encode::error(out, &format!("ERR CONFIG SET failed: {e}")),
                    },
                    b"maxmemory-policy" => match Policy::parse(&value) {
                        Ok(p) => {
                            self.settings.policy = p;
                            encode::simple(out, "OK");
                        }
                        Err(e) => encode::error(out, &format!("ERR CONFIG SET failed: {e}")),
                    },
                    _ => encode::error(
                        out,
                        &format!(
                            "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                            commands::printable(args[2])
                        ),
                    ),
                }
            }
            b"resetstat" => {
                self.total_commands = 0;
                self.db.hits = 0;
                self.db.misses = 0;
                encode::simple(out, "OK");
            }
            _ => encode::error(
                out,
                &format!(
                    "ERR unknown subcommand or wrong number of arguments for '{}'. Try CONFIG HELP.",
                    commands::printable(args[1])
                ),
            ),
        }
    }

    fn wait(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        client: &mut Client,
        args: &[&[u8]],
    ) -> Flow {
        let (Some(n), Some(timeout)) = (parse_i64(args[1]), parse_i64(args[2])) else {
            encode::error(&mut self.out, NOT_INTEGER);
            return Flow::Continue;
        };
        if timeout < 0 {
            encode::error(&mut self.out, "ERR timeout is negative");
            return Flow::Continue;
        }
        if self.is_replica() {
            encode::error(
                &mut self.out,
                "ERR WAIT cannot be used with replica instances.",
            );
            return Flow::Continue;
        }
        self.flush_stream(conns);
        let acked = self.acked(self.offset);
        if acked >= n.max(0) as usize || self.in_exec {
            encode::integer(&mut self.out, acked as i64);
            return Flow::Continue;
        }
        self.waiters.push(Waiter {
            conn: id,
            offset: self.offset,
            replicas: n as usize,
            deadline: (timeout > 0).then(|| Instant::now() + Duration::from_millis(timeout as u64)),
        });
        client.blocked = true;
        Flow::Block
    }

    /// How many replicas have acknowledged `offset`.
    pub fn acked(&self, offset: u64) -> usize {
        self.clients
            .iter()
            .flatten()
            .filter(|c| matches!(c.role, Role::Replica { ack, .. } if ack >= offset))
            .count()
    }

    /// Answers the `WAIT`s that are satisfied, or all of them past their
    /// deadline (`timed_out`), and lets their clients read again.
    pub fn wake_waiters(&mut self, conns: &mut Connections<'_>, now: Instant) {
        let mut i = 0;
        while i < self.waiters.len() {
            let w = &self.waiters[i];
            let acked = self.acked(w.offset);
            if acked >= w.replicas || w.deadline.is_some_and(|d| d <= now) {
                let w = self.waiters.swap_remove(i);
                let mut reply = Vec::new();
                encode::integer(&mut reply, acked as i64);
                if let Some(c) = self.client(w.conn) {
                    c.blocked = false;
                    let _ = conns.send(w.conn, &reply);
                    let _ = conns.resume_reading(w.conn);
                }
            } else {
                i += 1;
            }
        }
    }

    /// Hands the stream written since the last call to the backlog and to
    /// every replica (stored once for all of them), and drops a replica
    /// whose output passed its limit: it resynchronises when it returns.
    pub fn flush_stream(&mut self, conns: &mut Connections<'_>) {
        if self.stream.is_empty() {
            return;
        }
        self.offset += self.stream.len() as u64;
        if let Some(backlog) = self.backlog.as_mut() {
            backlog.append(&self.stream);
        }
        let replicas: Vec<ConnId> = self.replica_ids(conns);
        conns.broadcast(replicas.iter().copied(), &self.stream);
        self.stream.clear();
        for r in replicas {
            self.enforce_output_limit(conns, r, self.settings.repl_output_limit);
        }
    }

    pub fn replica_ids(&self, conns: &Connections<'_>) -> Vec<ConnId> {
        conns
            .ids()
            .filter(|id| {
                self.clients
                    .get(id.index())
                    .and_then(Option::as_ref)
                    .is_some_and(|c| matches!(c.role, Role::Replica { .. }))
            })
            .collect()
    }

    /// Closes `id` at once if its queued output is over `limit`.
    fn enforce_output_limit(&mut self, conns: &mut Connections<'_>, id: ConnId, limit: usize) {
        if conns.output_len(id).is_some_and(|n| n > limit) {
            warn!("{id}: output buffer over {limit} bytes (the peer is not reading): dropped");
            let _ = conns.abort(id);
        }
    }
}

impl Handler for Kv {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, origin: Origin) {
        let role = match origin {
            Origin::Connected => Role::PrimaryLink,
            Origin::Accepted(_) => Role::Normal,
        };
        self.total_connections += 1;
        let client = self.new_client(role);
        debug!("{id}: open ({role:?}), client id {}", client.id);
        if self.clients.len() <= id.index() {
            self.clients.resize_with(id.index() + 1, || None);
        }
        self.clients[id.index()] = Some(client);
        if role == Role::PrimaryLink {
            self.link_opened(conns, id);
        }
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let Some(mut client) = self.clients.get_mut(id.index()).and_then(Option::take) else {
            return data.len();
        };
        if client.blocked {
            self.clients[id.index()] = Some(client);
            return 0;
        }
        self.out.clear();
        let (used, flow) = if client.role == Role::PrimaryLink {
            self.link_data(conns, id, &mut client, data)
        } else {
            self.run_commands(conns, id, &mut client, data)
        };
        self.clients[id.index()] = Some(client);
        match client_role(self, id) {
            Some(Role::PrimaryLink) | Some(Role::Replica { .. }) => {}
            _ => {
                if !self.out.is_empty() {
                    let _ = conns.send(id, &self.out);
                }
            }
        }
        self.out.clear();
        self.flush_stream(conns);
        if !self.waiters.is_empty() {
            self.wake_waiters(conns, Instant::now());
        }
        self.enforce_output_limit(conns, id, self.settings.client_output_limit.max(1));
        match flow {
            Flow::Continue => {}
            Flow::Close => {
                let _ = conns.close(id);
            }
            Flow::Block => {
                let _ = conns.pause_reading(id);
            }
        }
        used
    }

    fn on_close(&mut self, conns: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        let Some(client) = self.clients.get_mut(id.index()).and_then(Option::take) else {
            // An outgoing connect that failed never opened.
            self.link_closed(conns, id, reason);
            return;
        };
        debug!("{id}: closed ({reason})");
        self.waiters.retain(|w| w.conn != id);
        match client.role {
            Role::PrimaryLink => self.link_closed(conns, id, reason),
            Role::Replica { port, .. } => info!("replica {id} (port {port}) gone: {reason}"),
            Role::Normal => {}
        }
    }
}

fn client_role(kv: &Kv, id: ConnId) -> Option<Role> {
    kv.clients
        .get(id.index())
        .and_then(Option::as_ref)
        .map(|c| c.role)
}

/// Keys the active expiry cycle may sample per tick (ten ticks a second):
/// at most this much work per turn, however many keys expire at once.
const EXPIRE_SAMPLES_PER_TICK: usize = 5_000;

impl Kv {
    /// The periodic work, ten times a second on a reactor timer (Redis's
    /// `serverCron`): the active expiry cycle, `WAIT` deadlines, and the
    /// replica's reconnects and acknowledgements.
    pub fn tick(&mut self, conns: &mut Connections<'_>) {
        self.db
            .expire_cycle(db::unix_ms(), EXPIRE_SAMPLES_PER_TICK, &mut self.expired);
        self.flush_expired();
        self.wake_waiters(conns, Instant::now());
        self.replication_tick(conns);
        self.flush_stream(conns);
    }
}
