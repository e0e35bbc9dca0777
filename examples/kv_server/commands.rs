//! The data commands: what each does to the keyspace, the reply it writes
//! (with `redis-server` 7's types and error texts), and what it sends to
//! replicas.
//!
//! Connection-level commands (`HELLO`, `AUTH`, `MULTI`, `CLIENT`, `INFO`,
//! replication, ...) are in the table too, for their arity and flags, but
//! without a function: `server.rs` runs them, since they act on the
//! connection or the server rather than on keys.
//!
//! What goes to replicas is the effect, with every deadline absolute: `SET
//! k v EX 10` is sent as `SET k v PXAT <ms>`, `EXPIRE` as `PEXPIREAT`, and a
//! key the primary finds expired as `DEL`. So a replica (or a later replay
//! of the stream) agrees with the primary whatever time it applies it.

use std::collections::{HashMap, VecDeque};

use reactor::codec::resp::{Protocol, encode, parse_i64};
use reactor::service::{ConnId, Connections};

use crate::db::{Db, Value, element_cost, field_cost};

pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
pub const SYNTAX: &str = "ERR syntax error";
pub const OVERFLOW: &str = "ERR increment or decrement would overflow";

/// What a command is allowed to do.
pub mod flags {
    /// Changes the keyspace: refused on a replica, sent to replicas.
    pub const WRITE: u8 = 1;
    /// May grow memory: refused with `-OOM` over `maxmemory` (noeviction).
    pub const DENYOOM: u8 = 2;
    /// Allowed before `AUTH`.
    pub const NOAUTH: u8 = 4;
    /// Not queued by `MULTI`: runs at once (`EXEC`, `DISCARD`, ...).
    pub const NOQUEUE: u8 = 8;
    /// Refused inside `MULTI`, and the transaction with it (as Redis's
    /// `no-multi`): what stops the server or rewrites its role.
    pub const NOTX: u8 = 16;
}

/// Where a large value goes without being copied into the reply buffer
/// first: straight to the connection's output, after the replies before it.
pub struct Direct<'a, 'b> {
    pub conns: &'a mut Connections<'b>,
    pub id: ConnId,
}

/// Values at least this long are sent with [`Direct`]: one copy (into the
/// connection's output) instead of two.
const DIRECT_MIN: usize = 4096;

/// Appends a bulk string holding a stored value: small ones to the reply
/// buffer, large ones (with what the buffer holds before them) straight to
/// the connection, so a 16 KiB `GET` copies its value once, as Redis does.
pub fn value_bulk(out: &mut Vec<u8>, direct: &mut Option<Direct<'_, '_>>, bytes: &[u8]) {
    match direct {
        Some(d) if bytes.len() >= DIRECT_MIN => {
            encode::header(out, b'$', bytes.len());
            let _ = d.conns.send(d.id, out);
            let _ = d.conns.send(d.id, bytes);
            out.clear();
            out.extend_from_slice(b"\r\n");
        }
        _ => encode::bulk(out, bytes),
    }
}

/// Everything a data command works with.
pub struct Ctx<'a, 'b> {
    pub db: &'a mut Db,
    /// The longest string a command may make (`--max-bulk`, Redis's
    /// `proto-max-bulk-len`): a value that could not be sent back is not
    /// made.
    pub max_string: usize,
    pub proto: Protocol,
    /// The time of this batch of commands, ms since the epoch.
    pub now: u64,
    /// The reply buffer of the connection.
    pub out: &'a mut Vec<u8>,
    /// Keys deleted by lazy expiry on the way (sent as `DEL`).
    pub expired: &'a mut Vec<Vec<u8>>,
    /// The replication stream, when anyone listens to it.
    pub stream: Option<&'a mut Vec<u8>>,
    /// The connection, for large values (`None` where replies are dropped).
    pub direct: Option<Direct<'a, 'b>>,
}

impl Ctx<'_, '_> {
    fn error(&mut self, text: &str) {
        encode::error(self.out, text);
    }
    fn ok(&mut self) {
        encode::simple(self.out, "OK");
    }
    fn null(&mut self) {
        encode::null(self.out, self.proto);
    }
    /// Sends a command to replicas, after the `DEL`s of the keys this
    /// command found expired (which must come first: `SET` on an expired
    /// key, then its `DEL`, would delete the new value).
    fn propagate<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        if let Some(stream) = self.stream.as_deref_mut() {
            for key in self.expired.drain(..) {
                encode::command(stream, &[&b"DEL"[..], &key]);
            }
            encode::command(stream, args);
        }
    }
}

pub type Run = fn(&mut Ctx<'_, '_>, &[&[u8]]);

/// One command: its name, Redis's arity (negative: at least that many
/// arguments, the name included), its flags, and its function if it is a
/// data command.
pub struct Command {
    pub name: &'static str,
    pub arity: i32,
    pub flags: u8,
    pub run: Option<Run>,
}

impl Command {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i32;
        if self.arity >= 0 {
            argc == self.arity
        } else {
            argc >= -self.arity
        }
    }
}

use flags::{DENYOOM, NOAUTH, NOQUEUE, NOTX, WRITE};

macro_rules! commands {
    ($($name:literal $arity:literal $flags:expr, $run:expr;)*) => {
        pub static COMMANDS: &[Command] = &[
            $(Command { name: $name, arity: $arity, flags: $flags, run: $run },)*
        ];
    };
}

commands! {
    "get" 2 0, Some(get);
    "set" -3 WRITE | DENYOOM, Some(set);
    "setex" 4 WRITE | DENYOOM, Some(setex);
    "getdel" 2 WRITE, Some(getdel);
    "del" -2 WRITE, Some(del);
    "unlink" -2 WRITE, Some(del);
    "exists" -2 0, Some(exists);
    "type" 2 0, Some(type_);
    "incr" 2 WRITE | DENYOOM, Some(incr);
    "decr" 2 WRITE | DENYOOM, Some(incr);
    "incrby" 3 WRITE | DENYOOM, Some(incr);
    "decrby" 3 WRITE | DENYOOM, Some(incr);
    "append" 3 WRITE | DENYOOM, Some(append);
    "strlen" 2 0, Some(strlen);
    "mget" -2 0, Some(mget);
    "mset" -3 WRITE | DENYOOM, Some(mset);
    "hset" -4 WRITE | DENYOOM, Some(hset);
    "hget" 3 0, Some(hget);
    "hdel" -3 WRITE, Some(hdel);
    "hgetall" 2 0, Some(hgetall);
    "hlen" 2 0, Some(hlen);
    "hincrby" 4 WRITE | DENYOOM, Some(hincrby);
    "lpush" -3 WRITE | DENYOOM, Some(push);
    "rpush" -3 WRITE | DENYOOM, Some(push);
    "lpop" -2 WRITE, Some(pop);
    "rpop" -2 WRITE, Some(pop);
    "lrange" 4 0, Some(lrange);
    "llen" 2 0, Some(llen);
    "expire" -3 WRITE, Some(expire);
    "pexpire" -3 WRITE, Some(expire);
    "expireat" -3 WRITE, Some(expire);
    "pexpireat" -3 WRITE, Some(expire);
    "ttl" 2 0, Some(ttl);
    "pttl" 2 0, Some(ttl);
    "persist" 2 WRITE, Some(persist);
    "keys" 2 0, Some(keys);
    "scan" -2 0, Some(scan);
    "dbsize" 1 0, Some(dbsize);
    "flushdb" -1 WRITE, Some(flush);
    "flushall" -1 WRITE, Some(flush);
    "ping" -1 0, Some(ping);
    "echo" 2 0, Some(echo);
    // Run by server.rs.
    "select" 2 0, None;
    "quit" -1 NOAUTH | NOQUEUE, None;
    "hello" -1 NOAUTH | NOQUEUE, None;
    "auth" -2 NOAUTH | NOQUEUE, None;
    "multi" 1 NOQUEUE, None;
    "exec" 1 NOQUEUE, None;
    "discard" 1 NOQUEUE, None;
    "watch" -2 NOQUEUE, None;
    "unwatch" 1 0, None;
    "client" -2 0, None;
    "command" -1 0, None;
    "config" -2 0, None;
    "info" -1 0, None;
    "save" 1 NOTX, None;
    "shutdown" -1 NOTX, None;
    "wait" 3 0, None;
    "replicaof" 3 NOTX, None;
    "slaveof" 3 NOTX, None;
    "kvsync" 4 0, None;
    "kvack" 2 0, None;
}

/// The command table, by lower-case name.
pub fn table() -> HashMap<&'static [u8], &'static Command> {
    COMMANDS.iter().map(|c| (c.name.as_bytes(), c)).collect()
}

/// `-ERR wrong number of arguments for 'get' command`
pub fn arity_error(name: &str) -> String {
    format!("ERR wrong number of arguments for '{name}' command")
}

/// Redis 7's unknown-command error, with the first arguments quoted.
pub fn unknown_command(args: &[&[u8]]) -> String {
    let mut text = format!(
        "ERR unknown command '{}', with args beginning with: ",
        printable(args[0])
    );
    for arg in args.iter().skip(1).take(127) {
        text.push_str(&format!("'{}' ", printable(arg)));
    }
    text
}

/// An argument as Redis quotes it in an error: at most 128 bytes, with
/// anything that would break the line replaced.
pub fn printable(arg: &[u8]) -> String {
    String::from_utf8_lossy(&arg[..arg.len().min(128)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn int_arg(arg: &[u8]) -> Option<i64> {
    parse_i64(arg)
}

fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// The string at `key`: `Ok(None)` if absent, `Err` (WRONGTYPE answered)
/// if it is another type.
fn read_str<'c>(ctx: &'c mut Ctx<'_, '_>, key: &[u8]) -> Result<Option<&'c [u8]>, ()> {
    let (now, out) = (ctx.now, &mut *ctx.out);
    match ctx.db.get(key, now, ctx.expired) {
        None => Ok(None),
        Some(e) => match &e.value {
            Value::Str(s) => Ok(Some(s.as_slice())),
            _ => {
                encode::error(out, WRONGTYPE);
                Err(())
            }
        },
    }
}

fn get(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let now = ctx.now;
    match ctx.db.get(args[1], now, ctx.expired).map(|e| &e.value) {
        None => encode::null(ctx.out, ctx.proto),
        Some(Value::Str(s)) => value_bulk(ctx.out, &mut ctx.direct, s),
        Some(_) => encode::error(ctx.out, WRONGTYPE),
    }
}

fn set(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let (key, value) = (args[1], args[2]);
    let mut expire_at: Option<u64> = None;
    let (mut nx, mut xx, mut want_get, mut keepttl) = (false, false, false, false);
    let mut i = 3;
    while i < args.len() {
        let opt = args[i];
        let unit = if is(opt, "ex") || is(opt, "exat") {
            Some(1000)
        } else if is(opt, "px") || is(opt, "pxat") {
            Some(1)
        } else {
            None
        };
        if let Some(unit) = unit {
            if expire_at.is_some() || keepttl || i + 1 >= args.len() {
                return ctx.error(SYNTAX);
            }
            let Some(n) = int_arg(args[i + 1]) else {
                return ctx.error(NOT_INTEGER);
            };
            let absolute = opt.len() == 4;
            let Some(at) = deadline(ctx.now, n, unit, absolute).filter(|_| n > 0) else {
                return ctx.error("ERR invalid expire time in 'set' command");
            };
            expire_at = Some(at);
            i += 2;
            continue;
        }
        if is(opt, "nx") && !xx {
            nx = true;
        } else if is(opt, "xx") && !nx {
            xx = true;
        } else if is(opt, "get") {
            want_get = true;
        } else if is(opt, "keepttl") && expire_at.is_none() {
            keepttl = true;
        } else {
            return ctx.error(SYNTAX);
        }
        i += 1;
    }
    let now = ctx.now;
    // The old value is copied only for `GET`: a plain SET of 16 KiB values
    // must not copy each one it replaces.
    let (present, old_expire, old) = match ctx.db.get_mut(key, now, ctx.expired) {
        None => (false, None, None),
        Some(e) => match &e.value {
            Value::Str(s) => (true, e.expire_at, want_get.then(|| s.clone())),
            _ if want_get => return ctx.error(WRONGTYPE),
            _ => (true, e.expire_at, None),
        },
    };
    let performed = !(nx && present || xx && !present);
    if performed {
        if keepttl {
            expire_at = old_expire;
        }
        ctx.db.set(key, Value::Str(value.to_vec()), expire_at);
        ctx.db.dirty += 1;
        match expire_at {
            Some(t) => ctx.propagate(&[b"SET", key, value, b"PXAT", t.to_string().as_bytes()]),
            None => ctx.propagate(&[b"SET", key, value]),
        }
    }
    if want_get {
        match old {
            Some(s) => encode::bulk(ctx.out, &s),
            None => ctx.null(),
        }
    } else if performed {
        ctx.ok();
    } else {
        ctx.null();
    }
}

/// The absolute deadline, in milliseconds since the epoch, of an expiry of
/// `n` units of `unit` ms (relative to `now`, or absolute): `None` when it
/// does not fit an i64, which Redis refuses as an invalid expire time (a
/// deadline past it would overflow every later sum, and could not be sent
/// to a replica as `PXAT`).
fn deadline(now: u64, n: i64, unit: i64, absolute: bool) -> Option<u64> {
    let ms = n.checked_mul(unit)?;
    let at = if absolute {
        ms
    } else {
        i64::try_from(now).ok()?.checked_add(ms)?
    };
    u64::try_from(at).ok()
}

fn setex(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let Some(secs) = int_arg(args[2]) else {
        return ctx.error(NOT_INTEGER);
    };
    let Some(at) = deadline(ctx.now, secs, 1000, false).filter(|_| secs > 0) else {
        return ctx.error("ERR invalid expire time in 'setex' command");
    };
    ctx.db.set(args[1], Value::Str(args[3].to_vec()), Some(at));
    ctx.db.dirty += 1;
    ctx.propagate(&[b"SET", args[1], args[3], b"PXAT", at.to_string().as_bytes()]);
    ctx.ok();
}

fn getdel(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let value = match read_str(ctx, args[1]) {
        Err(()) => return,
        Ok(v) => v.map(<[u8]>::to_vec),
    };
    match value {
        Some(v) => {
            ctx.db.remove(args[1]);
            ctx.db.dirty += 1;
            ctx.propagate(&[b"DEL", args[1]]);
            value_bulk(ctx.out, &mut ctx.direct, &v);
        }
        None => ctx.null(),
    }
}

fn del(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let mut n = 0;
    for key in &args[1..] {
        let now = ctx.now;
        if ctx.db.get_mut(key, now, ctx.expired).is_some() {
            ctx.db.remove(key);
            n += 1;
        }
    }
    if n > 0 {
        ctx.db.dirty += 1;
        ctx.propagate(args);
    }
    encode::integer(ctx.out, n);
}

fn exists(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let now = ctx.now;
    let n = args[1..]
        .iter()
        .filter(|k| ctx.db.get_mut(k, now, ctx.expired).is_some())
        .count();
    encode::integer(ctx.out, n as i64);
}

fn type_(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let now = ctx.now;
    let name = ctx
        .db
        .get_mut(args[1], now, ctx.expired)
        .map_or("none", |e| e.value.type_name());
    encode::simple(ctx.out, name);
}

fn incr(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let name = args[0];
    let by = if args.len() == 3 {
        match int_arg(args[2]) {
            Some(n) => n,
            None => return ctx.error(NOT_INTEGER),
        }
    } else {
        1
    };
    let by = if name[0].eq_ignore_ascii_case(&b'd') {
        match by.checked_neg() {
            Some(n) => n,
            None => return ctx.error(OVERFLOW),
        }
    } else {
        by
    };
    let now = ctx.now;
    let (current, expire_at) = match ctx.db.get_mut(args[1], now, ctx.expired) {
        None => (0, None),
        Some(e) => match &e.value {
            Value::Str(s) => match int_arg(s) {
                Some(n) => (n, e.expire_at),
                None => return ctx.error(NOT_INTEGER),
            },
            _ => return ctx.error(WRONGTYPE),
        },
    };
    let Some(new) = current.checked_add(by) else {
        return ctx.error(OVERFLOW);
    };
    let mut text = Vec::with_capacity(20);
    encode::digits(&mut text, new);
    match ctx.db.get_mut(args[1], now, ctx.expired) {
        Some(e) => {
            let old = std::mem::replace(&mut e.value, Value::Str(text));
            let (old_len, new_len) = (crate::db::value_cost(&old), crate::db::value_cost(&e.value));
            ctx.db.grow(new_len);
            ctx.db.shrink(old_len);
        }
        None => ctx.db.insert(args[1].to_vec(), Value::Str(text), expire_at),
    }
    ctx.db.dirty += 1;
    ctx.propagate(args);
    encode::integer(ctx.out, new);
}

fn append(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let now = ctx.now;
    let len = match ctx.db.get_mut(args[1], now, ctx.expired) {
        None => {
            ctx.db
                .insert(args[1].to_vec(), Value::Str(args[2].to_vec()), None);
            args[2].len()
        }
        Some(e) => match &mut e.value {
            Value::Str(s) if s.len().saturating_add(args[2].len()) > ctx.max_string => {
                return ctx.error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
            }
            Value::Str(s) => {
                s.extend_from_slice(args[2]);
                let len = s.len();
                ctx.db.grow(args[2].len());
                len
            }
            _ => return ctx.error(WRONGTYPE),
        },
    };
    ctx.db.dirty += 1;
    ctx.propagate(args);
    encode::integer(ctx.out, len as i64);
}

fn strlen(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    if let Ok(v) = read_str(ctx, args[1]) {
        let len = v.map_or(0, <[u8]>::len);
        encode::integer(ctx.out, len as i64);
    }
}

fn mget(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    encode::array_header(ctx.out, args.len() - 1);
    let now = ctx.now;
    for key in &args[1..] {
        match ctx.db.get(key, now, ctx.expired).map(|e| &e.value) {
            Some(Value::Str(s)) => value_bulk(ctx.out, &mut ctx.direct, s),
            _ => encode::null(ctx.out, ctx.proto),
        }
    }
}

fn mset(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    if args.len() % 2 == 0 {
        return ctx.error(&arity_error("mset"));
    }
    for pair in args[1..].chunks(2) {
        ctx.db.set(pair[0], Value::Str(pair[1].to_vec()), None);
    }
    ctx.db.dirty += 1;
    ctx.propagate(args);
    ctx.ok();
}

type Hash = HashMap<Vec<u8>, Vec<u8>>;

/// The hash at `key` for a write, created if absent (`create`).
fn hash_mut<'c>(
    ctx: &'c mut Ctx<'_, '_>,
    key: &[u8],
    create: bool,
) -> Result<Option<&'c mut Hash>, ()> {
    let now = ctx.now;
    if ctx.db.get_mut(key, now, ctx.expired).is_none() {
        if !create {
            return Ok(None);
        }
        ctx.db
            .insert(key.to_vec(), Value::Hash(HashMap::new()), None);
    }
    match ctx.db.get_mut(key, now, ctx.expired).map(|e| &mut e.value) {
        Some(Value::Hash(h)) => Ok(Some(h)),
        _ => {
            encode::error(ctx.out, WRONGTYPE);
            Err(())
        }
    }
}

fn hset(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    if args.len() % 2 != 0 {
        return ctx.error(&arity_error("hset"));
    }
    let Ok(Some(hash)) = hash_mut(ctx, args[1], true) else {
        return;
    };
    let (mut added, mut grown, mut shrunk) = (0, 0, 0);
    for pair in args[2..].chunks(2) {
        grown += field_cost(pair[0], pair[1]);
        match hash.insert(pair[0].to_vec(), pair[1].to_vec()) {
            Some(old) => shrunk += field_cost(pair[0], &old),
            None => added += 1,
        }
    }
    ctx.db.grow(grown);
    ctx.db.shrink(shrunk);
    ctx.db.dirty += 1;
    ctx.propagate(args);
    encode::integer(ctx.out, added);
}

fn hget(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let now = ctx.now;
    match ctx.db.get(args[1], now, ctx.expired).map(|e| &e.value) {
        None => encode::null(ctx.out, ctx.proto),
        Some(Value::Hash(h)) => match h.get(args[2]) {
            Some(v) => value_bulk(ctx.out, &mut ctx.direct, v),
            None => encode::null(ctx.out, ctx.proto),
        },
        Some(_) => ctx.error(WRONGTYPE),
    }
}

fn hdel(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let Ok(found) = hash_mut(ctx, args[1], false) else {
        return;
    };
    let mut removed = 0;
    let mut freed = 0;
    if let Some(hash) = found {
        for field in &args[2..] {
            if let Some(v) = hash.remove(*field) {
                removed += 1;
                freed += field_cost(field, &v);
            }
        }
    }
    ctx.db.shrink(freed);
    if removed > 0 {
        ctx.db.remove_if_empty(args[1]);
        ctx.db.dirty += 1;
        ctx.propagate(args);
    }
    encode::integer(ctx.out, removed);
}

fn hgetall(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let now = ctx.now;
    match ctx.db.get(args[1], now, ctx.expired).map(|e| &e.value) {
        None => encode::map_header(ctx.out, 0, ctx.proto),
        Some(Value::Hash(h)) => {
            encode::map_header(ctx.out, h.len(), ctx.proto);
            for (k, v) in h {
                encode::bulk(ctx.out, k);
                value_bulk(ctx.out, &mut ctx.direct, v);
            }
        }
        Some(_) => ctx.error(WRONGTYPE),
    }
}

fn hlen(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let now = ctx.now;
    match ctx.db.get(args[1], now, ctx.expired).map(|e| &e.value) {
        None => encode::integer(ctx.out, 0),
        Some(Value::Hash(h)) => encode::integer(ctx.out, h.len() as i64),
        Some(_) => ctx.error(WRONGTYPE),
    }
}

fn hincrby(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let Some(by) = int_arg(args[3]) else {
        return ctx.error(NOT_INTEGER);
    };
    let Ok(Some(hash)) = hash_mut(ctx, args[1], true) else {
        return;
    };
    let current = match hash.get(args[2]) {
        None => 0,
        Some(v) => match int_arg(v) {
            Some(n) => n,
            None => {
                return encode::error(ctx.out, "ERR hash value is not an integer");
            }
        },
    };
    let Some(new) = current.checked_add(by) else {
        return encode::error(ctx.out, OVERFLOW);
    };
    let mut text = Vec::new();
    encode::digits(&mut text, new);
    let grown = field_cost(args[2], &text);
    let shrunk = hash
        .insert(args[2].to_vec(), text)
        .map_or(0, |old| field_cost(args[2], &old));
    ctx.db.grow(grown);
    ctx.db.shrink(shrunk);
    ctx.db.dirty += 1;
    ctx.propagate(args);
    encode::integer(ctx.out, new);
}

fn push(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let left = args[0][0].eq_ignore_ascii_case(&b'l');
    let now = ctx.now;
    if ctx.db.get_mut(args[1], now, ctx.expired).is_none() {
        ctx.db
            .insert(args[1].to_vec(), Value::List(VecDeque::new()), None);
    }
    let Some(Value::List(list)) = ctx
        .db
        .get_mut(args[1], now, ctx.expired)
        .map(|e| &mut e.value)
    else {
        return ctx.error(WRONGTYPE);
    };
    let mut grown = 0;
    for v in &args[2..] {
        grown += element_cost(v);
        if left {
            list.push_front(v.to_vec());
        } else {
            list.push_back(v.to_vec());
        }
    }
    let len = list.len();
    ctx.db.grow(grown);
    ctx.db.dirty += 1;
    ctx.propagate(args);
    encode::integer(ctx.out, len as i64);
}

fn pop(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let left = args[0][0].eq_ignore_ascii_case(&b'l');
    let count = match args.len() {
        2 => None,
        3 => match int_arg(args[2]) {
            Some(n) if n >= 0 => Some(n as usize),
            _ => return ctx.error("ERR value is out of range, must be positive"),
        },
        _ => return ctx.error(SYNTAX),
    };
    let now = ctx.now;
    let list = match ctx
        .db
        .get_mut(args[1], now, ctx.expired)
        .map(|e| &mut e.value)
    {
        None => {
            return match count {
                Some(_) => encode::null_array(ctx.out, ctx.proto),
                None => ctx.null(),
            };
        }
        Some(Value::List(l)) => l,
        Some(_) => return ctx.error(WRONGTYPE),
    };
    let n = count.unwrap_or(1).min(list.len());
    let mut popped = Vec::with_capacity(n);
    for _ in 0..n {
        let v = if left {
            list.pop_front()
        } else {
            list.pop_back()
        };
        popped.extend(v);
    }
    let freed: usize = popped.iter().map(|v| element_cost(v)).sum();
    ctx.db.shrink(freed);
    if !popped.is_empty() {
        ctx.db.remove_if_empty(args[1]);
        ctx.db.dirty += 1;
        ctx.propagate(args);
    }
    match count {
        None => match popped.first() {
            Some(v) => value_bulk(ctx.out, &mut ctx.direct, v),
            None => ctx.null(),
        },
        Some(_) => {
            encode::array_header(ctx.out, popped.len());
            popped.iter().for_each(|v| encode::bulk(ctx.out, v));
        }
    }
}

fn lrange(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let (Some(start), Some(stop)) = (int_arg(args[2]), int_arg(args[3])) else {
        return ctx.error(NOT_INTEGER);
    };
    let now = ctx.now;
    let list = match ctx.db.get(args[1], now, ctx.expired).map(|e| &e.value) {
        None => return encode::array_header(ctx.out, 0),
        Some(Value::List(l)) => l,
        Some(_) => return ctx.error(WRONGTYPE),
    };
    let len = list.len() as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    if start > stop || start >= len {
        return encode::array_header(ctx.out, 0);
    }
    encode::array_header(ctx.out, (stop - start + 1) as usize);
    for v in list.range(start as usize..=stop as usize) {
        value_bulk(ctx.out, &mut ctx.direct, v);
    }
}

fn llen(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let now = ctx.now;
    match ctx.db.get(args[1], now, ctx.expired).map(|e| &e.value) {
        None => encode::integer(ctx.out, 0),
        Some(Value::List(l)) => encode::integer(ctx.out, l.len() as i64),
        Some(_) => ctx.error(WRONGTYPE),
    }
}

fn expire(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let name = args[0];
    let Some(n) = int_arg(args[2]) else {
        return ctx.error(NOT_INTEGER);
    };
    let unit: i64 = if name[0].eq_ignore_ascii_case(&b'p') {
        1
    } else {
        1000
    };
    // expireat and pexpireat: the only names of eight letters or more.
    let absolute = name.len() >= 8;
    // A time in the past deletes the key; one past what an i64 of
    // milliseconds holds is refused, as Redis does.
    let at = n.checked_mul(unit).and_then(|ms| {
        if absolute {
            Some(ms)
        } else {
            (ctx.now as i64).checked_add(ms)
        }
    });
    let Some(at) = at else {
        return ctx.error(&format!(
            "ERR invalid expire time in '{}' command",
            String::from_utf8_lossy(name).to_lowercase()
        ));
    };
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in &args[3..] {
        if is(opt, "nx") {
            nx = true
        } else if is(opt, "xx") {
            xx = true
        } else if is(opt, "gt") {
            gt = true
        } else if is(opt, "lt") {
            lt = true
        } else {
            return ctx.error(&format!("ERR Unsupported option {}", printable(opt)));
        }
    }
    if nx && (xx || gt || lt) {
        return ctx.error("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return ctx.error("ERR GT and LT options at the same time are not compatible");
    }
    let now = ctx.now;
    let Some(entry) = ctx.db.get_mut(args[1], now, ctx.expired) else {
        return encode::integer(ctx.out, 0);
    };
    let current = entry.expire_at;
    let refused = (nx && current.is_some())
        || (xx && current.is_none())
        || (gt && current.is_none_or(|c| at <= c as i64))
        || (lt && current.is_some_and(|c| at >= c as i64));
    if refused {
        return encode::integer(ctx.out, 0);
    }
    ctx.db.dirty += 1;
    if at <= now as i64 {
        ctx.db.remove(args[1]);
        ctx.propagate(&[b"DEL", args[1]]);
    } else {
        ctx.db.set_expire(args[1], Some(at as u64));
        ctx.propagate(&[b"PEXPIREAT", args[1], at.to_string().as_bytes()]);
    }
    encode::integer(ctx.out, 1);
}

fn ttl(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let millis = args[0][0].eq_ignore_ascii_case(&b'p');
    let now = ctx.now;
    let n = match ctx.db.get_mut(args[1], now, ctx.expired) {
        None => -2,
        Some(e) => match e.expire_at {
            None => -1,
            Some(t) => {
                let left = i64::try_from(t.saturating_sub(now)).unwrap_or(i64::MAX);
                if millis {
                    left
                } else {
                    left.saturating_add(500) / 1000
                }
            }
        },
    };
    encode::integer(ctx.out, n);
}

fn persist(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let now = ctx.now;
    let had = ctx
        .db
        .get_mut(args[1], now, ctx.expired)
        .is_some_and(|e| e.expire_at.is_some());
    if had {
        ctx.db.set_expire(args[1], None);
        ctx.db.dirty += 1;
        ctx.propagate(args);
    }
    encode::integer(ctx.out, i64::from(had));
}

fn keys(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let pattern = args[1];
    let matching: Vec<&[u8]> = ctx
        .db
        .iter(ctx.now)
        .map(|(k, _)| k)
        .filter(|k| glob(pattern, k))
        .collect();
    encode::array_header(ctx.out, matching.len());
    for k in matching {
        encode::bulk(ctx.out, k);
    }
}

fn scan(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    let Some(cursor) = std::str::from_utf8(args[1])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return ctx.error("ERR invalid cursor");
    };
    let (mut pattern, mut count): (Option<&[u8]>, usize) = (None, 10);
    let mut kind: Option<&[u8]> = None;
    let mut i = 2;
    while i < args.len() {
        if i + 1 >= args.len() {
            return ctx.error(SYNTAX);
        }
        if is(args[i], "match") {
            pattern = Some(args[i + 1]);
        } else if is(args[i], "count") {
            match int_arg(args[i + 1]) {
                Some(n) if n >= 1 => count = n as usize,
                Some(_) => return ctx.error(SYNTAX),
                None => return ctx.error(NOT_INTEGER),
            }
        } else if is(args[i], "type") {
            kind = Some(args[i + 1]);
        } else {
            return ctx.error(SYNTAX);
        }
        i += 2;
    }
    // The cursor is a position in the table's dense order. A deletion moves
    // the last key into the hole, so a key can be missed by a scan under
    // deletions (Redis's reverse-binary cursor does better; see docs/kv.md).
    let mut index = cursor as usize;
    let mut found = Vec::new();
    let now = ctx.now;
    let stop = index.saturating_add(count);
    while index < stop {
        let Some((key, alive, type_name)) = ctx.db.key_at(index, now) else {
            index = 0;
            break;
        };
        let wanted = kind.is_none_or(|k| k.eq_ignore_ascii_case(type_name.as_bytes()));
        if alive && wanted && pattern.is_none_or(|p| glob(p, key)) {
            found.push(key.to_vec());
        }
        index += 1;
    }
    if index >= ctx.db.len() {
        index = 0;
    }
    encode::array_header(ctx.out, 2);
    encode::bulk(ctx.out, index.to_string().as_bytes());
    encode::array_header(ctx.out, found.len());
    for k in &found {
        encode::bulk(ctx.out, k);
    }
}

fn dbsize(ctx: &mut Ctx<'_, '_>, _: &[&[u8]]) {
    encode::integer(ctx.out, ctx.db.len() as i64);
}

fn flush(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    if args.len() > 2
        || args
            .get(1)
            .is_some_and(|a| !is(a, "async") && !is(a, "sync"))
    {
        return ctx.error(SYNTAX);
    }
    ctx.db.clear();
    ctx.db.dirty += 1;
    ctx.propagate(&[b"FLUSHALL"]);
    ctx.ok();
}

fn ping(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    match args.len() {
        1 => encode::simple(ctx.out, "PONG"),
        2 => encode::bulk(ctx.out, args[1]),
        _ => ctx.error(&arity_error("ping")),
    }
}

fn echo(ctx: &mut Ctx<'_, '_>, args: &[&[u8]]) {
    encode::bulk(ctx.out, args[1]);
}

/// Redis's glob (`stringmatch`): `*`, `?`, `[abc]`, `[^a]`, `[a-z]`, and
/// `\` to escape.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: (pattern after it, text position).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            let (matched, next) = match pattern[p] {
                b'*' => {
                    star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                b'?' => (true, p + 1),
                b'[' => class(pattern, p, text[t]),
                b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == text[t], p + 2),
                c => (c == text[t], p + 1),
            };
            if matched {
                p = next;
                t += 1;
                continue;
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pattern[at] == b'['`;
/// returns whether it matched and where the pattern continues.
fn class(pattern: &[u8], at: usize, c: u8) -> (bool, usize) {
    let mut i = at + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            matched |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (lo, hi) = (
                pattern[i].min(pattern[i + 2]),
                pattern[i].max(pattern[i + 2]),
            );
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= pattern[i] == c;
            i += 1;
        }
    }
    (matched != negate, (i + 1).min(pattern.len()))
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_matches_as_redis_does() {
        assert!(glob(b"*", b"anything"));
        assert!(glob(b"h?llo", b"hello"));
        assert!(glob(b"h[ae]llo", b"hallo"));
        assert!(!glob(b"h[^e]llo", b"hello"));
        assert!(glob(b"h[a-c]llo", b"hbllo"));
        assert!(glob(b"user:*:name", b"user:42:name"));
        assert!(!glob(b"user:*:name", b"user:42:age"));
        assert!(glob(b"a\\*", b"a*"));
    }
}
