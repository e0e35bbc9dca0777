//! Chat across machines: nodes joined by Redis pub/sub (`--redis`), with
//! the reactor itself as Redis's client, on the same loop as the users.
//!
//! ```text
//! PUBLISH chat:room:ROOM  {"node","type","room","username","message"[,"new"]}
//! PUBLISH chat:user:NAME  {"node","type":"private","from","message"}
//! SET chat:name:NAME NODE NX GET PX TTL      a name, claimed case-folded
//! HSET chat:presence:NODE USER "ROOM Room"   who is where, for /who and /rooms
//! ZADD chat:nodes EXPIRY-MS NODE             the live nodes, scored by expiry
//! ```
//!
//! A node holds two Redis connections: one publishes and runs commands,
//! the other subscribes (RESP2 allows nothing else on a subscribed
//! connection), to the rooms its users are in and to its users' own
//! channels. What comes back from its own node is dropped. `docs/chat.md`
//! has the whole scheme, the rules and the faults; `claims.rs` holds the
//! names' side (claims, their refresh, and the rule for a name claimed
//! twice during a split).
//!
//! This is a child module of `chat.rs`, so it reaches the chat's state
//! directly; `chat.rs` only calls its hooks.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use reactor::codec::resp::{Limits, Value};
use reactor::redis::{Client, ClientConfig, Event, Failure, Overflow};
use reactor::service::{CloseReason, ConnId, Connections, ServiceHandle};
use serde_json::Value as Json;

use super::Chat;
use crate::protocol::{Notice, check_name, fold};
use crate::text::Loggable;

/// What `--redis` and its companions configure.
pub struct Settings {
    pub addr: SocketAddr,
    /// This node's name in Redis (`--node-id`).
    pub node: String,
    pub password: Option<Vec<u8>>,
    /// Publishes waiting for Redis, at most (`--redis-queue`).
    pub queue: usize,
    /// How long a claim and a presence entry live unrefreshed
    /// (`--redis-claim-ttl`): a dead node's users are gone after it.
    pub ttl: Duration,
    /// No reply from Redis this long is a disconnect (`--redis-timeout`).
    pub timeout: Duration,
    /// The longest reply or message taken from Redis (the service's input
    /// limit is raised to match).
    pub max_reply: usize,
}

/// `--node-id`'s default: the host name and the process id.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}-{}", std::process::id())
}

/// What a command sent to Redis was for: its reply is matched to it.
#[derive(Debug)]
pub(super) enum Tag {
    /// A message published: the reply (how many received it) is not needed.
    Publish,
    /// Presence and releases: nothing to do with the reply.
    Quiet,
    /// `/msg` to a name that is not local: 0 receivers means no such user.
    Private { id: ConnId, to: String },
    /// `/who` for a room (folded), for everyone waiting on it.
    Who { key: String },
    /// `/rooms`, for everyone waiting on it.
    Rooms,
    /// A new name, asked for by `id` before the line that takes it runs.
    Claim { id: ConnId, key: String },
    /// Every local name's claim, and the presence, refreshed.
    Refresh,
    /// The node's id claimed with this process's token.
    NodeId,
}

/// The cluster's side of a chat node.
pub struct Cluster {
    pub(super) node: String,
    /// This process, among nodes that might share its id by mistake.
    pub(super) token: String,
    pub(super) ttl: Duration,
    /// Publishes and commands.
    pub(super) redis: Client<Tag>,
    /// Subscriptions only.
    pub(super) subscriber: Client<()>,
    /// Local members per room (folded): a room is subscribed while it has
    /// some.
    pub(super) rooms: HashMap<String, usize>,
    /// Folded names this node holds in Redis.
    pub(super) held: HashSet<String>,
    /// Claims asked for and not yet answered, by connection.
    pub(super) asking: HashMap<ConnId, super::claims::Asking>,
    /// Answers waiting for the line they are for to be read again.
    pub(super) answered: HashMap<ConnId, super::claims::Answer>,
    /// WebSocket messages waiting for their claim's answer.
    pub(super) held_messages: HashMap<ConnId, String>,
    pub(super) next_refresh: Instant,
    /// Set while a message from Redis is delivered locally: it must not be
    /// published again.
    relaying: bool,
    dropped_reported: u64,
    /// This service, for the once-per-turn flush of the publishes.
    me: Option<ServiceHandle<Chat>>,
    /// `/who` per room (folded) and `/rooms`: each reads every node's
    /// presence inside Redis, which blocks Redis for every node while it
    /// runs, so users share one question in flight and its answer for
    /// [`SHARED_ANSWER`]: whatever users ask, a node costs Redis at most
    /// one of each per room per second.
    who: HashMap<String, Shared>,
    room_list: Shared,
}

/// How long a `/who` or `/rooms` answer from Redis is reused.
const SHARED_ANSWER: Duration = Duration::from_secs(1);

/// A cluster question and who waits for its answer.
#[derive(Default)]
pub(super) struct Shared {
    waiting: Vec<ConnId>,
    /// Shared, not copied, by everyone it answers (a `/who` of a big
    /// room is a long list).
    answer: Option<(Instant, Rc<Value>)>,
}

impl Shared {
    /// The answer, if fresh; else `id` waits, and true if the question
    /// must be asked (nobody was waiting yet).
    fn ask(&mut self, id: ConnId) -> Result<Rc<Value>, bool> {
        if let Some((at, value)) = &self.answer {
            if at.elapsed() < SHARED_ANSWER {
                return Ok(Rc::clone(value));
            }
        }
        if !self.waiting.contains(&id) {
            self.waiting.push(id);
        }
        Err(self.waiting.len() == 1)
    }

    /// The answer came (None: it will not): who was waiting for it.
    fn answered(&mut self, value: Option<&Rc<Value>>) -> Vec<ConnId> {
        self.answer = value.map(|v| (Instant::now(), Rc::clone(v)));
        std::mem::take(&mut self.waiting)
    }
}

impl Cluster {
    pub fn new(settings: Settings) -> Cluster {
        let mut config = ClientConfig::new(settings.addr)
            .max_queued(settings.queue, Overflow::DropOldest)
            .backoff(Duration::from_millis(100), Duration::from_secs(2))
            .reply_timeout(Some(settings.timeout))
            .limits(Limits {
                max_bulk: settings.max_reply,
                ..Limits::default()
            });
        if let Some(password) = settings.password {
            config = config.password(password);
        }
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Cluster {
            token: format!("{}-{started}", std::process::id()),
            node: settings.node,
            ttl: settings.ttl,
            redis: Client::new(config.clone()),
            subscriber: Client::new(config),
            rooms: HashMap::new(),
            held: HashSet::new(),
            asking: HashMap::new(),
            answered: HashMap::new(),
            held_messages: HashMap::new(),
            next_refresh: Instant::now(),
            relaying: false,
            dropped_reported: 0,
            me: None,
            who: HashMap::new(),
            room_list: Shared::default(),
        }
    }

    fn owns(&self, id: ConnId) -> bool {
        self.redis.owns(id) || self.subscriber.owns(id)
    }

    /// Drops the kept `/who` answer of room `key` and the kept `/rooms`
    /// (questions in flight stay: their answers are newer).
    fn forget_answers(&mut self, key: &str) {
        if let Some(shared) = self.who.get_mut(key) {
            shared.answer = None;
        }
        self.room_list.answer = None;
    }

    /// The cluster view (presence) can be asked for.
    pub(super) fn up(&self) -> bool {
        self.redis.is_connected()
    }
}

/// The JSON of a message on a channel, written without building a `Value`.
fn message_json(out: &mut Vec<u8>, node: &str, kind: &str, fields: &[(&str, &str)]) {
    out.clear();
    out.extend_from_slice(b"{\"node\":");
    crate::text::push_json_string(out, node);
    out.extend_from_slice(b",\"type\":");
    crate::text::push_json_string(out, kind);
    for (key, value) in fields {
        out.push(b',');
        crate::text::push_json_string(out, key);
        out.push(b':');
        crate::text::push_json_string(out, value);
    }
    out.push(b'}');
}

/// Lua for `/who`: the users in room `ARGV[1]` on every live node (one
/// whose entry in `chat:nodes`, scored with its expiry time, has not
/// passed).
const WHO_SCRIPT: &str = r#"
local out = {}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, node in ipairs(redis.call('ZRANGEBYSCORE', 'chat:nodes', string.format('(%.0f', now), '+inf')) do
  local h = redis.call('HGETALL', 'chat:presence:' .. node)
  for i = 1, #h, 2 do
    if string.match(h[i + 1], '^(%S+)') == ARGV[1] then out[#out + 1] = h[i] end
  end
end
return out
"#;

/// Lua for `/rooms`: each room with members anywhere, as its display name
/// and its number of members.
const ROOMS_SCRIPT: &str = r#"
local count, shown, order = {}, {}, {}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, node in ipairs(redis.call('ZRANGEBYSCORE', 'chat:nodes', string.format('(%.0f', now), '+inf')) do
  local h = redis.call('HGETALL', 'chat:presence:' .. node)
  for i = 2, #h, 2 do
    local key, display = string.match(h[i], '^(%S+) (.*)$')
    if key then
      if not count[key] then count[key] = 0; shown[key] = display; order[#order + 1] = key end
      count[key] = count[key] + 1
    end
  end
end
local out = {}
for _, key in ipairs(order) do out[#out + 1] = shown[key]; out[#out + 1] = count[key] end
return out
"#;

impl Chat {
    /// Joins this node to the cluster (before the loop runs; the first
    /// connect happens at the first tick).
    pub fn set_cluster(&mut self, mut cluster: Cluster, me: ServiceHandle<Chat>) {
        cluster.me = Some(me);
        self.cluster = Some(cluster);
    }

    /// The turn's publishes, held since the first of them, written as one
    /// piece after the turn's broadcasts (see `cluster_publish`).
    fn cluster_uncork(&mut self, conns: &mut Connections<'_>) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.redis.uncork(conns);
        }
    }

    /// Every `reactor::redis::TICK`: reconnects, claim answers that took too
    /// long, the claims' refresh, and the count of dropped publishes.
    pub fn cluster_tick(&mut self, conns: &mut Connections<'_>) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let now = Instant::now();
        cluster.redis.start(conns);
        cluster.subscriber.start(conns);
        cluster.redis.tick(conns, now);
        cluster.subscriber.tick(conns, now);
        let dropped = cluster.redis.stats().dropped;
        if dropped > cluster.dropped_reported {
            warn!(
                "Redis publish queue full: dropped {} oldest message(s) ({dropped} in all)",
                dropped - cluster.dropped_reported
            );
            cluster.dropped_reported = dropped;
        }
        self.claims_tick(conns, now);
        self.cluster_events(conns);
    }

    /// Routes a connection event to the cluster if it is one of Redis's.
    /// True if it was.
    pub fn cluster_open(&mut self, conns: &mut Connections<'_>, id: ConnId) -> bool {
        let Some(cluster) = self.cluster.as_mut().filter(|c| c.owns(id)) else {
            return false;
        };
        cluster.redis.on_open(conns, id);
        cluster.subscriber.on_open(conns, id);
        self.cluster_events(conns);
        true
    }

    /// `on_data` for Redis's connections: `Some(consumed)` if `id` is one.
    pub fn cluster_data(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        data: &[u8],
    ) -> Option<usize> {
        let cluster = self.cluster.as_mut().filter(|c| c.owns(id))?;
        let used = if cluster.redis.owns(id) {
            cluster.redis.on_data(conns, id, data)
        } else {
            cluster.subscriber.on_data(conns, id, data)
        };
        self.cluster_events(conns);
        Some(used)
    }

    /// `on_drained` for Redis's connections.
    pub fn cluster_drained(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.redis.on_drained(conns, id);
            self.cluster_events(conns);
        }
    }

    /// `on_close` for Redis's connections; true if `id` was one.
    pub fn cluster_closed(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        reason: &CloseReason,
    ) -> bool {
        let Some(cluster) = self.cluster.as_mut() else {
            return false;
        };
        if cluster.owns(id) {
            cluster.redis.on_close(conns, id, reason);
            cluster.subscriber.on_close(conns, id, reason);
            self.cluster_events(conns);
            return true;
        }
        // A user: forget its claim in progress.
        cluster.asking.remove(&id);
        cluster.answered.remove(&id);
        cluster.held_messages.remove(&id);
        false
    }

    fn cluster_events(&mut self, conns: &mut Connections<'_>) {
        loop {
            let Some(cluster) = self.cluster.as_mut() else {
                return;
            };
            if let Some(event) = cluster.subscriber.next_event() {
                if let Event::Message {
                    channel, payload, ..
                } = event
                {
                    self.relay(conns, &channel, &payload);
                }
                continue;
            }
            let Some(event) = cluster.redis.next_event() else {
                return;
            };
            match event {
                Event::Connected => {
                    info!("cluster: connected to Redis as node {}", cluster.node);
                    // Claim every local name again, and rewrite the presence.
                    cluster.next_refresh = Instant::now();
                    self.claims_tick(conns, Instant::now());
                }
                Event::Disconnected { .. } => {
                    // The client has logged it. Local chat goes on; the
                    // claims are made again once it is back.
                }
                Event::Reply { tag, value } => self.answer(conns, tag, value),
                Event::Failed { tag, failure } => self.unanswered(conns, tag, failure),
                Event::Message { .. } => {}
            }
        }
    }

    /// The reply to a command of ours.
    fn answer(&mut self, conns: &mut Connections<'_>, tag: Tag, value: Value) {
        if let Value::Error(e) = &value {
            warn!(
                "cluster: Redis answered {tag:?} with an error: {}",
                Loggable(e)
            );
        }
        match tag {
            Tag::Publish | Tag::Quiet => {}
            Tag::Private { id, to } => {
                if value == Value::Integer(0) {
                    self.tell(conns, id, Notice::Error(&format!("no such user {to}")));
                }
            }
            Tag::Who { key } => {
                let value = Rc::new(value);
                let waiting = match self.cluster.as_mut().and_then(|c| c.who.get_mut(&key)) {
                    Some(shared) => shared.answered(Some(&value)),
                    None => Vec::new(),
                };
                for id in waiting {
                    self.who_answer(conns, id, &key, &value);
                }
                // Answers of rooms nobody asks about any more go.
                if let Some(cluster) = self.cluster.as_mut() {
                    cluster.who.retain(|_, shared| {
                        !shared.waiting.is_empty()
                            || shared
                                .answer
                                .as_ref()
                                .is_some_and(|(at, _)| at.elapsed() < SHARED_ANSWER)
                    });
                }
            }
            Tag::Rooms => {
                let value = Rc::new(value);
                let waiting = match self.cluster.as_mut() {
                    Some(cluster) => cluster.room_list.answered(Some(&value)),
                    None => Vec::new(),
                };
                for id in waiting {
                    self.rooms_answer(conns, id, &value);
                }
            }
            Tag::Claim { id, key } => self.claim_answered(conns, id, key, Some(value)),
            Tag::Refresh => self.refresh_answered(conns, value),
            Tag::NodeId => {
                let Some(cluster) = self.cluster.as_ref() else {
                    return;
                };
                if let Value::Bulk(holder) = &value {
                    if holder != cluster.token.as_bytes() {
                        error!(
                            "cluster: another process runs as node {} (--node-id must differ \
                             per node: each drops the other's messages as its own)",
                            cluster.node
                        );
                    }
                }
            }
        }
    }

    /// Tells `id` the cluster's `/who` of room `key`, if it is still there.
    fn who_answer(&mut self, conns: &mut Connections<'_>, id: ConnId, key: &str, value: &Value) {
        let Some((now_in, room, _)) = self.room_of(id) else {
            return;
        };
        if &*now_in != key {
            return; // moved on since it asked
        }
        if !matches!(value, Value::Array(_)) {
            // An error (or a broken key): the local view, and why.
            self.who(conns, id);
            let note = "this node only: the cluster did not answer";
            return self.tell(conns, id, Notice::Info(note));
        }
        // Presence is Redis data anyone with access could write: only
        // names that pass the name rule are shown.
        let names: Vec<String> = strings(value)
            .into_iter()
            .filter(|n| check_name(n, "name").is_ok())
            .collect();
        self.tell_who(conns, id, &room, names);
    }

    /// Tells `id` the cluster's `/rooms`.
    fn rooms_answer(&mut self, conns: &mut Connections<'_>, id: ConnId, value: &Value) {
        let Value::Array(items) = value else {
            return self.tell(conns, id, Notice::Error("the cluster did not answer"));
        };
        let mut rooms: Vec<(String, i64)> = items
            .chunks(2)
            .filter_map(|pair| match pair {
                [name, Value::Integer(n)] => {
                    let name = String::from_utf8_lossy(name.as_bytes()?).into_owned();
                    check_name(&name, "room name").is_ok().then_some((name, *n))
                }
                _ => None,
            })
            .collect();
        // Local rooms without members (the lobby) are rooms too.
        for room in self.rooms.values() {
            if !rooms.iter().any(|(n, _)| fold(n) == fold(&room.name)) {
                rooms.push((room.name.to_string(), room.members.len() as i64));
            }
        }
        self.tell_rooms(
            conns,
            id,
            rooms.iter().map(|(n, c)| (n.as_str(), *c as usize)),
        );
    }

    /// A command of ours that got no reply.
    fn unanswered(&mut self, conns: &mut Connections<'_>, tag: Tag, failure: Failure) {
        match tag {
            Tag::Publish | Tag::Quiet | Tag::Refresh | Tag::NodeId => {}
            Tag::Private { id, to } => {
                let e = format!("no answer from the cluster for {to} ({failure:?})");
                self.tell(conns, id, Notice::Error(&e));
            }
            Tag::Who { key } => {
                let waiting = match self.cluster.as_mut().and_then(|c| c.who.get_mut(&key)) {
                    Some(shared) => shared.answered(None),
                    None => Vec::new(),
                };
                for id in waiting {
                    self.who(conns, id);
                }
            }
            Tag::Rooms => {
                let waiting = match self.cluster.as_mut() {
                    Some(cluster) => cluster.room_list.answered(None),
                    None => Vec::new(),
                };
                for id in waiting {
                    self.list_rooms(conns, id);
                }
            }
            Tag::Claim { id, key } => self.claim_answered(conns, id, key, None),
        }
    }

    // ----- hooks called by chat.rs --------------------------------------

    /// A room notice, about to be broadcast locally: published too (unless
    /// it came from Redis).
    pub(super) fn cluster_publish(
        &mut self,
        conns: &mut Connections<'_>,
        room_key: &str,
        notice: &Notice<'_>,
    ) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if matches!(
            notice,
            Notice::Joined { .. } | Notice::Left { .. } | Notice::Renamed { .. }
        ) {
            // Local or relayed, the room's membership changed: an answer
            // kept for /who or /rooms is out of date.
            cluster.forget_answers(room_key);
        }
        if cluster.relaying {
            return;
        }
        let node = cluster.node.as_str();
        let out = &mut self.line_out;
        match *notice {
            Notice::Chat { name, room, text } => message_json(
                out,
                node,
                "chat",
                &[("room", room), ("username", name), ("message", text)],
            ),
            Notice::Action { name, room, text } => message_json(
                out,
                node,
                "action",
                &[("room", room), ("username", name), ("message", text)],
            ),
            Notice::Joined { name, room } => {
                message_json(out, node, "joined", &[("room", room), ("username", name)])
            }
            Notice::Left { name, room } => {
                message_json(out, node, "left", &[("room", room), ("username", name)])
            }
            Notice::Renamed { old, new } => {
                message_json(out, node, "renamed", &[("username", old), ("new", new)])
            }
            _ => return,
        }
        let channel = format!("chat:room:{room_key}");
        let args: [&[u8]; 3] = [b"PUBLISH", channel.as_bytes(), out];
        // The first publish of a turn is written at once, ahead of the
        // local broadcast (its connection is then flushed first, and the
        // line is on its way to the other nodes while this one writes to
        // its readers); it corks the client until the turn's events are
        // done, and the turn's other publishes go out together after the
        // broadcasts. One publish between each two broadcasts would cut
        // every member's turn into a piece per line: a writev of many
        // slices where one write does (measured: benches/pubsub.sh).
        let first = !cluster.redis.is_corked();
        // Drop-oldest: never fails.
        let _ = cluster.redis.send(conns, &args, Tag::Publish);
        if first {
            if let Some(me) = cluster.me.as_ref() {
                cluster.redis.cork();
                me.defer(conns.reactor(), |chat, conns| chat.cluster_uncork(conns));
            }
        }
    }

    /// `id` (named `name`) enters room `key` (shown as `display`): its
    /// presence, and the room's subscription if it is the first local
    /// member. Called before the join is announced, so that whoever sees
    /// the announcement through Redis finds the user in `/who`.
    pub(super) fn cluster_entered(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        key: &str,
        display: &str,
    ) {
        let name = self.user(id).and_then(|u| u.name.clone());
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let Some(name) = name else {
            return;
        };
        let members = cluster.rooms.entry(key.to_string()).or_insert(0);
        *members += 1;
        if *members == 1 {
            cluster
                .subscriber
                .subscribe(conns, format!("chat:room:{key}").as_bytes());
        }
        cluster
            .subscriber
            .subscribe(conns, format!("chat:user:{}", fold(&name)).as_bytes());
        if cluster.up() {
            let presence = format!("chat:presence:{}", cluster.node);
            let value = format!("{key} {display}");
            let _ = cluster
                .redis
                .send(conns, &["HSET", &presence, &name, &value], Tag::Quiet);
        }
    }

    /// `name` left room `key`: its presence goes, and the room's
    /// subscription with its last local member.
    pub(super) fn cluster_left(&mut self, conns: &mut Connections<'_>, key: &str, name: &str) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if let Some(members) = cluster.rooms.get_mut(key) {
            *members = members.saturating_sub(1);
            if *members == 0 {
                cluster.rooms.remove(key);
                cluster
                    .subscriber
                    .unsubscribe(conns, format!("chat:room:{key}").as_bytes());
            }
        }
        if cluster.up() {
            let presence = format!("chat:presence:{}", cluster.node);
            let _ = cluster
                .redis
                .send(conns, &["HDEL", &presence, name], Tag::Quiet);
        }
    }

    /// `/msg` to a name no local user has: published on the name's channel
    /// (true), or, with Redis away, false (no such user).
    pub(super) fn cluster_private(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        to: &str,
        from: &str,
        text: &str,
    ) -> bool {
        let Some(cluster) = self.cluster.as_mut().filter(|c| c.up()) else {
            return false;
        };
        message_json(
            &mut self.line_out,
            &cluster.node,
            "private",
            &[("from", from), ("message", text)],
        );
        let channel = format!("chat:user:{}", fold(to));
        let args: [&[u8]; 3] = [b"PUBLISH", channel.as_bytes(), &self.line_out];
        let tag = Tag::Private {
            id,
            to: to.to_string(),
        };
        let _ = cluster.redis.send(conns, &args, tag);
        debug!(
            "{from} to {} (through Redis): {}",
            Loggable(to),
            Loggable(text)
        );
        true
    }

    /// `/who`: asked of Redis (true), unless there is no cluster.
    pub(super) fn cluster_who(&mut self, conns: &mut Connections<'_>, id: ConnId) -> bool {
        let Some((key, _, _)) = self.room_of(id) else {
            return false;
        };
        let Some(cluster) = self.cluster.as_mut() else {
            return false;
        };
        if !cluster.up() {
            return false;
        }
        match cluster.who.entry(key.to_string()).or_default().ask(id) {
            Ok(value) => self.who_answer(conns, id, &key, &value),
            Err(true) => {
                let tag = Tag::Who {
                    key: key.to_string(),
                };
                let _ = cluster
                    .redis
                    .send(conns, &["EVAL", WHO_SCRIPT, "0", &key], tag);
            }
            Err(false) => {} // asked already: the answer is for everyone
        }
        true
    }

    /// `/rooms`: asked of Redis (true), unless there is no cluster.
    pub(super) fn cluster_rooms(&mut self, conns: &mut Connections<'_>, id: ConnId) -> bool {
        let Some(cluster) = self.cluster.as_mut() else {
            return false;
        };
        if !cluster.up() {
            return false;
        }
        match cluster.room_list.ask(id) {
            Ok(value) => self.rooms_answer(conns, id, &value),
            Err(true) => {
                let _ = cluster
                    .redis
                    .send(conns, &["EVAL", ROOMS_SCRIPT, "0"], Tag::Rooms);
            }
            Err(false) => {}
        }
        true
    }

    /// After a local `/who` or `/rooms` while Redis is away: says so.
    pub(super) fn tell_cluster_note(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        if self.cluster.as_ref().is_some_and(|c| !c.up()) {
            let note = "this node only: the cluster view is unavailable";
            self.tell(conns, id, Notice::Info(note));
        }
    }

    // ----- from Redis -----------------------------------------------------

    /// A message from a channel we subscribe to, delivered to the local
    /// users it is for. Anyone with access to Redis can publish, so it is
    /// checked as user input is: names by the name rule, text by the line
    /// limit, and it is rendered through the same filter as local text.
    fn relay(&mut self, conns: &mut Connections<'_>, channel: &[u8], payload: &[u8]) {
        let Some(cluster) = self.cluster.as_ref() else {
            return;
        };
        let parsed = match serde_json::from_slice::<Json>(payload) {
            Ok(Json::Object(fields)) => fields,
            _ => {
                warn!(
                    "cluster: not a JSON object on {}: dropped",
                    String::from_utf8_lossy(channel)
                );
                return;
            }
        };
        let field = |k: &str| parsed.get(k).and_then(Json::as_str);
        if field("node") == Some(cluster.node.as_str()) {
            return; // our own, back from Redis
        }
        let text = field("message").unwrap_or("");
        if text.len() > self.limits.max_line {
            warn!("cluster: message longer than --max-line from Redis: dropped");
            return;
        }
        let channel = String::from_utf8_lossy(channel);
        let kind = field("type").unwrap_or("");
        if let Some(user) = channel.strip_prefix("chat:user:") {
            let (Some(from), "private") = (field("from"), kind) else {
                return warn!("cluster: bad private message on {channel}: dropped");
            };
            if check_name(from, "name").is_err() {
                return warn!("cluster: bad sender name on {channel}: dropped");
            }
            if let Some(target) = self.names.get(user).copied() {
                self.tell(conns, target, Notice::Private { from, text });
            }
            return;
        }
        let Some(key) = channel.strip_prefix("chat:room:") else {
            return;
        };
        let Some(local) = self.rooms.get(key) else {
            return; // no local member any more
        };
        let room_display = local.name.clone();
        let name = field("username").unwrap_or("");
        if check_name(name, "name").is_err() {
            return warn!("cluster: bad user name on {channel}: dropped");
        }
        // A user of this node speaks through this node, whose own messages
        // were dropped above: one naming a local user from elsewhere is
        // forged (a rename to a local name too).
        let local_name = |n: &str| self.names.contains_key(&fold(n));
        if local_name(name) || field("new").is_some_and(local_name) {
            return warn!(
                "cluster: a message on {channel} names a user of this node: forged, dropped"
            );
        }
        if matches!(kind, "chat" | "action") && field("message").is_none() {
            return warn!("cluster: a {kind} without a message on {channel}: dropped");
        }
        let room = &*room_display;
        let notice = match kind {
            "chat" => Notice::Chat { name, room, text },
            "action" => Notice::Action { name, room, text },
            "joined" => Notice::Joined { name, room },
            "left" => Notice::Left { name, room },
            "renamed" => match field("new").filter(|n| check_name(n, "name").is_ok()) {
                Some(new) => Notice::Renamed { old: name, new },
                None => return warn!("cluster: bad rename on {channel}: dropped"),
            },
            other => {
                return warn!(
                    "cluster: unknown message type '{}' on {channel}",
                    Loggable(other)
                );
            }
        };
        debug!(
            "cluster: {channel}: {}",
            Loggable(&String::from_utf8_lossy(payload))
        );
        let key = key.to_string();
        self.set_relaying(true);
        self.broadcast(conns, &key, notice, None);
        self.set_relaying(false);
    }

    fn set_relaying(&mut self, on: bool) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.relaying = on;
        }
    }
}

/// The strings of an array reply (bulk or simple), as text.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_bytes)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_json_with_the_node_first() {
        let mut out = Vec::new();
        message_json(
            &mut out,
            "n1",
            "chat",
            &[
                ("room", "Lobby"),
                ("username", "al"),
                ("message", "a\"b\u{1b}"),
            ],
        );
        let v: Json = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["node"], "n1");
        assert_eq!(v["type"], "chat");
        assert_eq!(v["message"], "a\"b\u{1b}");
        assert!(!out.contains(&0x1b), "control characters are escaped");
    }
}
